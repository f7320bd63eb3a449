// SPDX-License-Identifier: Apache-2.0
#pragma once
// Whether a process has a handler installed for a signal, from /proc/PID/status (SigCgt).
// The kernel drops a signal sent to a PID namespace's init (isolate = "pid") unless the
// init has a handler for it, so the master asks before relying on a stop signal.

#include <sys/types.h>

#include <optional>

namespace forkpool::supervisor {

// Nothing when /proc/PID/status cannot be read (the process is gone).
std::optional<bool> catches_signal(pid_t pid, int signo);

}  // namespace forkpool::supervisor
