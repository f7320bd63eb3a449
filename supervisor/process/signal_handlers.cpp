// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/signal_handlers.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string_view>

namespace forkpool::supervisor {

std::optional<bool> catches_signal(pid_t pid, int signo) {
  if (signo < 1 || signo > 64) return false;
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[4096];
  std::size_t len = 0;
  ssize_t n;
  while (len < sizeof buf && ((n = ::read(fd, buf + len, sizeof buf - len)) > 0 || (n < 0 && errno == EINTR)))
    if (n > 0) len += static_cast<std::size_t>(n);
  ::close(fd);
  const std::string_view text(buf, len);
  constexpr std::string_view kKey = "\nSigCgt:";
  const auto at = text.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(at + kKey.size());
  while (!rest.empty() && (rest.front() == '\t' || rest.front() == ' ')) rest.remove_prefix(1);
  std::uint64_t mask = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), mask, 16);
  if (ec != std::errc() || end == rest.data()) return std::nullopt;
  return ((mask >> (signo - 1)) & 1u) != 0;
}

}  // namespace forkpool::supervisor
