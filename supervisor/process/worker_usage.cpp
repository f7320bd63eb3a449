// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/worker_usage.hpp"

#include <fcntl.h>

#include <cstdio>

namespace forkpool::supervisor {

std::optional<shm::ProcStats> WorkerUsage::read(pid_t pid, std::int64_t now_ns, std::chrono::nanoseconds max_age) {
  if (last_ && now_ns - read_at_ns_ < max_age.count()) return last_;
  if (!stat_fd_ && pid > 0) {
    char path[32];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    stat_fd_ = base::OwnedFd(::open(path, O_RDONLY | O_CLOEXEC));
  }
  last_ = stat_fd_ ? shm::read_proc_stats_from(stat_fd_.get()) : std::nullopt;
  read_at_ns_ = now_ns;
  return last_;
}

void WorkerUsage::forget() {
  stat_fd_.reset();
  last_.reset();
}

}  // namespace forkpool::supervisor
