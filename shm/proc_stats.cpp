// SPDX-License-Identifier: Apache-2.0
#include "shm/proc_stats.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace forkpool::shm {

std::optional<ProcStats> read_proc_stats(pid_t pid) {
  const std::string base = "/proc/" + std::to_string(pid);
  std::ifstream statm(base + "/statm");
  std::uint64_t size_pages = 0, rss_pages = 0;
  if (!(statm >> size_pages >> rss_pages)) return std::nullopt;
  std::ifstream stat(base + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  // Fields after the parenthesised command name, which may itself hold spaces.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  std::uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  static const long page = ::sysconf(_SC_PAGESIZE);
  ProcStats s;
  s.rss_bytes = rss_pages * static_cast<std::uint64_t>(page);
  s.cpu_time_us = (utime + stime) * 1'000'000 / static_cast<std::uint64_t>(ticks > 0 ? ticks : 100);
  return s;
}

}  // namespace forkpool::shm
