// SPDX-License-Identifier: Apache-2.0
// Pool: the size of a dynamic pool (SPEC section 3a). The decision is pool_sizing's; this
// file gathers its counts, starts and retires workers, and keeps the few timers it needs
// armed only while something happens, so a pool at rest costs no wake-ups.

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "supervisor/dispatch/listen_backlog.hpp"
#include "supervisor/dispatch/listener_watch.hpp"
#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"

namespace forkpool::supervisor {
namespace {

// Shared dispatch: how often the master looks at the scoreboard and the listeners' backlog
// while a worker is busy or a connection waits (never at rest).
constexpr std::chrono::milliseconds kDemandSample{100};

std::chrono::milliseconds until(Clock::time_point t) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now());
  return std::max(std::chrono::milliseconds(0), left) + std::chrono::milliseconds(1);
}

}  // namespace

SizingCounts Pool::sizing_counts() {
  SizingCounts c;
  c.min = config_->min_workers;
  c.max = config_->max_workers;
  c.spare = config_->spare_workers;
  c.target = target_;
  const bool shared = config_->dispatch == config::Dispatch::Shared;
  // Shared dispatch: what waits in the listeners' accept queues (all the master knows of
  // connections its workers have not taken yet). After a reload from master dispatch, the
  // master's queue for the older workers counts too (below).
  std::uint64_t backlog = 0;
  if (shared)
    for (const auto& l : listeners_)
      if (l->fd) backlog += listen_backlog(l->fd.get()).value_or(0);
  const bool demand = backlog > 0 || listener_readable_;
  for (auto& s : slots_) {
    if (!s->wanted) continue;
    if (!s->process) {
      c.held = true;  // in crash backoff, or its start failed: a flapping pool does not grow
      continue;
    }
    WorkerProcess& p = *s->process;
    if (p.phase() == WorkerPhase::Starting) {
      ++c.starting;
      continue;
    }
    if (p.phase() != WorkerPhase::Ready) continue;  // killed by a timeout: it is respawned
    bool busy = p.in_flight() > 0;
    if (accepts_itself(p)) {
      const shm::WorkerSnapshot w = ctx_.scoreboard->read_worker(p.identity().scoreboard_slot);
      busy = w.state == shm::WorkerState::Busy;
      p.observe_activity(busy, w.connections_handled, demand);
    }
    ++(busy ? c.busy : c.idle);
  }
  if (dispatcher_) {
    const auto per = static_cast<std::size_t>(std::max(1, config_->max_inflight));
    c.waiting = static_cast<int>((dispatcher_->queued() + per - 1) / per);
  }
  if (shared) {
    c.waiting += static_cast<int>(std::min<std::uint64_t>(backlog, kMaxPoolWorkers));
    // A readable listener with no worker to accept: a connection waits, even where its
    // accept queue cannot be read.
    if (listener_readable_ && c.waiting == 0 && c.idle == 0 && c.starting == 0) c.waiting = 1;
  }
  if (state_ != shm::PoolState::Running && state_ != shm::PoolState::Starting) c.held = true;
  return c;
}

void Pool::rescale() {
  if (!dynamic() || rescaling_ || removed_) return;
  if (state_ != shm::PoolState::Running && state_ != shm::PoolState::Starting) {
    stop_scaling();
    return;
  }
  rescaling_ = true;
  SizingCounts c = sizing_counts();
  const Growth g = growth(c);
  // Never past what the scoreboard can hold (each worker may need a replacement beside it).
  const int room = std::max(0, max_size() - target_);
  const int wanted = std::min(g.add, room);
  const int n = spawn_rate_.allow(Clock::now(), wanted);
  if (n > 0) {
    grow(n, g.reason, c);
    c = sizing_counts();
  }
  if (n < wanted) spawn_retry_.start(until(spawn_rate_.next_window()), [this] { rescale(); });
  else spawn_retry_.stop();
  arm_idle_timer(c);
  watch_demand(c);
  rescaling_ = false;
}

void Pool::grow(int n, ScaleReason reason, const SizingCounts& before) {
  const int from = target_;
  std::vector<Slot*> chosen;
  // The lowest free worker numbers first, so FORKPOOL_WORKER stays within 0..max-1.
  for (unsigned i = 0; static_cast<int>(chosen.size()) < n && i < static_cast<unsigned>(kMaxPoolWorkers); ++i) {
    Slot& s = slot_at(i);
    if (s.wanted || s.process || s.replacement) continue;
    s.wanted = true;
    s.backoff.reset();
    s.starts.reset();
    chosen.push_back(&s);
    ++target_;
  }
  publish_size();
  note_scale(from, reason, before);
  const bool guard = rescaling_;
  rescaling_ = true;  // each start's ready event must not size the pool again half-way
  for (Slot* s : chosen) spawn(*s);
  rescaling_ = guard;
  update_running();
}

void Pool::retire_slot(Slot& slot) {
  slot.wanted = false;
  slot.restart_timer.stop();
  --target_;
  if (slot.replacement) {
    std::unique_ptr<WorkerProcess> r = std::move(slot.replacement);
    r->stop(graceful_stop(r->config()), true);
    slot.retiring.push_back(std::move(r));
  }
  if (slot.process) {
    // The normal drain: end of work (it finishes what it holds), then stop_signal.
    std::unique_ptr<WorkerProcess> p = std::move(slot.process);
    p->stop(graceful_stop(p->config()), true);
    slot.retiring.push_back(std::move(p));
  }
  slot.last_error.clear();
  ++ctx_.workers_epoch;
}

Pool::Slot* Pool::longest_idle() {
  Slot* best = nullptr;
  for (auto& s : slots_) {
    if (!s->wanted || !s->process || s->replacement) continue;
    const WorkerProcess& p = *s->process;
    if (p.phase() != WorkerPhase::Ready || p.in_flight() > 0) continue;
    if (accepts_itself(p) &&
        ctx_.scoreboard->read_worker(p.identity().scoreboard_slot).state == shm::WorkerState::Busy)
      continue;
    if (best == nullptr || p.idle_since() < best->process->idle_since()) best = s.get();
  }
  return best;
}

void Pool::shrink(int n, ScaleReason reason, const SizingCounts& before) {
  const int from = target_;
  for (int k = 0; k < n; ++k) {
    Slot* s = longest_idle();
    if (s == nullptr) {
      // No idle one left: the highest-numbered wanted slot; a busy worker finishes first.
      for (auto it = slots_.rbegin(); it != slots_.rend() && s == nullptr; ++it)
        if ((*it)->wanted) s = it->get();
    }
    if (s == nullptr) break;
    retire_slot(*s);
  }
  publish_size();
  note_scale(from, reason, before);
  if (dispatcher_) dispatcher_->pump();
  update_running();
}

Clock::time_point Pool::idle_from(const Slot& s) const {
  return std::max(s.process->idle_since(), operator_scaled_at_);
}

void Pool::retire_idle() {
  if (!dynamic() || removed_) return;
  const SizingCounts c = sizing_counts();
  Slot* s = longest_idle();
  if (s != nullptr && may_retire(c) && config_->idle_timeout.count() > 0 &&
      Clock::now() - idle_from(*s) >= config_->idle_timeout)
    shrink(1, ScaleReason::IdleTimeout, c);
  rescale();
}

void Pool::arm_idle_timer(const SizingCounts& c) {
  Slot* s = config_->idle_timeout.count() > 0 && may_retire(c) ? longest_idle() : nullptr;
  if (s == nullptr) {
    idle_timer_.stop();
    return;
  }
  idle_timer_.start(until(idle_from(*s) + config_->idle_timeout), [this] { retire_idle(); });
}

// Shared dispatch: the master sees no connection, so while a worker is busy, one is
// starting or connections wait it samples the scoreboard and the backlog; otherwise it
// watches the listeners, and the first connection to arrive wakes it (and, with no worker
// at all, is what starts one).
void Pool::watch_demand(const SizingCounts& c) {
  if (config_->dispatch != config::Dispatch::Shared || listeners_.empty()) return;
  const bool active = c.busy > 0 || c.waiting > 0 || c.starting > 0;
  if (active) {
    if (demand_watch_) demand_watch_->stop();
    if (!demand_sample_.active()) demand_sample_.start(kDemandSample, [this] { rescale(); });
    return;
  }
  demand_sample_.stop();
  if (!demand_watch_) {
    std::vector<int> fds;
    for (const auto& l : listeners_)
      if (l->fd) fds.push_back(l->fd.get());
    demand_watch_ = ListenerWatch::create(ctx_.loop, fds);
    if (!demand_watch_) {
      // Out of descriptors: look every kDemandSample instead, until a watch can be made.
      log::debug("pool.demand_watch", "pool {}: cannot watch its listeners ({}); sampling them instead",
                 config_->name, std::strerror(errno));
      demand_sample_.start(kDemandSample, [this] { rescale(); });
      return;
    }
  }
  demand_watch_->start([this] {
    demand_watch_->stop();
    listener_readable_ = true;
    rescale();
    listener_readable_ = false;
    // One wake-up: from here on the sample timer looks, never the watch again at once
    // (level-triggered, it would fire until a worker accepts).
    if (demand_watch_) demand_watch_->stop();
    if (state_ == shm::PoolState::Running || state_ == shm::PoolState::Starting)
      demand_sample_.start(kDemandSample, [this] { rescale(); });
  });
}

void Pool::stop_scaling() {
  idle_timer_.stop();
  spawn_retry_.stop();
  demand_sample_.stop();
  demand_watch_.reset();
}

void Pool::note_scale(int from, ScaleReason reason, const SizingCounts& c) {
  if (from == target_) return;
  const bool up = target_ > from;
  last_scale_ = fmt::format("{} from {} to {}: {}", up ? "up" : "down", from, target_, to_string(reason));
  ctx_.scoreboard->record_scale(index_, reason, static_cast<std::uint32_t>(from),
                                static_cast<std::uint32_t>(target_), shm::monotonic_ns());
  report(ctx_, spdlog::level::info, up ? "scale.up" : "scale.down", {config_->name, {}, 0},
         fmt::format("pool {} {} from {} to {} workers: {} (idle {}, busy {}, starting {}, waiting {}; min {}, max {})",
                     config_->name, up ? "grows" : "shrinks", from, target_, to_string(reason), c.idle, c.busy,
                     c.starting, c.waiting, min_workers(), max_workers()),
         {{"from", from}, {"to", target_}, {"reason", to_string(reason)}, {"idle", c.idle}, {"busy", c.busy},
          {"starting", c.starting}, {"waiting", c.waiting}, {"min", min_workers()}, {"max", max_workers()},
          {"spawn_rate", spawn_rate_.rate()}});
}

std::string Pool::scale_dynamic(int n) {
  if (n < config_->min_workers || n > config_->max_workers)
    return fmt::format("pool {} is dynamic: its size must lie within min_workers..max_workers ({}..{}), not {}",
                       config_->name, config_->min_workers, config_->max_workers, n);
  if (n > max_size())
    return fmt::format("pool {} cannot grow past {} workers (scoreboard slots)", config_->name, max_size());
  if (state_ != shm::PoolState::Running && state_ != shm::PoolState::Starting)
    return fmt::format("pool {} is {}; start it first", config_->name, shm::to_string(state_));
  const SizingCounts c = sizing_counts();
  // The operator asked for this size now: idle_timeout counts from here for every worker.
  operator_scaled_at_ = Clock::now();
  if (n > target_) grow(n - target_, ScaleReason::Operator, c);
  else if (n < target_) shrink(target_ - n, ScaleReason::Operator, c);
  rescale();
  return {};
}

void Pool::apply_bounds() {
  if (state_ != shm::PoolState::Running && state_ != shm::PoolState::Starting) {
    target_ = std::clamp(target_, config_->min_workers, config_->max_workers);
    return;
  }
  const SizingCounts c = sizing_counts();
  if (target_ > config_->max_workers) shrink(target_ - config_->max_workers, ScaleReason::Reload, c);
  else if (target_ < config_->min_workers) grow(config_->min_workers - target_, ScaleReason::Reload, c);
  rescale();
}

}  // namespace forkpool::supervisor
