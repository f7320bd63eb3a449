// SPDX-License-Identifier: Apache-2.0
#pragma once
// A worker's RSS and CPU time as status, metrics and the max_memory sampler show them:
// read from the worker's /proc/PID/stat through a descriptor kept open (one pread a read,
// and never another process's figures after a pid is reused), and at most once per
// kUsageMaxAge however often they are asked for: a status of 1,000 workers polled by
// top, a scraper and a dashboard reads /proc 1,000 times a second at most, not per
// request, so it cannot take the loop away from dispatch (docs/performance.md).

#include <sys/types.h>

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
  base::OwnedFd stat_fd_;
  std::optional<shm::ProcStats> last_;
  std::int64_t read_at_ns_ = 0;
};

}  // namespace forkpool::supervisor
