// SPDX-License-Identifier: Apache-2.0
// Pool: max_requests for workers that accept by themselves (shared dispatch). The master
// passes them no connection, so it reads how many they have had from their scoreboard
// pages, where each counts the connections it accepted.

#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"

namespace forkpool::supervisor {

void Pool::arm_shared_recycling() {
  const bool wanted =
      config_->dispatch == config::Dispatch::Shared && !listeners_.empty() && config_->max_requests > 0;
  if (!wanted) {
    shared_recycling_.reset();
    return;
  }
  if (shared_recycling_) return;
  shared_recycling_ = std::make_unique<Timer>(ctx_.loop);
  shared_recycling_->start_repeating(kSharedRecyclingCheck, [this] { recycle_shared_workers(); });
}

void Pool::recycle_shared_workers() {
  if (state_ != shm::PoolState::Running && state_ != shm::PoolState::Starting) return;
  for (auto& s : slots_) {
    WorkerProcess* p = s->process.get();
    if (p == nullptr || !accepts_itself(*p) || p->phase() != WorkerPhase::Ready || s->replacement ||
        p->recycle_after() == 0)
      continue;
    const std::uint64_t handled =
        ctx_.scoreboard->read_worker(p->identity().scoreboard_slot).connections_handled;
    if (handled < p->recycle_after()) continue;
    s->replace_reason = "after " + std::to_string(handled) + " connections (max_requests)";
    s->replace_outdated = false;
    spawn_replacement(*s);
  }
}

}  // namespace forkpool::supervisor
