// SPDX-License-Identifier: Apache-2.0
#include "shm/proc_stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

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

// RSS and CPU time from an open /proc/PID/stat.
std::optional<ProcStats> read_proc_stats_from(int stat_fd) {
  char buf[1024];
  const ssize_t n = read_proc_file(stat_fd, buf);
  if (n <= 0) return std::nullopt;
  const std::string_view line(buf, static_cast<std::size_t>(n));
  // Fields after the parenthesised command name, which may itself hold spaces.
  const auto close = line.rfind(')');
  if (close == std::string_view::npos || close + 2 >= line.size()) return std::nullopt;
  std::string_view rest = line.substr(close + 2);
  std::uint64_t utime = 0, stime = 0, rss_pages = 0;
  bool have_rss = false;
  for (int i = 3; i <= 24 && !rest.empty(); ++i) {
    const auto space = rest.find(' ');
    const std::string_view field = rest.substr(0, space);
    rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
    std::uint64_t* target = i == 14 ? &utime : i == 15 ? &stime : i == 24 ? &rss_pages : nullptr;
    if (target == nullptr) continue;
    std::int64_t value = 0;  // rss is signed in the kernel's format
    const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
    if (ec != std::errc() || end != field.data() + field.size()) return std::nullopt;
    *target = value < 0 ? 0 : static_cast<std::uint64_t>(value);
    if (i == 24) have_rss = true;
  }
  if (!have_rss) return std::nullopt;
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  static const long page = ::sysconf(_SC_PAGESIZE);
  ProcStats s;
  s.rss_bytes = rss_pages * static_cast<std::uint64_t>(page);
  s.cpu_time_us = (utime + stime) * 1'000'000 / static_cast<std::uint64_t>(ticks > 0 ? ticks : 100);
  return s;
}

}  // namespace

std::optional<ProcStats> read_proc_stats(pid_t pid) {
  // One open and one read of /proc/PID/stat, into a buffer on the stack: a status of a
  // pool of 1,000 workers calls this 1,000 times (docs/performance.md). Its rss field is
  // the resident set statm reports (both are get_mm_rss).
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
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
