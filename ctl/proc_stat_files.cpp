// SPDX-License-Identifier: Apache-2.0
#include "ctl/proc_stat_files.hpp"

#include <unistd.h>

namespace forkpool::ctl {

ProcStatFiles::~ProcStatFiles() {
  for (auto& k : by_slot_) drop(k);
}

void ProcStatFiles::drop(Kept& k) {
  if (k.fd >= 0) {
    ::close(k.fd);
    --kept_;
  }
  k = Kept{};
}

std::optional<shm::ProcStats> ProcStatFiles::read(std::uint32_t slot, pid_t pid) {
  if (pid <= 0) return std::nullopt;
  if (slot >= by_slot_.size()) by_slot_.resize(slot + 1);
  Kept& k = by_slot_[slot];
  if (k.fd >= 0 && k.pid == pid) {
    if (auto stats = shm::read_proc_stats_from(k.fd)) return stats;
  }
  // Another worker in the slot, or the one the descriptor was opened for is gone.
  drop(k);
  const int fd = shm::open_proc_stat(pid);
  if (fd < 0) return std::nullopt;
  auto stats = shm::read_proc_stats_from(fd);
  if (stats && kept_ < max_open_) {
    k = Kept{pid, fd};
    ++kept_;
  } else {
    ::close(fd);
  }
  return stats;
}

}  // namespace forkpool::ctl
