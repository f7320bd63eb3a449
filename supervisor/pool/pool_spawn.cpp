// SPDX-License-Identifier: Apache-2.0
// Pool: starting workers (a slot's worker and replacements), what their events do, and
// what happens when a start fails; stopping one worker on the pool's behalf.

#include <csignal>
#include <optional>
#include <vector>

#include "base/resources.hpp"
#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"

namespace forkpool::supervisor {

std::uint32_t Pool::acquire_scoreboard_slot(unsigned worker) {
  std::uint32_t sb = 0;
  if (auto ec = ctx_.scoreboard->acquire_slot(sb)) {
    if (ec == std::errc::no_space_on_device)
      throw SpawnFailure("every scoreboard slot is taken (" + std::to_string(ctx_.scoreboard->slot_count()) +
                             " until forkpool is restarted)",
                         true);
    throw SpawnFailure("scoreboard slot page: " + ec.message(), base::out_of_resources(ec.value()));
  }
  ctx_.scoreboard->assign_slot(sb, index_, worker);
  return sb;
}

WorkerEvents Pool::worker_events(Slot& slot, const std::shared_ptr<WorkerProcess*>& self) {
  WorkerEvents events;
  events.ready = [this, &slot, self] {
    WorkerProcess* p = *self;
    if (p == slot.replacement.get()) promote(slot);
    update_master_accepting();
    if (dispatcher_) {
      dispatcher_->worker_idle(*p);
      dispatcher_->pump();
    }
    update_running();
    rescale();
  };
  events.ready_confirmed = [this, &slot, self] {
    WorkerProcess* p = *self;
    // With ready = "exec" this comes after the worker's first second (see WorkerEvents), so
    // the line says why: it may have served already.
    const bool exec = p->config().ready == config::Readiness::Exec;
    report(ctx_, spdlog::level::info, "worker.ready", {config_->name, slot.index, p->pid(), p->identity().generation},
           fmt::format("worker {}[{}] pid {} is ready{}", config_->name, slot.index, p->pid(),
                       exec ? fmt::format(" (ready = \"exec\": up for {})", format_uptime(kExecReadyGrace)) : ""));
  };
  events.ready_timeout = [this, self] {
    const config::PoolConfig& c = (*self)->config();
    std::string why = "did not become ready within ready_timeout " + format_uptime(c.ready_timeout);
    // The usual cause: a program that does not speak the worker protocol (an ordinary
    // HTTP server) in a master-dispatch pool, where `ready = "protocol"` is the default.
    if (c.ready == config::Readiness::Protocol)
      why += " (it sent no READY on its channel; a program that does not speak the forkpool worker protocol "
             "belongs in a pool with dispatch = \"shared\")";
    else if (c.ready == config::Readiness::Notify)
      why += " (it sent no READY=1 to $NOTIFY_SOCKET)";
    kill_worker(**self, why);
  };
  events.watchdog_missed = [this, self] { kill_worker(**self, "sent no WATCHDOG=1 within watchdog"); };
  // After a DONE or a PARK: max_requests counts connections handed over (with
  // keepalive = "master", each request of a keep-alive connection is one).
  auto recycle_if_due = [this, &slot](WorkerProcess* p) {
    if (p->recycle_after() > 0 && p->handed() >= p->recycle_after() && p == slot.process.get() &&
        !slot.replacement) {
      slot.replace_reason = "after " + std::to_string(p->handed()) + " connections (max_requests)";
      slot.replace_outdated = false;
      spawn_replacement(slot);
    }
  };
  events.done = [this, self, recycle_if_due](std::chrono::microseconds held) {
    recycle_if_due(*self);
    if (dispatcher_ && (*self)->in_flight() == 0) dispatcher_->worker_idle(**self);
    if (dispatcher_) dispatcher_->on_done(held);
    maybe_finish_retiring();
    rescale();
  };
  events.parked = [this, self, recycle_if_due](std::uint64_t id, const HeldConnection& held, base::OwnedFd fd,
                                               std::uint32_t fd_flags) {
    recycle_if_due(*self);
    if (dispatcher_ && (*self)->in_flight() == 0) dispatcher_->worker_idle(**self);
    if (dispatcher_) dispatcher_->on_parked(id, held, std::move(fd), fd_flags);  // else `fd` closes here
    // Out of master dispatch, parked once no worker reads its channel: closed at once.
    if (config_->dispatch == config::Dispatch::Shared) update_master_accepting();
    maybe_finish_retiring();
    rescale();
  };
  events.protocol_error = [this] { ctx_.scoreboard->count(index_, shm::PoolCounter::ProtocolErrors); };
  events.writable = [this] {
    if (dispatcher_) dispatcher_->pump();
  };
  events.request_timeout = [this, &slot, self](const std::string& peer) {
    WorkerProcess* p = *self;
    const config::PoolConfig& c = p->config();
    report(ctx_, spdlog::level::warn, "worker.timeout", {c.name, slot.index, p->pid(), p->identity().generation},
           fmt::format("worker {}[{}] pid {} held a connection from {} longer than request_timeout {}; sending SIG{}",
                       c.name, slot.index, p->pid(), peer, format_uptime(c.request_timeout),
                       sigabbrev_np(c.timeout_signal)),
           {{"peer", peer}});
    ctx_.scoreboard->count(index_, shm::PoolCounter::Killed);
    p->stop(signal_then_kill(c.timeout_signal), false);
  };

  events.channel_closed = [this, &slot, self] {
    WorkerProcess* p = *self;
    // In shared dispatch the channel is optional (a program may close every descriptor
    // it does not know); in master dispatch it is the only way work arrives.
    if (!dispatcher_ || p->config().dispatch != config::Dispatch::Master || p->exiting()) return;
    stop_broken(slot, *p,
                "closed its channel and still runs " + format_uptime(kChannelClosedGrace) +
                    " later, so it can get no more work");
  };
  events.protocol_errors = [this, &slot, self] {
    stop_broken(slot, **self, "kept sending malformed channel records (" + std::to_string(kProtocolErrorLimit) +
                                  " or more over " + format_uptime(kProtocolErrorSpan) + ")");
  };
  return events;
}

std::unique_ptr<WorkerProcess> Pool::launch(Slot& slot) { return launch(slot, config_, generation_); }

std::unique_ptr<WorkerProcess> Pool::launch(Slot& slot, PoolConfigRef settings, unsigned generation) {
  std::unique_ptr<WorkerProcess> p = begin_launch(slot, std::move(settings), generation);
  finish_launch(slot, p);
  return p;
}

std::unique_ptr<WorkerProcess> Pool::begin_launch(Slot& slot) { return begin_launch(slot, config_, generation_); }

std::unique_ptr<WorkerProcess> Pool::begin_launch(Slot& slot, PoolConfigRef settings, unsigned generation) {
  // A worker that accepts by itself gets the listeners as the workers have them, and the
  // master stops accepting before it starts (docs/master.md, "A reload that switches dispatch").
  if (dispatcher_ && config_->dispatch == config::Dispatch::Shared) update_master_accepting(true);
  auto self = std::make_shared<WorkerProcess*>(nullptr);
  WorkerEvents events = worker_events(slot, self);
  const std::uint32_t sb = acquire_scoreboard_slot(slot.index);
  std::unique_ptr<WorkerProcess> p;
  try {
    p = std::make_unique<WorkerProcess>(ctx_, std::move(settings), WorkerProcess::Identity{slot.index, generation, sb},
                                        listeners_, std::move(events));
  } catch (...) {
    ctx_.scoreboard->release_slot(sb);
    throw;
  }
  *self = p.get();
  return p;
}

std::uint64_t Pool::recycle_limit() {
  if (config_->max_requests == 0) return 0;
  std::uniform_int_distribution<std::uint64_t> jitter(0, config_->max_requests_jitter);
  return static_cast<std::uint64_t>(config_->max_requests) + jitter(ctx_.rng);
}

void Pool::finish_launch(Slot& slot, std::unique_ptr<WorkerProcess>& p) {
  const std::uint32_t sb = p->identity().scoreboard_slot;
  try {
    p->finish_start();
  } catch (...) {
    p.reset();
    ctx_.scoreboard->release_slot(sb);
    throw;
  }
  p->set_recycle_after(recycle_limit());
  ctx_.owners[p->pid()] = this;
  ++slot.launches;
  ctx_.scoreboard->set_history(sb, slot.launches - 1, slot.last_exit_status);  // what forkpoolctl top shows
  ctx_.scoreboard->count(index_, shm::PoolCounter::Spawned);
  spawn_failures_ = 0;
  slot.last_error.clear();
  report(ctx_, spdlog::level::info, "worker.spawn", {config_->name, slot.index, p->pid(), p->identity().generation},
         fmt::format("worker {}[{}] pid {} started", config_->name, slot.index, p->pid()));
}

void Pool::spawn_batch(const std::vector<Slot*>& slots) {
  struct Start {
    Slot* slot;
    std::unique_ptr<WorkerProcess> process;
    std::optional<SpawnFailure> failure;
  };
  std::vector<Start> starts;
  starts.reserve(slots.size());
  for (Slot* s : slots) {
    if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) break;
    if (!s->wanted || s->process || s->restart_timer.active()) continue;
    Start& st = starts.emplace_back(Start{s, nullptr, std::nullopt});
    try {
      st.process = begin_launch(*s);
    } catch (const SpawnFailure& e) {
      st.failure = e;
    }
  }
  // Every exec is awaited (failed children reaped) before any event can run.
  for (Start& st : starts) {
    if (!st.process) continue;
    try {
      finish_launch(*st.slot, st.process);
    } catch (const SpawnFailure& e) {
      st.failure = e;
    }
  }
  for (Start& st : starts) {
    if (!st.process) continue;
    st.slot->process = std::move(st.process);
    ++ctx_.workers_epoch;
    if (config_->ready == config::Readiness::Exec) st.slot->process->mark_ready();
  }
  // As spawn() does, in slot order; a pool that failed stops counting.
  for (Start& st : starts) {
    if (!st.failure || state_ == shm::PoolState::Failed) continue;
    if (after_spawn_failure(*st.slot, *st.failure, false))
      schedule_respawn(*st.slot, st.slot->backoff.next(ctx_.rng));
    if (ctx_.changed) ctx_.changed();
  }
}

void Pool::spawn(Slot& slot) {
  if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) return;
  if (!slot.wanted || slot.process) return;
  // Beside a replacement still starting, the settings the slot's last worker ran (see
  // respawn_config); without one, as for any start: the pool's.
  PoolConfigRef settings = config_;
  unsigned generation = generation_;
  if (slot.respawn_config && slot.replacement) {
    settings = slot.respawn_config;
    generation = slot.respawn_generation;
  }
  try {
    slot.process = launch(slot, std::move(settings), generation);
    slot.respawn_config.reset();
    ++ctx_.workers_epoch;
  } catch (const SpawnFailure& e) {
    if (after_spawn_failure(slot, e, false)) schedule_respawn(slot, slot.backoff.next(ctx_.rng));
    if (ctx_.changed) ctx_.changed();
    return;
  }
  if (slot.process->config().ready == config::Readiness::Exec) slot.process->mark_ready();
}

void Pool::spawn_replacement(Slot& slot) {
  if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) return;
  if (slot.replacement || !slot.process) return;
  try {
    slot.replacement = launch(slot);
  } catch (const SpawnFailure& e) {
    // The current worker keeps serving, and the replacement is tried again after backoff
    // (descriptors or processes may be short only for a while).
    if (after_spawn_failure(slot, e, true)) retry_replacement(slot, slot.backoff.next(ctx_.rng));
    if (ctx_.changed) ctx_.changed();
    return;
  }
  if (config_->ready == config::Readiness::Exec) slot.replacement->mark_ready();
}

void Pool::retry_replacement(Slot& slot, std::chrono::milliseconds delay) {
  // An event too (forkpoolctl events), as for any respawn: a reload to a program that
  // cannot start shows here first, while the old workers go on serving.
  report(ctx_, spdlog::level::info, "worker.respawn_scheduled", {config_->name, slot.index, 0},
         fmt::format("worker {}[{}] (a replacement) starts again in {}", config_->name, slot.index,
                     format_uptime(delay)),
         {{"delay_ms", delay.count()}, {"replacement", true}});
  slot.restart_timer.start(delay, [this, &slot] {
    if (!slot.replace_outdated) {
      spawn_replacement(slot);
      return;
    }
    // For a reload: the rolling restart starts it, within its batch, if the serving worker
    // still runs outdated settings (a reload back to them may have come since).
    continue_rolling();
  });
}

bool Pool::after_spawn_failure(Slot& slot, const SpawnFailure& e, bool replacement) {
  // A start that never ran the program is no crash: it has a counter of its own.
  ctx_.scoreboard->count(index_, shm::PoolCounter::SpawnFailed);
  report(ctx_, spdlog::level::err, "worker.spawn_failed", {config_->name, slot.index, 0},
         fmt::format("worker {}[{}]{} could not be started: {}{}", config_->name, slot.index,
                     replacement ? " (a replacement)" : "", e.what(),
                     replacement ? "; the current worker keeps serving" : ""),
         {{"error", e.what()}, {"transient", e.transient}});
  if (!replacement) slot.last_error = e.what();
  // Short of processes, memory or descriptors: not the program's fault, so it is retried
  // with backoff and counts towards nothing.
  if (e.transient) return true;
  if (++spawn_failures_ >= kSpawnFailuresInARow) {
    last_exit_line_.clear();  // the failure is the start, not an earlier exit
    fail(fmt::format("its program could not be started {} times in a row (last: {})", spawn_failures_, e.what()));
    return false;
  }
  if (replacement) return true;
  const bool streak_over = slot.starts.record(true) > static_cast<unsigned>(config_->flap_restarts);
  if (flap_.record(Clock::now())) {
    fail(std::to_string(flap_.recent()) + " unplanned exits or failed starts within flap_window " +
         format_uptime(config_->flap_window) + " (flap_restarts = " + std::to_string(config_->flap_restarts) + ")");
    return false;
  }
  if (streak_over) {
    fail_starts(slot);
    return false;
  }
  return true;
}

void Pool::schedule_respawn(Slot& slot, std::chrono::milliseconds delay) {
  report(ctx_, spdlog::level::info, "worker.respawn_scheduled", {config_->name, slot.index, 0},
         fmt::format("worker {}[{}] starts again in {}", config_->name, slot.index, format_uptime(delay)),
         {{"delay_ms", delay.count()}});
  slot.restart_due = Clock::now() + delay;
  slot.restart_timer.start(delay, [this, &slot] {
    spawn(slot);
    update_running();
  });
}

void Pool::stop_broken(Slot& slot, WorkerProcess& p, std::string_view why) {
  report(ctx_, spdlog::level::warn, "worker.broken", {config_->name, slot.index, p.pid(), p.identity().generation},
         fmt::format("worker {}[{}] pid {} {}; stopping it (it is started again like a crashed one)", config_->name,
                     slot.index, p.pid(), why));
  // Not a requested exit: it is restarted with backoff and counts towards flapping, so a
  // program that does this every time cannot make the master fork in a loop.
  p.mark_broken();
  p.stop(graceful_stop(p.config()), false);
  if (dispatcher_) dispatcher_->pump();
}

void Pool::kill_worker(WorkerProcess& p, std::string_view why) {
  report(ctx_, spdlog::level::warn, "worker.kill", {config_->name, p.identity().worker, p.pid(), p.identity().generation},
         fmt::format("worker {}[{}] pid {} {}; killing it", config_->name, p.identity().worker, p.pid(), why));
  ctx_.scoreboard->count(index_, shm::PoolCounter::Killed);
  p.stop(immediate_kill(), false);
}

}  // namespace forkpool::supervisor
