// SPDX-License-Identifier: Apache-2.0
#pragma once
// How a worker is asked to stop, as data: send each step's signal at its time.

#include <chrono>
#include <csignal>
#include <vector>

#include "config/config.hpp"

namespace forkpool::supervisor {

struct StopStep {
  int signal;
  std::chrono::milliseconds after;  // since the stop began
  bool whole_group;                 // signal the worker's process group, descendants included
};

using StopPlan = std::vector<StopStep>;

// stop_signal now, then SIGKILL to the whole group after graceful_timeout. In master
// dispatch with listeners, end of work on the channel is the request to stop (every such
// worker reads its channel), and the stop signal follows kEndOfWorkFirst later as a
// fallback: a worker started a moment ago may hold a connection before it has installed
// its signal handlers, and an early SIGTERM would cost that connection.
StopPlan graceful_stop(const config::PoolConfig& pool);
inline constexpr std::chrono::seconds kEndOfWorkFirst{1};
// SIGKILL to the whole group at once (SIGQUIT to the master, watchdog, ready timeout).
StopPlan immediate_kill();
// A signal other than KILL is followed by SIGKILL this much later (SPEC: timeout_signal).
inline constexpr std::chrono::seconds kSignalThenKill{5};
StopPlan signal_then_kill(int signal);

}  // namespace forkpool::supervisor
