// SPDX-License-Identifier: Apache-2.0
#include "supervisor/upgrade/state_writer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "supervisor/upgrade/state_format.hpp"

namespace forkpool::supervisor::upgrade {
namespace {

void put_le(unsigned char* out, std::uint64_t value, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) out[i] = static_cast<unsigned char>(value >> (8 * i));
}

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(errno, std::generic_category(), "write (upgrade state)");
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

int FdList::add(int fd) {
  if (fd >= 0) fds_.push_back(fd);
  return fd;
}

base::OwnedFd write_state(const nlohmann::json& payload) {
  const std::string text = payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  base::OwnedFd fd(::memfd_create("forkpool-upgrade-state", MFD_CLOEXEC));
  if (!fd) throw std::system_error(errno, std::generic_category(), "memfd_create (upgrade state)");
  unsigned char header[kStateHeaderSize] = {};
  std::memcpy(header, kStateMagic, sizeof kStateMagic);
  put_le(header + 8, kStateFormat, 4);
  put_le(header + 16, text.size(), 8);
  write_all(fd.get(), reinterpret_cast<const char*>(header), sizeof header);
  write_all(fd.get(), text.data(), text.size());
  if (::lseek(fd.get(), 0, SEEK_SET) != 0)
    throw std::system_error(errno, std::generic_category(), "lseek (upgrade state)");
  return fd;
}

std::string set_inheritable(const std::vector<int>& fds, bool inherit) {
  std::string first;
  for (int fd : fds) {
    const int flags = ::fcntl(fd, F_GETFD);
    const int want = inherit ? flags & ~FD_CLOEXEC : flags | FD_CLOEXEC;
    if (flags < 0 || ::fcntl(fd, F_SETFD, want) != 0)
      if (first.empty())
        first = "fcntl(F_SETFD) on descriptor " + std::to_string(fd) + ": " + std::strerror(errno);
  }
  return first;
}

std::string to_hex(const void* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

bool from_hex(const std::string& text, void* out, std::size_t capacity, std::size_t& size) {
  if (text.size() % 2 != 0 || text.size() / 2 > capacity) return false;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  auto* p = static_cast<unsigned char*>(out);
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const int hi = digit(text[i]), lo = digit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    p[i / 2] = static_cast<unsigned char>(hi * 16 + lo);
  }
  size = text.size() / 2;
  return true;
}

}  // namespace forkpool::supervisor::upgrade
