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
  last_ = read_now();
  read_at_ns_ = now_ns;
  return last_;
}

std::optional<shm::ProcStats> WorkerUsage::read_now() const {
  if (!statm_fd_) return std::nullopt;
  // The descriptor first: it reads nothing once the process it was opened for is reaped,
  // and until the master reaps it no other process can hold its pid, so the clock read
  // next is this process's.
  const auto rss = shm::read_rss_from_statm(statm_fd_.get());
  if (!rss) return std::nullopt;
  timespec cpu{};
  if (::clock_gettime(cpu_clock_, &cpu) != 0) return std::nullopt;
  shm::ProcStats stats;
  stats.rss_bytes = *rss;
  stats.cpu_time_us = static_cast<std::uint64_t>(cpu.tv_sec) * 1'000'000 +
                      static_cast<std::uint64_t>(cpu.tv_nsec) / 1'000;
  return stats;
}

void WorkerUsage::forget() {
  statm_fd_.reset();
  last_.reset();
}

}  // namespace forkpool::supervisor
