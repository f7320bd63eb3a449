// SPDX-License-Identifier: Apache-2.0
#include "shm/proc_stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "base/proc_text.hpp"

namespace forkpool::shm {

namespace {

// The whole of a /proc file through its open descriptor: pread at 0, since the kernel
// writes the file afresh for every read from the start. 0 or less: nothing read.
template <std::size_t N>
ssize_t read_proc_file(int fd, char (&buf)[N]) {
  ssize_t n;
  do {
    n = ::pread(fd, buf, N, 0);
  } while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace

std::optional<ProcStats> read_proc_stats_from(int stat_fd) {
  char buf[1024];
  const ssize_t n = read_proc_file(stat_fd, buf);
  if (n <= 0) return std::nullopt;
  // Fields 14 (utime), 15 (stime) and 24 (rss, signed in the kernel's format).
  const auto fields = base::stat_fields(std::string_view(buf, static_cast<std::size_t>(n)));
  if (fields.size() < 22) return std::nullopt;
  std::uint64_t values[3] = {};
  const std::size_t wanted[3] = {14 - 3, 15 - 3, 24 - 3};
  for (int k = 0; k < 3; ++k) {
    const std::string_view field = fields[wanted[k]];
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
    if (ec != std::errc() || end != field.data() + field.size()) return std::nullopt;
    values[k] = value < 0 ? 0 : static_cast<std::uint64_t>(value);
  }
  const auto [utime, stime, rss_pages] = values;
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  static const long page = ::sysconf(_SC_PAGESIZE);
  ProcStats s;
  s.rss_bytes = rss_pages * static_cast<std::uint64_t>(page);
  s.cpu_time_us = (utime + stime) * 1'000'000 / static_cast<std::uint64_t>(ticks > 0 ? ticks : 100);
  return s;
}

int open_proc_stat(pid_t pid) {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  return ::open(path, O_RDONLY | O_CLOEXEC);
}

std::optional<ProcStats> read_proc_stats(pid_t pid) {
  // One open and one read of /proc/PID/stat, into a buffer on the stack. Its rss field is
  // the resident set statm reports (both are get_mm_rss).
  const int fd = open_proc_stat(pid);
  if (fd < 0) return std::nullopt;
  auto stats = read_proc_stats_from(fd);
  ::close(fd);
  return stats;
}

std::optional<std::uint64_t> read_rss_from_statm(int statm_fd) {
  char buf[256];
  const ssize_t n = read_proc_file(statm_fd, buf);
  if (n <= 0) return std::nullopt;
  // "size resident shared text lib data dt", in pages.
  const char* const end = buf + n;
  const char* field = static_cast<const char*>(std::memchr(buf, ' ', static_cast<std::size_t>(n)));
  if (field == nullptr) return std::nullopt;
  ++field;
  std::uint64_t pages = 0;
  const auto [stop, ec] = std::from_chars(field, end, pages);
  if (ec != std::errc() || stop == end || *stop != ' ') return std::nullopt;
  static const long page = ::sysconf(_SC_PAGESIZE);
  return pages * static_cast<std::uint64_t>(page);
}

}  // namespace forkpool::shm
