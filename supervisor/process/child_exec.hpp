// SPDX-License-Identifier: Apache-2.0
#pragma once
// The code that runs in a forked child between fork() and execve(). Async-signal-safe
// only: no allocation, no locks, no logging, no exceptions; it never returns.

#include "supervisor/process/spawn_plan.hpp"

namespace forkpool::supervisor {

// Which step failed, reported to the master through the CLOEXEC error pipe.
enum class ChildStep : int {
  ProcessGroup = 1,
  Signals,
  Descriptors,
  Rlimit,
  Groups,
  Gid,
  Uid,
  Cwd,
  ParentDeath,
  Exec,
};

struct ChildFailure {
  int step;
  int error;
  int detail;  // ChildStep::Rlimit: the index in SpawnPlan::rlimits of the limit refused
};

const char* to_string(ChildStep step);

// Applies `plan` and execs. On failure writes a ChildFailure to `error_fd` and _exit(127)s.
// `master_pidfd` (isolate = "pid" only, else -1) lets a child whose parent is outside its
// PID namespace check that the master is still there.
[[noreturn]] void exec_child(const SpawnPlan& plan, int error_fd, int master_pidfd) noexcept;

}  // namespace forkpool::supervisor
