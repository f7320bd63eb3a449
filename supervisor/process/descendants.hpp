#pragma once
// The processes a master may be left with besides its workers: their descendants,
// re-parented to it as a child subreaper.

#include <sys/types.h>

#include <vector>

namespace forkpool::supervisor {

// Live or zombie children of `parent`, from /proc (empty without /proc, or when /proc
// belongs to another PID namespace than this process).
std::vector<pid_t> children_of(pid_t parent);

}  // namespace forkpool::supervisor
