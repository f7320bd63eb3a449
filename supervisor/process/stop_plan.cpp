// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/stop_plan.hpp"

#include <algorithm>

namespace forkpool::supervisor {

StopPlan graceful_stop(const config::PoolConfig& pool) {
  if (pool.stop_signal == SIGKILL) return immediate_kill();
  std::chrono::milliseconds signal_after(0);
  if (pool.dispatch == config::Dispatch::Master && !pool.listen.empty())
    signal_after = std::min<std::chrono::milliseconds>(kEndOfWorkFirst, pool.graceful_timeout);
  return {{pool.stop_signal, signal_after, false}, {SIGKILL, pool.graceful_timeout, true}};
}

StopPlan immediate_kill() { return {{SIGKILL, std::chrono::milliseconds(0), true}}; }

StopPlan signal_then_kill(int signal) {
  if (signal == SIGKILL) return immediate_kill();
  return {{signal, std::chrono::milliseconds(0), false}, {SIGKILL, kSignalThenKill, true}};
}

}  // namespace forkpool::supervisor
