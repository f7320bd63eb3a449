// SPDX-License-Identifier: Apache-2.0
#pragma once
// Resource use of a process, read from /proc: the source of the RSS and CPU time the
// scoreboard and status show.

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace forkpool::shm {

struct ProcStats {
  std::uint64_t rss_bytes = 0;
  std::uint64_t cpu_time_us = 0;  // user + system
};

// Nothing if the process is gone or /proc cannot be read.
std::optional<ProcStats> read_proc_stats(pid_t pid);
// /proc/PID/stat opened for reading (close-on-exec), or -1 with errno.
int open_proc_stat(pid_t pid);
// The same figures from an open /proc/PID/stat, which stays with the process it was
// opened for (reads fail once it is reaped, whatever later takes its pid).
std::optional<ProcStats> read_proc_stats_from(int stat_fd);
// The resident set in bytes from an open /proc/PID/statm: a descriptor that stays with
// the process it was opened for (reads fail once it is reaped, whatever later takes its
// pid). The figure stat's rss field gives, for half the kernel's work: statm formats
// seven numbers.
std::optional<std::uint64_t> read_rss_from_statm(int statm_fd);

}  // namespace forkpool::shm
