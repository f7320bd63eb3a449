// SPDX-License-Identifier: Apache-2.0
#pragma once
// fork + exec of one worker, with exec failure reported synchronously.

#include <sys/types.h>

#include <string>

#include "supervisor/process/spawn_plan.hpp"

namespace forkpool::supervisor {

struct SpawnResult {
  pid_t pid = -1;     // > 0 when the worker is running the new program
  int error = 0;      // errno of the failed step
  std::string what;   // "fork", "execve /path", "setuid", ...

  bool ok() const { return pid > 0; }
  std::string message() const;
};

// Blocks every signal around fork so that no handler runs in the child before it
// resets them. Waits (briefly) for the child to exec or fail; a failed child is reaped
// here, so the caller never sees its pid.
SpawnResult spawn(const SpawnPlan& plan);

}  // namespace forkpool::supervisor
