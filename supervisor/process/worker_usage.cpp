// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/worker_usage.hpp"

#include <fcntl.h>

#include <cstdio>

namespace forkpool::supervisor {

std::optional<shm::ProcStats> WorkerUsage::read(pid_t pid, std::int64_t now_ns, std::chrono::nanoseconds max_age) {
  if (last_ && now_ns - read_at_ns_ < max_age.count()) return last_;
  if (!statm_fd_ && pid > 0) {
    char path[32];
    std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
    base::OwnedFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    // The clock's id is the pid's; checked once here (ESRCH once the process is gone).
    if (fd && ::clock_getcpuclockid(pid, &cpu_clock_) == 0) statm_fd_ = std::move(fd);
  }
  last_ = read_now(now_ns, max_age.count() > 0);
  read_at_ns_ = now_ns;
  return last_;
}

std::optional<shm::ProcStats> WorkerUsage::read_now(std::int64_t now_ns, bool rss_may_stay) {
  // No descriptor once the process was reaped (forget), so no read of a reused pid.
  if (!statm_fd_) return std::nullopt;
  timespec cpu{};
  if (::clock_gettime(cpu_clock_, &cpu) != 0) return std::nullopt;
  const std::int64_t cpu_ns = static_cast<std::int64_t>(cpu.tv_sec) * 1'000'000'000 + cpu.tv_nsec;
  shm::ProcStats stats;
  stats.cpu_time_us = static_cast<std::uint64_t>(cpu_ns / 1'000);
  if (rss_may_stay && last_ && cpu_ns == cpu_ns_ && now_ns - rss_read_at_ns_ < std::chrono::nanoseconds(kRssMaxAge).count()) {
    stats.rss_bytes = last_->rss_bytes;  // it has not run since: see the header
    return stats;
  }
  const auto rss = shm::read_rss_from_statm(statm_fd_.get());
  if (!rss) return std::nullopt;  // gone (reaped, not yet forgotten): nothing
  stats.rss_bytes = *rss;
  cpu_ns_ = cpu_ns;
  rss_read_at_ns_ = now_ns;
  return stats;
}

void WorkerUsage::forget() {
  statm_fd_.reset();
  last_.reset();
  cpu_ns_ = -1;
}

}  // namespace forkpool::supervisor
