// SPDX-License-Identifier: Apache-2.0
#pragma once
// A worker's RSS and CPU time as status, metrics and the max_memory sampler show them,
// at most once per kUsageMaxAge however often they are asked for: a status of 1,000
// workers polled by top, a scraper and a dashboard reads them 1,000 times a second at
// most, not per request, so it cannot take the loop away from dispatch.
//
// Two cheap reads rather than one costly one (docs/performance.md): the resident set
// from /proc/PID/statm through a descriptor kept open, and the CPU time (user + system,
// every thread, in nanoseconds) from the process's CPU-time clock. The kernel formats
// /proc/PID/stat's fifty fields for each read, which cost a fresh status of 1,000 workers
// more than the rest of it. Neither can read another process after a pid is reused: the
// descriptor stays with the process it was opened for, and the clock is read only after
// the descriptor proved the process there (a pid the master has not reaped is not reused).

#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <optional>

#include "base/owned_fd.hpp"
#include "shm/proc_stats.hpp"

namespace forkpool::supervisor {

inline constexpr std::chrono::milliseconds kUsageMaxAge{1000};

class WorkerUsage {
 public:
  // The figures at most `max_age` old (0: read now). Nothing once the process is gone
  // or /proc cannot be read; the last figures are not shown as current then.
  std::optional<shm::ProcStats> read(pid_t pid, std::int64_t now_ns,
                                     std::chrono::nanoseconds max_age = kUsageMaxAge);
  // The process was reaped: its descriptor goes.
  void forget();

 private:
  std::optional<shm::ProcStats> read_now() const;

  base::OwnedFd statm_fd_;
  clockid_t cpu_clock_{};
  std::optional<shm::ProcStats> last_;
  std::int64_t read_at_ns_ = 0;
};

}  // namespace forkpool::supervisor
