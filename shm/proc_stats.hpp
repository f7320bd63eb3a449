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

}  // namespace forkpool::shm
