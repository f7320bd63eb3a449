#include "supervisor/stop_plan.hpp"

namespace forkpool::supervisor {

StopPlan graceful_stop(const config::PoolConfig& pool) {
  if (pool.stop_signal == SIGKILL) return immediate_kill();
  return {{pool.stop_signal, std::chrono::milliseconds(0), false},
          {SIGKILL, pool.graceful_timeout, true}};
}

StopPlan immediate_kill() { return {{SIGKILL, std::chrono::milliseconds(0), true}}; }

StopPlan signal_then_kill(int signal) {
  if (signal == SIGKILL) return immediate_kill();
  return {{signal, std::chrono::milliseconds(0), false}, {SIGKILL, kSignalThenKill, true}};
}

}  // namespace forkpool::supervisor
