// SPDX-License-Identifier: Apache-2.0
#pragma once
// The /proc/PID/stat descriptors of the workers `forkpoolctl top` shows, kept open from one
// frame to the next: an open and a close per row were a quarter of a frame's system time
// with 1,000 workers (docs/performance.md). A kept descriptor stays with the process it
// was opened for, so a worker replaced under the same pid is never read through the old
// one: its reads fail once that process is reaped, and the slot's file is opened again.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "shm/proc_stats.hpp"

namespace forkpool::ctl {

class ProcStatFiles {
 public:
  // At most `max_open` descriptors are kept; rows beyond that are opened and closed per
  // read, so a tall terminal over a large pool cannot run top out of descriptors.
  explicit ProcStatFiles(std::size_t max_open = 256) : max_open_(max_open) {}
  ~ProcStatFiles();
  ProcStatFiles(const ProcStatFiles&) = delete;
  ProcStatFiles& operator=(const ProcStatFiles&) = delete;

  // RSS and CPU time of the worker `pid` in scoreboard slot `slot`; nothing if it is gone.
  std::optional<shm::ProcStats> read(std::uint32_t slot, pid_t pid);
  std::size_t kept() const { return kept_; }

 private:
  struct Kept {
    pid_t pid = 0;
    int fd = -1;
  };
  void drop(Kept& k);

  std::vector<Kept> by_slot_;
  std::size_t kept_ = 0;
  std::size_t max_open_;
};

}  // namespace forkpool::ctl
