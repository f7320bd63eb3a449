// SPDX-License-Identifier: Apache-2.0
// Pool: what a configuration reload does to a running pool.

#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"

namespace forkpool::supervisor {

void Pool::release_listener_watches() {
  demand_watch_.reset();
  if (dispatcher_) dispatcher_->set_listeners({});
}

void Pool::keep(PoolConfigRef config, std::vector<ListenerRef> listeners) {
  // Equal settings, but the new generation's copy, so the old one can be let go; the
  // workers keep theirs until they exit (it is equal too).
  if (listeners != listeners_) demand_watch_.reset();  // watches name fd numbers: rewatched below
  config_ = std::move(config);
  listeners_ = std::move(listeners);
  if (dispatcher_) {
    if (config_->dispatch == config::Dispatch::Master) dispatcher_->set_config(config_);
    update_master_accepting();  // its listeners again if they were released, and only if it accepts
  }
  rescale();
  publish_size();
}

void Pool::reconfigure(PoolConfigRef config, unsigned generation, std::vector<ListenerRef> listeners,
                       config::PoolChange change) {
  const int old_target = target_;
  const bool was_dynamic = config_->dynamic;
  const bool recycling_changed = config->max_requests != config_->max_requests ||
                                 config->max_requests_jitter != config_->max_requests_jitter;
  // Watches name fd numbers: gone before the old listeners may close; rewatched by rescale().
  if (listeners != listeners_) demand_watch_.reset();
  config_ = std::move(config);
  listeners_ = std::move(listeners);
  generation_ = generation;
  ctx_.scoreboard->set_pool_generation(index_, generation_);

  flap_.set_limits(config_->flap_restarts, config_->flap_window);
  for (auto& s : slots_) s->backoff.set_delays(config_->restart_delay, config_->restart_delay_max);
  arm_memory_sampler();
  arm_shared_recycling();

  // Which running workers go on under the new configuration. In place: every worker the
  // latest replacing reload started. Replacing: those already running the new worker-side
  // settings (a reload back to what they were started with, say after one whose new
  // program never became ready), which take the new generation and need no replacement.
  const bool replacing = change == config::PoolChange::Replace;
  auto goes_on = [&](const WorkerProcess& p) {
    if (!replacing) return !outdated(p);
    // An outdated worker adopted by a binary upgrade holds the pool's settings of then, not
    // those it was started with: it is replaced, as before.
    if (p.adopted() && outdated(p)) return false;
    return config::compare(p.config(), *config_) != config::PoolChange::Replace;
  };
  bool past_limit = false;
  for (auto& s : slots_) {
    for (WorkerProcess* p : {s->process.get(), s->replacement.get()}) {
      if (p == nullptr) continue;
      if (!goes_on(*p)) {
        // A replacement started with settings that are not the newest never served: it
        // stops now, so it holds up neither its slot nor the rolling restart.
        if (p == s->replacement.get()) drop_replacement(*s);
        continue;
      }
      if (replacing) p->adopt_generation(config_, generation_);
      else p->adopt_settings(config_);
      if (!recycling_changed) continue;
      // A new max_requests counts the connections it has had since it started. Those
      // already past it are replaced as a rolling restart is, a batch at a time, not
      // all at their next connection.
      p->set_recycle_after(recycle_limit());
      if (p == s->process.get() && p->recycle_after() > 0 && p->handed() >= p->recycle_after()) {
        p->set_recycle_after(0);  // its replacement, below, gets a limit of its own
        if (rolling_.empty()) rolling_reason_ = "(max_requests lowered by a reload)";
        rolling_.push_back(s->index);
        past_limit = true;
      }
    }
  }
  if (replacing) {
    // Every other worker runs outdated settings: they are all replaced, a batch at a time,
    // each new one ready before an old one stops. The newest configuration wins and no
    // older generation is left behind.
    worker_generation_ = generation_;
  } else if (past_limit && (state_ == shm::PoolState::Running || state_ == shm::PoolState::Starting)) {
    continue_rolling();
  }
  update_dispatcher();
  if (config_->dynamic) {
    // min/max/spare/idle_timeout apply in place: the target moves inside the new bounds.
    apply_bounds();
  } else {
    if (was_dynamic) stop_scaling();
    if ((config_->workers != old_target || was_dynamic) && state_ != shm::PoolState::Stopping)
      resize(config_->workers);
    else target_ = config_->workers;
  }
  if (change == config::PoolChange::Replace && (state_ == shm::PoolState::Running || state_ == shm::PoolState::Starting))
    continue_rolling();
  // A failed pool whose program or environment changed is a deploy of a fix: try it,
  // and replace what still runs of the broken one.
  if (change == config::PoolChange::Replace && state_ == shm::PoolState::Failed) {
    start();
    continue_rolling();
  }
  publish_size();  // min/max may have moved even where the target did not
  if (ctx_.changed) ctx_.changed();
}

void Pool::drop_replacement(Slot& slot) {
  std::unique_ptr<WorkerProcess> p = std::move(slot.replacement);
  report(ctx_, spdlog::level::info, "worker.obsolete",
         {config_->name, slot.index, p->pid(), p->identity().generation},
         fmt::format("worker {}[{}] pid {} (a replacement, not ready yet) runs settings the reload to generation {} "
                     "replaced; stopping it",
                     config_->name, slot.index, p->pid(), generation_));
  // It never served: nothing to finish, so no grace either (as for ready_timeout).
  p->stop(immediate_kill(), true);
  slot.retiring.push_back(std::move(p));
  ++ctx_.workers_epoch;
}

void Pool::retire() {
  removed_ = true;
  stop_scaling();
  rolling_.clear();
  rolling_next_.stop();
  start_next_.stop();
  update_dispatcher();  // accepts nothing more; the kernel backlog keeps new clients
  maybe_finish_retiring();
}

void Pool::maybe_finish_retiring() {
  if (!removed_ || state_ == shm::PoolState::Stopping || state_ == shm::PoolState::Stopped) return;
  // What the master accepted is served first: its workers are still there for it.
  if (dispatcher_ && dispatcher_->queued() > 0 && ready_count() > 0) return;
  log::at_with(spdlog::level::info, "pool.retire", [this] { return nlohmann::json{{"pool", config_->name}}; },
               "pool {} was removed from the configuration; draining its workers", config_->name);
  stop(false);
}

}  // namespace forkpool::supervisor
