// SPDX-License-Identifier: Apache-2.0
// Pool: what happens when a worker exits, and stopping or resizing the pool.

#include <sys/wait.h>

#include <algorithm>

#include "config/diff.hpp"
#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"

namespace forkpool::supervisor {
namespace {

// A worker with settings `ran` can be started again beside a replacement with `now`: they
// differ in what a worker is started with (else the replacement is that start), but not in
// dispatch or listeners (the pool has the listeners of `now` only, and dispatches as `now`).
bool can_start_beside(const config::PoolConfig& ran, const config::PoolConfig& now) {
  return config::compare(ran, now) == config::PoolChange::Replace && ran.dispatch == now.dispatch &&
         std::ranges::equal(ran.listen, now.listen, {}, &config::ListenAddress::text, &config::ListenAddress::text);
}

}  // namespace

void Pool::handle_exit(pid_t pid, int wait_status) {
  handle_exit_of(pid, wait_status);
  rescale();
}

void Pool::handle_exit_of(pid_t pid, int wait_status) {
  ctx_.owners.erase(pid);
  Slot* slot = nullptr;
  std::unique_ptr<WorkerProcess>* holder = nullptr;
  for (auto& s : slots_) {
    if (s->process && s->process->pid() == pid) holder = &s->process;
    else if (s->replacement && s->replacement->pid() == pid) holder = &s->replacement;
    for (auto& r : s->retiring)
      if (r->pid() == pid) holder = &r;
    if (holder != nullptr) {
      slot = s.get();
      break;
    }
  }
  if (slot == nullptr) return;
  std::unique_ptr<WorkerProcess> p = std::move(*holder);
  PoolConfigRef ran = p->config_ref();
  slot->retiring.erase(std::remove(slot->retiring.begin(), slot->retiring.end(), nullptr), slot->retiring.end());
  const bool was_serving = holder == &slot->process;
  const unsigned generation_of_dead = p->identity().generation;
  const bool adopted_outdated = p->adopted() && outdated(*p);
  const bool was_replacement = holder == &slot->replacement;

  const auto uptime = p->uptime();
  const bool broken = p->stopped_as_broken();
  const bool came_to_nothing = never_started(p->ever_ready(), uptime);
  const ExitReason reason =
      classify_exit({wait_status, p->exit_expected(), p->ever_ready(), uptime,
                     p->config().ready == config::Readiness::Exec, false});
  const std::string line = describe_exit(config_->name, slot->index, pid, wait_status, uptime);
  if (reason != ExitReason::Requested) last_exit_line_ = line;
  const auto level = reason == ExitReason::Requested ? spdlog::level::info
                     : reason == ExitReason::Fatal   ? spdlog::level::err
                                                     : spdlog::level::warn;
  report(ctx_, level, "worker.exit", {config_->name, slot->index, pid, p->identity().generation},
         reason == ExitReason::Fatal ? line + ": EX_CONFIG before it was ready" : line,
         exit_fields(reason, wait_status, uptime));
  const std::uint32_t sb = p->identity().scoreboard_slot;
  ctx_.scoreboard->mark_exited(sb, wait_status);
  // LAST-EXIT is the worker number's: the processes still running for it show this exit.
  slot->last_exit_status = wait_status;
  for (WorkerProcess* other : {slot->process.get(), slot->replacement.get()})
    if (other != nullptr) ctx_.scoreboard->set_last_exit(other->identity().scoreboard_slot, wait_status);
  for (const auto& other : slot->retiring)
    if (other) ctx_.scoreboard->set_last_exit(other->identity().scoreboard_slot, wait_status);
  if (reason == ExitReason::Crashed || reason == ExitReason::Fatal)
    ctx_.scoreboard->count(index_, shm::PoolCounter::Crashed);
  // Its last DONEs are read while the slot is still its own (a DONE can make a dynamic
  // pool grow, and a new worker take the lowest free slot); released after.
  p->reaped();
  ctx_.scoreboard->release_slot(sb);
  if (dispatcher_) dispatcher_->on_lost(p->in_flight());
  if (std::erase(queue_drainers_, p.get()) > 0) {
    ++ctx_.workers_epoch;
    if (queue_drainers_.empty()) end_draining();
  }
  p.reset();

  if (was_serving && slot->replacement) {
    if ((state_ == shm::PoolState::Running || state_ == shm::PoolState::Starting) && slot->wanted &&
        !adopted_outdated &&
        can_start_beside(*ran, *config_)) {
      // The replacement runs other settings and may take long to be ready, or never be
      // (a deploy whose program hangs): the slot is started again as after any exit,
      // with the settings the dead worker ran, and the replacement still takes over
      // once it is ready.
      slot->respawn_config = std::move(ran);
      slot->respawn_generation = generation_of_dead;
    } else {
      // Same settings: the replacement is what a respawn would start. It takes the slot
      // now and becomes ready in its own time.
      slot->process = std::move(slot->replacement);
      ++ctx_.workers_epoch;
    }
  }
  update_master_accepting();  // a worker of one kind or the other is gone
  if (state_ == shm::PoolState::Stopping) {
    if (live() == 0) set_state(shm::PoolState::Stopped);
    return;
  }
  maybe_finish_retiring();
  if (!was_serving && !was_replacement) {  // a retired worker finished
    if (ctx_.changed) ctx_.changed();
    return;
  }
  if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) return;
  if (!slot->wanted) {
    if (ctx_.changed) ctx_.changed();
    return;
  }
  if (reason == ExitReason::Fatal) {
    fail("worker " + std::to_string(slot->index) + " exited with status 78 (EX_CONFIG) before it was ready");
    return;
  }
  // Starts in a row that came to nothing fail the pool whatever the delays (the window
  // below is blind to crashes spread out by a growing backoff).
  bool streak_over = false;
  if (reason != ExitReason::Requested)
    streak_over = slot->starts.record(came_to_nothing) > static_cast<unsigned>(config_->flap_restarts);
  else if (!came_to_nothing)
    slot->starts.reset();  // it served, then was stopped on purpose
  if (was_replacement) {
    // The current worker keeps serving; the replacement is tried again after backoff.
    if (flap_.record(Clock::now())) {
      fail(std::to_string(flap_.recent()) + " unplanned exits within flap_window");
      return;
    }
    if (streak_over) {
      fail_starts(*slot);
      return;
    }
    if (!slot->process) {
      // Its serving worker had died beside it, and is being started again (respawn_config):
      // that start, now with the pool's settings, is what the slot needs; no replacement.
      slot->respawn_config.reset();
      if (!slot->restart_timer.active()) spawn(*slot);
      update_running();
      return;
    }
    retry_replacement(*slot, slot->backoff.next(ctx_.rng));
    return;
  }
  if (slot->process) {  // a replacement took over
    if (streak_over) fail_starts(*slot);  // but this slot's workers keep dying young
    else update_running();
    return;
  }
  if (reason == ExitReason::Requested) {
    spawn(*slot);
    update_running();
    return;
  }
  // A worker that served a while and then left with status 0 (recycling itself, a job
  // that finished) is no flap; one that exits 0 at once, over and over, is, and so is one
  // the pool stopped as broken, however long it ran (finding out takes 10 s or more).
  after_unplanned_exit(*slot, uptime, broken || !(reason == ExitReason::Clean && uptime >= kHealthyRun), streak_over,
                       !came_to_nothing, broken);
}

void Pool::fail_starts(const Slot& slot) {
  fail(fmt::format("worker {} did not start {} times in a row (it could not be started, or exited before it was "
                   "ready or within {}; flap_restarts = {})",
                   slot.index, slot.starts.length(), format_uptime(kStartupGrace), config_->flap_restarts));
}

void Pool::after_unplanned_exit(Slot& slot, std::chrono::milliseconds uptime, bool counts_as_flap,
                                bool streak_over, bool started, bool broken) {
  if (uptime >= kHealthyRun && !broken) slot.backoff.reset();
  if (counts_as_flap && flap_.record(Clock::now())) {
    fail(std::to_string(flap_.recent()) + " unplanned exits within flap_window " +
         format_uptime(config_->flap_window) + " (flap_restarts = " + std::to_string(config_->flap_restarts) + ")");
    return;
  }
  if (streak_over) {
    fail_starts(slot);
    return;
  }
  schedule_respawn(slot, slot.backoff.next(ctx_.rng, started));
  if (ctx_.changed) ctx_.changed();
}

void Pool::fail(const std::string& why) {
  for (auto& s : slots_) s->restart_timer.stop();
  start_next_.stop();
  report(ctx_, spdlog::level::err, "pool.failed", {config_->name, {}, 0},
         fmt::format("pool {} failed: {}; no more restarts until it is started again", config_->name, why),
         {{"reason", why}});
  // Status shows this: the reason, and the exit that tipped the pool over.
  failed_reason_ = last_exit_line_.empty() ? why : why + "; last exit: " + last_exit_line_;
  set_state(shm::PoolState::Failed);
}

void Pool::stop(bool fast) {
  if (state_ == shm::PoolState::Stopped) return;
  set_state(shm::PoolState::Stopping);
  stop_scaling();
  rolling_.clear();
  rolling_next_.stop();
  start_next_.stop();
  if (dispatcher_) dispatcher_->set_paused(true);
  queue_drainers_.clear();  // stopped below with every retiring worker
  end_draining();
  auto plan = [fast](const WorkerProcess& p) { return fast ? immediate_kill() : graceful_stop(p.config()); };
  for (auto& s : slots_) {
    s->restart_timer.stop();
    s->last_error.clear();  // a stopped pool shows no failed starts
    if (s->process) s->process->stop(plan(*s->process), true);
    if (s->replacement) s->replacement->stop(plan(*s->replacement), true);
    for (auto& r : s->retiring) r->stop(plan(*r), true);
  }
  if (live() == 0) set_state(shm::PoolState::Stopped);
}

bool Pool::resize(int target) {
  if (target < 0 || target > max_size()) return false;
  const int old = target_;
  target_ = target;
  publish_size();
  report(ctx_, spdlog::level::info, "pool.scale", {config_->name, {}, 0},
         fmt::format("pool {} scales from {} to {} workers", config_->name, old, target_),
         {{"from", old}, {"to", target_}});
  // Slots target.. are let go (a dynamic pool may have left gaps below its old size too).
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (static_cast<int>(s.index) < target_ || !s.wanted) continue;
    s.wanted = false;
    s.restart_timer.stop();
    if (s.process) s.process->stop(graceful_stop(s.process->config()), true);
    if (s.replacement) s.replacement->stop(graceful_stop(s.replacement->config()), true);
  }
  for (int i = 0; i < target_; ++i) {
    Slot& s = slot_at(static_cast<unsigned>(i));
    if (s.wanted && s.process) continue;
    if (!s.wanted) s.backoff.reset();
    s.wanted = true;
    if (!s.restart_timer.active()) spawn(s);
  }
  update_running();
  return true;
}

void Pool::close_listeners() {
  demand_watch_.reset();  // before the sockets close (docs in listener_watch.hpp)
  if (dispatcher_) dispatcher_->shut();
  for (auto& l : listeners_) l->close();
}

}  // namespace forkpool::supervisor
