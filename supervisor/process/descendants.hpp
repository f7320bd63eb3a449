// SPDX-License-Identifier: Apache-2.0
#pragma once
// The processes below a process: the children a master is left with besides its workers
// (re-parented to it as a child subreaper), and a worker's own process tree (a worker
// that is a master of its own, such as gunicorn, keeps its memory in its children).

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "shm/proc_stats.hpp"

namespace forkpool::supervisor {

// Live or zombie children of `parent`, from /proc (empty without /proc, or when /proc
// belongs to another PID namespace than this process).
std::vector<pid_t> children_of(pid_t parent);

// Who is whose parent, from one pass over /proc (empty under the same conditions as
// children_of). A snapshot: processes may come and go while and after it is read.
class ProcessTable {
 public:
  static ProcessTable read();
  // Every process below `root` (children, their children, ...), not `root` itself.
  std::vector<pid_t> descendants(pid_t root) const;

 private:
  std::unordered_multimap<pid_t, pid_t> children_;  // parent -> child
};

// Resource use of `root` and every process below it: RSS summed over the tree (shared
// pages counted once per process, as ps does), CPU time of `root` alone (a child's CPU
// time would vanish from the sum when it exits). Nothing if `root` itself is gone.
std::optional<shm::ProcStats> tree_stats(pid_t root, const ProcessTable& table);

}  // namespace forkpool::supervisor
