// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to pool*.cpp: one worker number of a pool and the processes that serve it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "supervisor/pool/pool.hpp"

namespace forkpool::supervisor {

struct Pool::Slot {
  Slot(uv_loop_t* loop, unsigned i, const config::PoolConfig& c)
      : index(i), restart_timer(loop), backoff(c.restart_delay, c.restart_delay_max) {}
  unsigned index;
  bool wanted = false;  // the pool wants a worker here (fixed: index < target; dynamic: grown into)
  std::unique_ptr<WorkerProcess> process;                // serving, or starting to
  std::unique_ptr<WorkerProcess> replacement;            // takes over once ready
  std::vector<std::unique_ptr<WorkerProcess>> retiring;  // replaced, finishing their work
  std::string replace_reason;
  // The replacement is wanted because the serving worker runs settings a reload replaced
  // (continue_rolling), not for a restart, max_requests or max_memory.
  bool replace_outdated = false;
  std::string last_error;  // why its last start failed; shown while it has no process
  // Its serving worker died while a replacement with other settings was still starting:
  // the next start here runs the settings (and generation) the dead one ran, so the slot
  // serves again while the replacement takes its time (pool_exit.cpp).
  PoolConfigRef respawn_config;
  unsigned respawn_generation = 0;
  Timer restart_timer;
  Clock::time_point restart_due{};  // when restart_timer fires, while it is active
  Backoff backoff;
  StartStreak starts;
  std::uint64_t launches = 0;  // processes started for this worker number (replacements too)
  int last_exit_status = -1;   // how the last of them to exit ended (raw wait status), -1: none has
};

}  // namespace forkpool::supervisor
