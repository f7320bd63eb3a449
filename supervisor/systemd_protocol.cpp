// SPDX-License-Identifier: Apache-2.0
#include "supervisor/systemd_protocol.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

namespace forkpool::supervisor::systemd {

namespace {

// A decimal number that is the whole variable, or nothing.
std::optional<std::uint64_t> env_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  std::uint64_t value = 0;
  const char* end = text + std::strlen(text);
  auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

bool for_this_process(const char* pid_variable, bool unset_means_yes) {
  const auto pid = env_number(pid_variable);
  if (!pid) return unset_means_yes && std::getenv(pid_variable) == nullptr;
  return *pid == static_cast<std::uint64_t>(::getpid());
}

}  // namespace

bool notify(std::string_view state) {
  const char* name = std::getenv("NOTIFY_SOCKET");
  if (name == nullptr || (name[0] != '/' && name[0] != '@')) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::size_t length = std::strlen(name);
  if (length < 2 || length > sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, name, length);
  if (name[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  // A path must end with its NUL inside sun_path; an abstract name has none.
  if (name[0] == '/' && length == sizeof(addr.sun_path)) return false;
  const socklen_t addr_len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length + (name[0] == '/' ? 1 : 0));
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ssize_t sent;
  do {
    sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), addr_len);
  } while (sent < 0 && errno == EINTR);
  ::close(fd);
  return sent == static_cast<ssize_t>(state.size());
}

int take_listen_fds() {
  const bool ours = for_this_process("LISTEN_PID", false);
  const auto count = env_number("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!ours || !count || *count > 65536) return 0;
  return static_cast<int>(*count);
}

std::uint64_t watchdog_usec() {
  if (!for_this_process("WATCHDOG_PID", true)) return 0;
  return env_number("WATCHDOG_USEC").value_or(0);
}

}  // namespace forkpool::supervisor::systemd
