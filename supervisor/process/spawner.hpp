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

// A child forked by spawn_begin that has not been seen to exec yet: its pid and the read
// end of the pipe that closes at its exec or carries its ChildFailure.
struct StartedChild {
  pid_t pid = -1;
  int report_fd = -1;  // owned; closed by spawn_finish
  // Destroyed unfinished, the child is killed and reaped.
  SpawnResult failed;  // set when the fork itself (or what precedes it) failed
  std::vector<std::pair<int, rlimit>> rlimits;  // the plan's, to name one the child could not set
  std::string cwd;                              // the plan's, to name it when chdir failed

  StartedChild() = default;
  StartedChild(StartedChild&& o) noexcept;
  StartedChild& operator=(StartedChild&& o) noexcept;
  ~StartedChild();

 private:
  void abandon() noexcept;
};

// Blocks every signal around fork so that no handler runs in the child before it
// resets them. Does not wait for the child: several children can be forked in a row and
// exec at the same time (a pool's start), then each is finished with spawn_finish.
StartedChild spawn_begin(const SpawnPlan& plan);

// Waits (briefly) for the child to exec or fail; a failed child is reaped here, so the
// caller never sees its pid. Call it before the event loop can reap children.
SpawnResult spawn_finish(StartedChild& child);

// spawn_begin then spawn_finish.
SpawnResult spawn(const SpawnPlan& plan);

}  // namespace forkpool::supervisor
