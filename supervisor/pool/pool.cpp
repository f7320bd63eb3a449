#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>

#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "shm/proc_stats.hpp"

namespace forkpool::supervisor {


Pool::Pool(MasterContext& ctx, config::PoolConfig config, std::uint32_t index, std::uint32_t first_slot,
           std::uint32_t capacity, std::vector<Listener> listeners)
    : ctx_(ctx),
      config_(std::move(config)),
      index_(index),
      first_slot_(first_slot),
      listeners_(std::move(listeners)),
      scoreboard_slot_used_(capacity, false),
      target_(config_.workers),
      flap_(config_.flap_restarts, config_.flap_window),
      rolling_next_(ctx.loop) {
  // Worker numbers run to half the capacity; the rest of the scoreboard slots hold
  // replacements while they start next to the worker they replace.
  const std::uint32_t workers = std::max<std::uint32_t>(static_cast<std::uint32_t>(target_), capacity / 2);
  for (std::uint32_t i = 0; i < workers; ++i) slots_.push_back(std::make_unique<Slot>(ctx_.loop, i, config_));
  for (std::uint32_t i = 0; i < capacity; ++i) ctx_.scoreboard->assign_slot(first_slot_ + i, index_, i);
  if (config_.dispatch == config::Dispatch::Master && !listeners_.empty())
    dispatcher_ = std::make_unique<Dispatcher>(ctx_, config_, index_, listeners_,
                                               [this](std::vector<WorkerProcess*>& out) { dispatch_candidates(out); });
  if (config_.max_memory > 0) {
    memory_sampler_ = std::make_unique<Timer>(ctx_.loop);
    memory_sampler_->start_repeating(std::chrono::seconds(1), [this] { sample_memory(); });
  }
  ctx_.scoreboard->set_pool_size(index_, static_cast<std::uint32_t>(target_));
  ctx_.scoreboard->set_pool_state(index_, state_);
}

Pool::~Pool() = default;

int Pool::live() const {
  int n = 0;
  for (const auto& s : slots_)
    n += (s->process ? 1 : 0) + (s->replacement ? 1 : 0) + static_cast<int>(s->retiring.size());
  return n;
}

int Pool::ready_count() const {
  int n = 0;
  for (const auto& s : slots_) n += (s->process && s->process->ready() && !s->process->stop_requested()) ? 1 : 0;
  return n;
}

bool Pool::settled() const {
  if (state_ == shm::PoolState::Failed || state_ == shm::PoolState::Stopped) return true;
  for (int i = 0; i < target_; ++i) {
    const auto& p = slots_[static_cast<std::size_t>(i)]->process;
    if (!p || !p->ready()) return false;
  }
  return true;
}

void Pool::dispatch_candidates(std::vector<WorkerProcess*>& out) const {
  out.clear();
  for (const auto& s : slots_)
    if (s->process) out.push_back(s->process.get());
}

void Pool::set_state(shm::PoolState state) {
  if (state == state_) return;
  report(ctx_, spdlog::level::info, "pool.state", {config_.name, {}, 0},
         fmt::format("pool {} is {}", config_.name, shm::to_string(state)), {{"state", shm::to_string(state)}});
  state_ = state;
  ctx_.scoreboard->set_pool_state(index_, state);
  if (ctx_.changed) ctx_.changed();
}

void Pool::update_running() {
  if (state_ == shm::PoolState::Starting && settled()) set_state(shm::PoolState::Running);
  else if (ctx_.changed) ctx_.changed();
}

void Pool::start() {
  set_state(shm::PoolState::Starting);
  flap_.clear();
  if (dispatcher_) dispatcher_->set_paused(false);
  for (int i = 0; i < target_; ++i) {
    Slot& slot = *slots_[static_cast<std::size_t>(i)];
    slot.backoff.reset();
    if (!slot.process) spawn(slot);
  }
  update_running();
}

std::uint32_t Pool::acquire_scoreboard_slot(unsigned preferred) {
  std::size_t pick = scoreboard_slot_used_.size();
  if (preferred < scoreboard_slot_used_.size() && !scoreboard_slot_used_[preferred]) pick = preferred;
  for (std::size_t i = scoreboard_slot_used_.size(); pick == scoreboard_slot_used_.size() && i-- > 0;)
    if (!scoreboard_slot_used_[i]) pick = i;
  if (pick == scoreboard_slot_used_.size()) throw SpawnFailure("no free scoreboard slot in this pool", true);
  scoreboard_slot_used_[pick] = true;
  const std::uint32_t sb = first_slot_ + static_cast<std::uint32_t>(pick);
  ctx_.scoreboard->assign_slot(sb, index_, preferred);
  return sb;
}

std::unique_ptr<WorkerProcess> Pool::launch(Slot& slot) {
  auto self = std::make_shared<WorkerProcess*>(nullptr);
  WorkerEvents events;
  events.ready = [this, &slot, self] {
    WorkerProcess* p = *self;
    report(ctx_, spdlog::level::info, "worker.ready", {config_.name, slot.index, p->pid()},
           fmt::format("worker {}[{}] pid {} is ready", config_.name, slot.index, p->pid()));
    if (p == slot.replacement.get()) promote(slot);
    if (dispatcher_) dispatcher_->pump();
    update_running();
  };
  events.ready_timeout = [this, self] { kill_worker(**self, "did not become ready within ready_timeout"); };
  events.watchdog_missed = [this, self] { kill_worker(**self, "sent no WATCHDOG=1 within watchdog"); };
  events.done = [this, &slot, self](std::chrono::microseconds held) {
    WorkerProcess* p = *self;
    if (p->recycle_after() > 0 && p->handed() >= p->recycle_after() && p == slot.process.get() &&
        !slot.replacement) {
      slot.replace_reason = "after " + std::to_string(p->handed()) + " connections (max_requests)";
      spawn_replacement(slot);
    }
    if (dispatcher_) dispatcher_->on_done(held);
  };
  events.writable = [this] {
    if (dispatcher_) dispatcher_->pump();
  };
  events.request_timeout = [this, &slot, self](const std::string& peer) {
    WorkerProcess* p = *self;
    report(ctx_, spdlog::level::warn, "worker.timeout", {config_.name, slot.index, p->pid()},
           fmt::format("worker {}[{}] pid {} held a connection from {} longer than request_timeout {}; sending SIG{}",
                       config_.name, slot.index, p->pid(), peer, format_uptime(config_.request_timeout),
                       sigabbrev_np(config_.timeout_signal)),
           {{"peer", peer}});
    ctx_.scoreboard->count(index_, shm::PoolCounter::Killed);
    p->stop(signal_then_kill(config_.timeout_signal), false);
  };

  const std::uint32_t sb = acquire_scoreboard_slot(slot.index);
  std::unique_ptr<WorkerProcess> p;
  try {
    p = std::make_unique<WorkerProcess>(ctx_, config_, WorkerProcess::Identity{slot.index, generation_, sb},
                                        listeners_, std::move(events));
  } catch (...) {
    scoreboard_slot_used_[sb - first_slot_] = false;
    throw;
  }
  *self = p.get();
  if (config_.max_requests > 0) {
    std::uniform_int_distribution<std::uint64_t> jitter(0, config_.max_requests_jitter);
    p->set_recycle_after(config_.max_requests + jitter(ctx_.rng));
  }
  ctx_.owners[p->pid()] = this;
  ctx_.scoreboard->count(index_, shm::PoolCounter::Spawned);
  report(ctx_, spdlog::level::info, "worker.spawn", {config_.name, slot.index, p->pid()},
         fmt::format("worker {}[{}] pid {} started", config_.name, slot.index, p->pid()),
         {{"generation", generation_}});
  return p;
}

void Pool::spawn(Slot& slot) {
  if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) return;
  if (static_cast<int>(slot.index) >= target_ || slot.process) return;
  try {
    slot.process = launch(slot);
  } catch (const SpawnFailure& e) {
    report(ctx_, spdlog::level::err, "worker.spawn_failed", {config_.name, slot.index, 0},
           fmt::format("worker {}[{}] could not be started: {}", config_.name, slot.index, e.what()));
    if (e.transient) {
      // Short of processes, memory or descriptors: not the program's fault, so retry
      // with backoff but do not count it towards flapping.
      schedule_respawn(slot, slot.backoff.next(ctx_.rng));
    } else {
      ctx_.scoreboard->count(index_, shm::PoolCounter::Crashed);
      after_unplanned_exit(slot, std::chrono::milliseconds(0));
    }
    return;
  }
  if (config_.ready == config::Readiness::Exec) slot.process->mark_ready();
}

void Pool::spawn_replacement(Slot& slot) {
  if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) return;
  if (slot.replacement || !slot.process) return;
  try {
    slot.replacement = launch(slot);
  } catch (const SpawnFailure& e) {
    log::error("worker.spawn_failed", "replacement for worker {}[{}] could not be started: {}; the current "
               "worker keeps serving", config_.name, slot.index, e.what());
    return;
  }
  if (config_.ready == config::Readiness::Exec) slot.replacement->mark_ready();
}

void Pool::promote(Slot& slot) {
  std::unique_ptr<WorkerProcess> old = std::move(slot.process);
  slot.process = std::move(slot.replacement);
  if (!old) return;
  report(ctx_, spdlog::level::info, "worker.recycle", {config_.name, slot.index, slot.process->pid()},
         fmt::format("worker {}[{}] pid {} replaces pid {} {}", config_.name, slot.index, slot.process->pid(),
                     old->pid(), slot.replace_reason),
         {{"replaced_pid", old->pid()}});
  ctx_.scoreboard->count(index_, shm::PoolCounter::Recycled);
  old->stop(graceful_stop(config_), true);
  slot.retiring.push_back(std::move(old));
  // With ready = "exec" a replacement is ready inside spawn_replacement, so continuing
  // here would replace the whole pool in one recursive sweep.
  if (!rolling_.empty()) rolling_next_.start(std::chrono::milliseconds(0), [this] { continue_rolling(); });
}

void Pool::replace(std::optional<unsigned> worker, std::string_view why) {
  if (worker) {
    Slot& s = *slots_[*worker];
    s.replace_reason = std::string(why);
    spawn_replacement(s);
    return;
  }
  rolling_.clear();
  for (int i = 0; i < target_; ++i) rolling_.push_back(static_cast<unsigned>(i));
  rolling_reason_ = std::string(why);
  continue_rolling();
}

// A rolling restart replaces a quarter of the pool at a time (at least one worker):
// each old worker stops only once its replacement is ready, so capacity never drops,
// and memory grows by a quarter at most, not double.
void Pool::continue_rolling() {
  int active = 0;
  for (const auto& s : slots_) active += s->replacement ? 1 : 0;
  const int limit = std::max(1, target_ / 4);
  while (active < limit && !rolling_.empty()) {
    const unsigned i = rolling_.front();
    rolling_.pop_front();
    if (static_cast<int>(i) >= target_) continue;
    Slot& s = *slots_[i];
    if (!s.process || s.replacement) continue;
    s.replace_reason = rolling_reason_;
    spawn_replacement(s);
    if (s.replacement) ++active;
  }
}

void Pool::schedule_respawn(Slot& slot, std::chrono::milliseconds delay) {
  report(ctx_, spdlog::level::info, "worker.respawn_scheduled", {config_.name, slot.index, 0},
         fmt::format("worker {}[{}] starts again in {}", config_.name, slot.index, format_uptime(delay)),
         {{"delay_ms", delay.count()}});
  slot.restart_timer.start(delay, [this, &slot] {
    spawn(slot);
    update_running();
  });
}

void Pool::kill_worker(WorkerProcess& p, std::string_view why) {
  report(ctx_, spdlog::level::warn, "worker.kill", {config_.name, p.identity().worker, p.pid()},
         fmt::format("worker {}[{}] pid {} {}; killing it", config_.name, p.identity().worker, p.pid(), why));
  ctx_.scoreboard->count(index_, shm::PoolCounter::Killed);
  p.stop(immediate_kill(), false);
}

bool Pool::owns(pid_t pid) const {
  auto it = ctx_.owners.find(pid);
  return it != ctx_.owners.end() && it->second == this;
}

bool Pool::signal_worker(unsigned worker, int signo) {
  for (auto& s : slots_) {
    if (s->index != worker || !s->process) continue;
    // Only a signal meant to end the worker makes its exit "asked for"; after, say,
    // USR1 to reopen logs, a later crash must still count as one.
    if (signo == SIGTERM || signo == SIGINT || signo == SIGQUIT || signo == SIGKILL) s->process->note_operator_signal();
    s->process->signal(signo, false);
    return true;
  }
  return false;
}

void Pool::sample_memory() {
  for (auto& s : slots_) {
    if (!s->process) continue;
    auto stats = shm::read_proc_stats(s->process->pid());
    if (!stats) continue;
    ctx_.scoreboard->set_usage(s->process->identity().scoreboard_slot, stats->rss_bytes, stats->cpu_time_us);
    if (stats->rss_bytes > config_.max_memory && !s->replacement && s->process->ready()) {
      s->replace_reason = "after its RSS reached " + std::to_string(stats->rss_bytes >> 20) + " MiB (max_memory)";
      log::info("worker.memory", "worker {}[{}] pid {} uses {} bytes, over max_memory; replacing it", config_.name,
                s->index, s->process->pid(), stats->rss_bytes);
      spawn_replacement(*s);
    }
  }
}

}  // namespace forkpool::supervisor
