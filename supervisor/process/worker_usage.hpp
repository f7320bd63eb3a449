// SPDX-License-Identifier: Apache-2.0
#pragma once
// A worker's RSS and CPU time as status, metrics and the max_memory sampler show them,
// at most once per kUsageMaxAge however often they are asked for: a status of 1,000
// workers polled by top, a scraper and a dashboard reads them 1,000 times a second at
// most, not per request, so it cannot take the loop away from dispatch.
//
// Two cheap reads rather than one costly one (docs/performance.md): the CPU time (user +
// system, every thread, in nanoseconds) from the process's CPU-time clock, and the
// resident set from /proc/PID/statm through a descriptor kept open. The kernel formats
// /proc/PID/stat's fifty fields for each read, which cost a fresh status of 1,000 workers
// more than the rest of it.
//
// The resident set is read again only if the process ran since it was last read (its
// CPU-time clock moved), or after kRssMaxAge. A process grows or shrinks its resident
// set by running; what changes it without that (the kernel reclaiming its pages, another
// process writing into it with process_vm_writev) shows within kRssMaxAge. An idle pool of
// 1,000 workers then costs 1,000 clock reads, not 1,000 clock reads and 1,000 file reads.
// A read with a max age of 0 (the max_memory sampler) reads both.
//
// Neither read can see another process after a pid is reused: the descriptor stays with
// the process it was opened for, and the master reaps a worker (and calls forget(), which
// drops the descriptor and with it every later read) before any other process can take
// its pid.

#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <optional>

#include "base/owned_fd.hpp"
#include "shm/proc_stats.hpp"

namespace forkpool::supervisor {

inline constexpr std::chrono::milliseconds kUsageMaxAge{1000};
inline constexpr std::chrono::seconds kRssMaxAge{10};

class WorkerUsage {
 public:
  // The figures at most `max_age` old (0: read now). Nothing once the process is gone
  // or /proc cannot be read; the last figures are not shown as current then.
  std::optional<shm::ProcStats> read(pid_t pid, std::int64_t now_ns,
                                     std::chrono::nanoseconds max_age = kUsageMaxAge);
  // The process was reaped: its descriptor goes.
  void forget();

 private:
  std::optional<shm::ProcStats> read_now(std::int64_t now_ns, bool rss_may_stay);

  base::OwnedFd statm_fd_;
  clockid_t cpu_clock_{};
  std::optional<shm::ProcStats> last_;
  std::int64_t read_at_ns_ = 0;
  std::int64_t cpu_ns_ = -1;       // the clock when the resident set was last read
  std::int64_t rss_read_at_ns_ = 0;
};

}  // namespace forkpool::supervisor
