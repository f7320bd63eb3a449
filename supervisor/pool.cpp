#include "supervisor/pool.hpp"

#include <sys/wait.h>

#include "supervisor/log.hpp"

namespace forkpool::supervisor {

struct Pool::Slot {
  Slot(uv_loop_t* loop, unsigned i, std::uint32_t sb, const config::PoolConfig& c)
      : index(i), scoreboard_slot(sb), restart_timer(loop),
        backoff(c.restart_delay, c.restart_delay_max) {}
  unsigned index;
  std::uint32_t scoreboard_slot;
  std::unique_ptr<WorkerProcess> process;
  Timer restart_timer;
  Backoff backoff;
};

Pool::Pool(MasterContext& ctx, config::PoolConfig config, std::uint32_t index, std::uint32_t first_slot,
           std::uint32_t capacity, std::vector<Listener> listeners)
    : ctx_(ctx),
      config_(std::move(config)),
      index_(index),
      listeners_(std::move(listeners)),
      target_(config_.workers),
      flap_(config_.flap_restarts, config_.flap_window) {
  for (std::uint32_t i = 0; i < capacity; ++i) {
    slots_.push_back(std::make_unique<Slot>(ctx_.loop, i, first_slot + i, config_));
    ctx_.scoreboard->assign_slot(first_slot + i, index_, i);
  }
  ctx_.scoreboard->set_pool_size(index_, static_cast<std::uint32_t>(target_));
  ctx_.scoreboard->set_pool_state(index_, state_);
}

Pool::~Pool() = default;

int Pool::live() const {
  int n = 0;
  for (const auto& s : slots_) n += s->process ? 1 : 0;
  return n;
}

int Pool::ready_count() const {
  int n = 0;
  for (const auto& s : slots_) n += (s->process && s->process->ready() && !s->process->stop_requested()) ? 1 : 0;
  return n;
}

bool Pool::settled() const {
  if (state_ == shm::PoolState::Failed || state_ == shm::PoolState::Stopped) return true;
  for (int i = 0; i < target_; ++i)
    if (!slots_[static_cast<std::size_t>(i)]->process || !slots_[static_cast<std::size_t>(i)]->process->ready())
      return false;
  return true;
}

void Pool::set_state(shm::PoolState state) {
  if (state == state_) return;
  log::info("pool.state", "pool {} is {}", config_.name, shm::to_string(state));
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
  for (int i = 0; i < target_; ++i) {
    Slot& slot = *slots_[static_cast<std::size_t>(i)];
    slot.backoff.reset();
    if (!slot.process) spawn(slot);
  }
  update_running();
}

void Pool::spawn(Slot& slot) {
  if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) return;
  if (static_cast<int>(slot.index) >= target_ || slot.process) return;
  WorkerEvents events;
  events.ready = [this, &slot] {
    log::info("worker.ready", "worker {}[{}] pid {} is ready", config_.name, slot.index, slot.process->pid());
    update_running();
  };
  events.ready_timeout = [this, &slot] { kill_worker(slot, "did not become ready within ready_timeout"); };
  events.watchdog_missed = [this, &slot] { kill_worker(slot, "sent no WATCHDOG=1 within watchdog"); };
  try {
    slot.process = std::make_unique<WorkerProcess>(
        ctx_, config_, WorkerProcess::Identity{slot.index, generation_, slot.scoreboard_slot}, listeners_,
        std::move(events));
  } catch (const SpawnFailure& e) {
    log::error("worker.spawn_failed", "worker {}[{}] could not be started: {}", config_.name, slot.index, e.what());
    ctx_.scoreboard->mark_exited(slot.scoreboard_slot, W_EXITCODE(127, 0));
    if (e.transient) {
      // The system is short of processes or memory: retry with backoff, but this is
      // not the program's fault, so it does not count towards flapping.
      schedule_respawn(slot, slot.backoff.next(ctx_.rng));
    } else {
      ctx_.scoreboard->count(index_, shm::PoolCounter::Crashed);
      after_unplanned_exit(slot, ExitReason::Crashed, std::chrono::milliseconds(0));
    }
    return;
  }
  const pid_t pid = slot.process->pid();
  ctx_.owners[pid] = this;
  ctx_.scoreboard->count(index_, shm::PoolCounter::Spawned);
  log::info("worker.spawn", "worker {}[{}] pid {} started", config_.name, slot.index, pid);
  if (config_.ready == config::Readiness::Exec) slot.process->mark_ready();
}

void Pool::schedule_respawn(Slot& slot, std::chrono::milliseconds delay) {
  log::info("worker.respawn_scheduled", "worker {}[{}] starts again in {}", config_.name, slot.index,
            format_uptime(delay));
  slot.restart_timer.start(delay, [this, &slot] { spawn(slot); update_running(); });
}

void Pool::kill_worker(Slot& slot, std::string_view why) {
  if (!slot.process) return;
  log::warn("worker.kill", "worker {}[{}] pid {} {}; killing it", config_.name, slot.index, slot.process->pid(), why);
  ctx_.scoreboard->count(index_, shm::PoolCounter::Killed);
  slot.process->stop(immediate_kill(), false);
}

Pool::Slot* Pool::find(pid_t pid) {
  for (auto& s : slots_)
    if (s->process && s->process->pid() == pid) return s.get();
  return nullptr;
}

void Pool::handle_exit(pid_t pid, int wait_status) {
  Slot* slot = find(pid);
  if (slot == nullptr) return;
  ctx_.owners.erase(pid);
  WorkerProcess& p = *slot->process;
  const auto uptime = p.uptime();
  const ExitReason reason = classify_exit({wait_status, p.stop_requested(), p.ready(), uptime,
                                           config_.ready == config::Readiness::Exec});
  const std::string line = describe_exit(config_.name, slot->index, pid, wait_status, uptime);
  if (reason == ExitReason::Requested) log::info("worker.exit", "{}", line);
  else if (reason == ExitReason::Fatal) log::error("worker.exit", "{}: EX_CONFIG before it was ready", line);
  else log::warn("worker.exit", "{}", line);
  ctx_.scoreboard->mark_exited(slot->scoreboard_slot, wait_status);
  if (reason == ExitReason::Crashed || reason == ExitReason::Fatal)
    ctx_.scoreboard->count(index_, shm::PoolCounter::Crashed);
  slot->process.reset();

  if (state_ == shm::PoolState::Stopping) {
    if (live() == 0) set_state(shm::PoolState::Stopped);
    return;
  }
  if (static_cast<int>(slot->index) >= target_) {
    ctx_.scoreboard->mark_empty(slot->scoreboard_slot);
    if (ctx_.changed) ctx_.changed();
    return;
  }
  if (state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running) return;
  if (reason == ExitReason::Requested) {
    spawn(*slot);
    update_running();
    return;
  }
  if (reason == ExitReason::Fatal) {
    fail("worker " + std::to_string(slot->index) + " exited with status 78 (EX_CONFIG) before it was ready");
    return;
  }
  after_unplanned_exit(*slot, reason, uptime);
}

void Pool::after_unplanned_exit(Slot& slot, ExitReason reason, std::chrono::milliseconds uptime) {
  (void)reason;
  if (uptime >= kHealthyRun) slot.backoff.reset();
  if (flap_.record(Clock::now())) {
    fail(std::to_string(flap_.recent()) + " unplanned exits within flap_window " +
         format_uptime(config_.flap_window) + " (flap_restarts = " + std::to_string(config_.flap_restarts) + ")");
    return;
  }
  schedule_respawn(slot, slot.backoff.next(ctx_.rng));
  if (ctx_.changed) ctx_.changed();
}

void Pool::fail(const std::string& why) {
  for (auto& s : slots_) s->restart_timer.stop();
  log::error("pool.failed", "pool {} failed: {}; no more restarts until it is started again", config_.name, why);
  set_state(shm::PoolState::Failed);
}

void Pool::stop(bool fast) {
  if (state_ == shm::PoolState::Stopped) return;
  set_state(shm::PoolState::Stopping);
  for (auto& s : slots_) {
    s->restart_timer.stop();
    if (s->process) s->process->stop(fast ? immediate_kill() : graceful_stop(config_), true);
  }
  if (live() == 0) set_state(shm::PoolState::Stopped);
}

bool Pool::resize(int target) {
  if (target < 0 || target > static_cast<int>(slots_.size())) return false;
  const int old = target_;
  target_ = target;
  ctx_.scoreboard->set_pool_size(index_, static_cast<std::uint32_t>(target_));
  log::info("pool.scale", "pool {} scales from {} to {} workers", config_.name, old, target_);
  for (int i = target_; i < old; ++i) {
    Slot& s = *slots_[static_cast<std::size_t>(i)];
    s.restart_timer.stop();
    if (s.process) s.process->stop(graceful_stop(config_), true);
    else ctx_.scoreboard->mark_empty(s.scoreboard_slot);
  }
  for (int i = old; i < target_; ++i) {
    Slot& s = *slots_[static_cast<std::size_t>(i)];
    s.backoff.reset();
    spawn(s);
  }
  update_running();
  return true;
}

void Pool::close_listeners() {
  for (auto& l : listeners_) {
    remove_socket_file(l);
    l.fd.reset();
  }
}

}  // namespace forkpool::supervisor
