// SPDX-License-Identifier: Apache-2.0
#include "supervisor/pool/pool.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <stdexcept>

#include "base/clock.hpp"
#include "base/resources.hpp"
#include "shm/proc_stats.hpp"
#include "supervisor/process/descendants.hpp"
#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/pool/pool_slot.hpp"

namespace forkpool::supervisor {

Pool::Pool(MasterContext& ctx, PoolConfigRef config, unsigned generation, std::vector<ListenerRef> listeners)
    : ctx_(ctx),
      config_(std::move(config)),
      listeners_(std::move(listeners)),
      target_(config_->workers),
      flap_(config_->flap_restarts, config_->flap_window),
      generation_(generation),
      worker_generation_(generation),
      drained_(ctx.loop),
      drain_deadline_(ctx.loop),
      rolling_next_(ctx.loop),
      start_next_(ctx.loop),
      idle_timer_(ctx.loop),
      spawn_retry_(ctx.loop),
      demand_sample_(ctx.loop) {
  auto block = ctx_.scoreboard->add_pool(config_->name, generation_);
  if (!block)
    throw std::runtime_error("the scoreboard has no room for pool " + config_->name + " (" +
                             std::to_string(ctx_.scoreboard->pool_count()) +
                             " pools at most until forkpool is restarted)");
  index_ = *block;
  want_first(target_);
  update_dispatcher();
  arm_memory_sampler();
  arm_shared_recycling();
  publish_size();
  ctx_.scoreboard->set_pool_state(index_, state_);
}

void Pool::publish_size() {
  ctx_.scoreboard->set_pool_size(index_, static_cast<std::uint32_t>(target_));
  ctx_.scoreboard->set_pool_bounds(index_, static_cast<std::uint32_t>(min_workers()),
                                   static_cast<std::uint32_t>(max_workers()));
}

Pool::~Pool() {
  demand_watch_.reset();
  dispatcher_.reset();
  slots_.clear();
  ctx_.scoreboard->remove_pool(index_);
}

Pool::Slot& Pool::slot_at(unsigned index) {
  while (slots_.size() <= index)
    slots_.push_back(std::make_unique<Slot>(ctx_.loop, static_cast<unsigned>(slots_.size()), *config_));
  return *slots_[index];
}

int pool_ceiling(const config::PoolConfig& pool) {
  const int size = std::max(pool.workers, pool.max_workers);
  return std::min(kMaxPoolWorkers, size + std::max(4, size / 4));
}

int Pool::max_size() const {
  return std::min(pool_ceiling(*config_),
                  target_ + static_cast<int>(ctx_.scoreboard->free_slots() / 2));
}

std::vector<unsigned> Pool::worker_numbers() const {
  std::vector<unsigned> out;
  for (const auto& s : slots_)
    if (s->wanted) out.push_back(s->index);
  return out;
}

int Pool::live() const {
  int n = 0;
  for (const auto& s : slots_)
    n += (s->process ? 1 : 0) + (s->replacement ? 1 : 0) + static_cast<int>(s->retiring.size());
  return n;
}

int Pool::ready_count() const {
  int n = 0;
  for (const auto& s : slots_) n += (s->process && s->process->phase() == WorkerPhase::Ready) ? 1 : 0;
  return n;
}

bool Pool::settled() const {
  if (state_ == shm::PoolState::Failed || state_ == shm::PoolState::Stopped) return true;
  int wanted = 0;
  for (const auto& s : slots_) {
    if (!s->wanted) continue;
    ++wanted;
    if (!s->process || !s->process->ever_ready()) return false;
  }
  return wanted >= target_;
}

void Pool::want_first(int target) {
  for (int i = 0; i < target; ++i) slot_at(static_cast<unsigned>(i));
  for (auto& s : slots_) s->wanted = static_cast<int>(s->index) < target;
}

void Pool::dispatch_candidates(std::vector<WorkerProcess*>& out) const {
  out.clear();
  // After a reload that moved the pool to shared dispatch, its older workers still read
  // their channels until they are replaced (the last one until the queue is empty); the
  // newer ones never do.
  for (const auto& s : slots_)
    if (s->process && s->process->config().dispatch == config::Dispatch::Master) out.push_back(s->process.get());
  out.insert(out.end(), queue_drainers_.begin(), queue_drainers_.end());
}

bool Pool::master_dispatched(const WorkerProcess& p) const {
  return dispatcher_ && p.config().dispatch == config::Dispatch::Master;
}

bool Pool::accepts_itself(const WorkerProcess& p) { return p.config().dispatch == config::Dispatch::Shared; }

void Pool::update_dispatcher(bool adopting) {
  const bool master = config_->dispatch == config::Dispatch::Master && !listeners_.empty() && !removed_;
  if (master && !dispatcher_) {
    // Adopting (a binary upgrade), the workers are not known yet: resume_adopted decides.
    make_dispatcher(!adopting && master_accepts(false));
  } else if (master) {
    dispatcher_->set_config(config_);
  }
  if (dispatcher_) {
    update_master_accepting(false, adopting);
    return;
  }
  // Only what master dispatch set is undone: the workers own the listener's flags from
  // here on, and a reload that keeps the pool shared must not change them under workers
  // that accept (one that chose O_NONBLOCK would block in accept(2) for good).
  if (config_->dispatch == config::Dispatch::Shared && !adopting)
    for (const auto& l : listeners_) l->undo_master_settings();  // as before master dispatch set them
}

void Pool::make_dispatcher(bool accepting) {
  dispatcher_ = std::make_unique<Dispatcher>(ctx_, config_, index_,
                                             accepting ? listeners_ : std::vector<ListenerRef>{},
                                             [this](std::vector<WorkerProcess*>& out) { dispatch_candidates(out); });
  dispatcher_->set_accept_hook([this] { rescale(); });
  dispatcher_->set_paused(state_ != shm::PoolState::Starting && state_ != shm::PoolState::Running &&
                          state_ != shm::PoolState::Stopped);
}

bool Pool::master_worker_ready() const {
  for (const auto& s : slots_)
    for (const WorkerProcess* p : {s->process.get(), s->replacement.get()})
      if (p != nullptr && p->config().dispatch == config::Dispatch::Master && p->phase() == WorkerPhase::Ready)
        return true;
  return false;
}

bool Pool::self_acceptor_alive() const {
  for (const auto& s : slots_) {
    for (const WorkerProcess* p : {s->process.get(), s->replacement.get()})
      if (p != nullptr && accepts_itself(*p) && p->phase() != WorkerPhase::Reaped) return true;
    for (const auto& r : s->retiring)
      if (accepts_itself(*r) && r->phase() != WorkerPhase::Reaped) return true;
  }
  return false;
}

bool Pool::listeners_nonblocking() const {
  for (const auto& l : listeners_)
    if (!l->is_nonblocking()) return false;
  return true;
}

bool Pool::master_accepts(bool self_acceptor_starting) const {
  // The master needs its listeners non-blocking, and O_NONBLOCK belongs to the open file
  // every process that accepts shares: beside such a process (stopping ones included) it
  // accepts only if that process made them non-blocking itself, never changing the flag
  // under it (one that accepts in blocking mode would fail, one that set the flag would
  // block once the master gave it back). Before one starts, the master lets go.
  if (self_acceptor_starting) return false;
  const bool others = self_acceptor_alive();
  if (others && !listeners_nonblocking()) return false;
  // Master dispatch: whenever nothing else accepts (a pool starting: connections queue),
  // else once a worker that reads its channel is ready. After a reload to shared dispatch:
  // while workers that read their channels are ready (not the last one draining: what the
  // master holds must come to an end), which also keeps the old design serving when
  // every worker of the new program failed.
  if (config_->dispatch == config::Dispatch::Master) return !others || master_worker_ready();
  return master_worker_ready();
}

void Pool::update_master_accepting(bool self_acceptor_starting, bool adopting) {
  if (!dispatcher_) return;
  const bool accept = !removed_ && !listeners_.empty() && master_accepts(self_acceptor_starting);
  // Accepting on none keeps the queue: it still goes to the workers that read their
  // channels. The watches go with it (libuv's poll makes a watched socket non-blocking).
  dispatcher_->set_listeners(accept ? listeners_ : std::vector<ListenerRef>{});
  // Out of master dispatch: each connection handed out is the last (FP_FD_LAST).
  dispatcher_->set_last_connections(config_->dispatch == config::Dispatch::Shared);
  if (config_->dispatch != config::Dispatch::Shared) return;
  // Shared dispatch: the listeners as they were before master dispatch set them, before a
  // worker that accepts starts with them (see update_dispatcher); O_NONBLOCK never under
  // one that runs (see master_accepts).
  if (!accept && !adopting) {
    const bool others = self_acceptor_alive();
    for (const auto& l : listeners_) others ? l->undo_master_options() : l->undo_master_settings();
  }
  // A parked connection waits for a worker that reads its channel: none is left.
  if (dispatcher_->parked() > 0 && queue_drainers_.empty() && !master_worker_ready())
    dispatcher_->close_parked_connections("as the pool's workers now accept by themselves");
}

void Pool::start_draining(WorkerProcess* old) {
  queue_drainers_.push_back(old);
  ++ctx_.workers_epoch;  // the dispatcher's list of workers changed
  // Looked at after whatever changes what the master holds, on the next loop turn.
  dispatcher_->set_held_hook([this] {
    if (!drained_.active()) drained_.start(std::chrono::milliseconds(0), [this] { finish_draining(false); });
  });
  // A keep-alive client that never sends again, with keepalive_timeout "0", would keep
  // the drainer for good: graceful_timeout bounds the drain, as it bounds a worker's
  // ("0": no grace, as for a stop).
  drain_deadline_.start(config_->graceful_timeout, [this] { finish_draining(true); });
}

void Pool::finish_draining(bool deadline) {
  if (queue_drainers_.empty()) return;
  // Done when nothing the master holds can still need a worker that reads its channel:
  // nothing queued, nothing parked (each comes back once with FP_FD_LAST and is closed
  // after its answer), and nothing in flight (a worker may still park it).
  if (!deadline && dispatcher_ && dispatcher_->holds_connections()) return;
  std::vector<WorkerProcess*> drainers;
  drainers.swap(queue_drainers_);
  end_draining();
  // At the deadline, what still waits for a worker that reads its channel has none left.
  if (deadline && dispatcher_) dispatcher_->close_queued("as no worker that reads its channel is left");
  for (WorkerProcess* p : drainers) {
    log::at_with(spdlog::level::info, "worker.drained",
                 [&] { return nlohmann::json{{"pool", config_->name}, {"pid", p->pid()}}; },
                 "pool {}: the master holds no connection for a worker that reads its channel{}; worker pid {} "
                 "(master dispatch) stops",
                 config_->name, deadline ? " after graceful_timeout" : "", p->pid());
    p->stop(graceful_stop(p->config()), true);
  }
  update_master_accepting();  // closes what is still parked, if anything
}

void Pool::end_draining() {
  drain_deadline_.stop();
  drained_.stop();
  if (dispatcher_) dispatcher_->set_held_hook(nullptr);
}

void Pool::arm_memory_sampler() {
  if (config_->max_memory == 0) {
    memory_sampler_.reset();
    return;
  }
  if (memory_sampler_) return;
  memory_sampler_ = std::make_unique<Timer>(ctx_.loop);
  memory_sampler_->start_repeating(std::chrono::seconds(1), [this] { sample_memory(); });
}

void Pool::set_state(shm::PoolState state) {
  if (state == state_) return;
  report(ctx_, spdlog::level::info, "pool.state", {config_->name, {}, 0, generation_},
         fmt::format("pool {} is {}", config_->name, shm::to_string(state)), {{"state", shm::to_string(state)}});
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
  failed_reason_.clear();
  last_exit_line_.clear();
  flap_.clear();
  spawn_failures_ = 0;
  if (dispatcher_) dispatcher_->set_paused(false);
  if (dynamic()) {
    target_ = config_->min_workers;
    spawn_rate_ = SpawnRate();
    publish_size();
  }
  want_first(target_);
  for (int i = 0; i < target_; ++i) {
    Slot& slot = slot_at(static_cast<unsigned>(i));
    slot.backoff.reset();
    slot.starts.reset();
  }
  // A dynamic pool starts its min_workers in one batch: its sizing looks at every wanted
  // slot and must not see a start half done.
  start_batch(dynamic() ? target_ : kFirstStartBatch);
  // Workers that a failed deploy left running (a reload whose new program failed) run
  // the settings before it: starting the pool tries the deploy again, not only clears it.
  if (state_ != shm::PoolState::Failed) continue_rolling();
}

void Pool::start_batch(int count) {
  std::vector<Slot*> batch;
  bool more = false;
  for (auto& s : slots_) {
    if (!s->wanted || s->process || s->restart_timer.active()) continue;
    if (static_cast<int>(batch.size()) == count) {
      more = true;
      break;
    }
    batch.push_back(s.get());
  }
  rescaling_ = true;  // the ready events of these first workers size nothing yet
  spawn_batch(batch);
  rescaling_ = false;
  if (state_ == shm::PoolState::Failed) return;  // its program cannot be started
  if (more && (state_ == shm::PoolState::Starting || state_ == shm::PoolState::Running)) {
    // 1 ms, not 0: libuv runs a 0 ms timer armed inside a timer callback in the same
    // pass, without polling, so the ready workers would not be heard in between.
    start_next_.start(std::chrono::milliseconds(1), [this] { start_batch(kStartBatch); });
    update_running();
    return;
  }
  update_running();
  rescale();
}

void Pool::promote(Slot& slot) {
  std::unique_ptr<WorkerProcess> old = std::move(slot.process);
  slot.process = std::move(slot.replacement);
  ++ctx_.workers_epoch;
  // Its serving worker had died and is not started again yet: the replacement is that start.
  slot.respawn_config.reset();
  slot.restart_timer.stop();
  if (!old) return;
  report(ctx_, spdlog::level::info, "worker.recycle",
         {config_->name, slot.index, slot.process->pid(), slot.process->identity().generation},
         fmt::format("worker {}[{}] pid {} replaces pid {} {}", config_->name, slot.index, slot.process->pid(),
                     old->pid(), slot.replace_reason),
         {{"replaced_pid", old->pid()}});
  ctx_.scoreboard->count(index_, shm::PoolCounter::Recycled);
  // A reload to shared dispatch replaced the last worker that reads its channel: what the
  // master still holds (queued, parked, in flight with workers that may park it) is
  // served by it first (nobody else would take it).
  if (config_->dispatch == config::Dispatch::Shared && master_dispatched(*old) && queue_drainers_.empty() &&
      !master_worker_ready() && dispatcher_->holds_connections()) {
    start_draining(old.get());
  } else {
    old->stop(graceful_stop(old->config()), true);
  }
  slot.retiring.push_back(std::move(old));
  update_master_accepting();
  // With ready = "exec" a replacement is ready inside spawn_replacement, so continuing
  // here would replace the whole pool in one recursive sweep.
  rolling_next_.start(std::chrono::milliseconds(0), [this] { continue_rolling(); });
}

void Pool::replace(std::optional<unsigned> worker, std::string_view why) {
  if (worker) {
    Slot& s = slot_at(*worker);
    s.replace_reason = std::string(why);
    s.replace_outdated = false;
    spawn_replacement(s);
    return;
  }
  rolling_.clear();
  for (const auto& s : slots_)
    if (s->wanted) rolling_.push_back(s->index);
  rolling_reason_ = std::string(why);
  continue_rolling();
}

bool Pool::outdated(const WorkerProcess& p) const { return p.identity().generation < worker_generation_; }

// A rolling restart replaces a quarter of the pool at a time (at least one worker):
// each old worker stops only once its replacement is ready, so capacity never drops,
// and memory grows by a quarter at most, not double. Workers named by `restart` go
// first, then every worker started under settings a reload has since replaced.
void Pool::continue_rolling() {
  // A replacement that could not be started and waits for its retry still counts.
  int active = 0;
  for (const auto& s : slots_) active += s->replacement || (s->process && s->restart_timer.active()) ? 1 : 0;
  const int limit = std::max(1, target_ / 4);
  while (active < limit && !rolling_.empty()) {
    const unsigned i = rolling_.front();
    rolling_.pop_front();
    if (i >= slots_.size() || !slots_[i]->wanted) continue;
    Slot& s = *slots_[i];
    if (!s.process || s.replacement || s.restart_timer.active()) continue;  // a timer: its retry replaces it
    s.replace_reason = rolling_reason_;
    s.replace_outdated = false;
    if (start_replacement(s)) ++active;
  }
  for (std::size_t i = 0; active < limit && i < slots_.size(); ++i) {
    Slot& s = *slots_[i];
    if (!s.wanted || !s.process || s.replacement || !outdated(*s.process)) continue;
    if (s.process->phase() == WorkerPhase::Stopping) continue;  // killed by a timeout: respawns as new
    if (s.restart_timer.active()) continue;  // its replacement could not start: retried after backoff
    s.replace_reason = "(reload to generation " + std::to_string(worker_generation_) + ")";
    s.replace_outdated = true;
    if (start_replacement(s)) ++active;
  }
}

bool Pool::start_replacement(Slot& slot) {
  const WorkerProcess* before = slot.process.get();
  spawn_replacement(slot);
  // With ready = "exec" the replacement is ready, and has taken over, at once: it still
  // counts towards this batch, or one turn would replace the whole pool.
  return slot.replacement != nullptr || slot.process.get() != before;
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
  // Shared and plain pools: the worker's whole process tree (see Pool::status).
  std::optional<ProcessTable> table;
  const std::int64_t now_ns = base::monotonic_ns();
  for (auto& s : slots_) {
    if (!s->process) continue;
    const pid_t pid = s->process->pid();
    // Read now, whatever status read a moment ago: this is what max_memory acts on.
    std::optional<shm::ProcStats> stats;
    if (master_dispatched(*s->process)) {
      stats = s->process->usage(now_ns, std::chrono::nanoseconds(0));
    } else {
      if (!table) table = ProcessTable::read();
      stats = tree_stats(pid, *table);
    }
    if (!stats) continue;
    ctx_.scoreboard->set_usage(s->process->identity().scoreboard_slot, stats->rss_bytes, stats->cpu_time_us);
    if (config_->max_memory > 0 && stats->rss_bytes > config_->max_memory && !s->replacement &&
        s->process->phase() == WorkerPhase::Ready) {
      s->replace_reason = "after its RSS reached " + std::to_string(stats->rss_bytes >> 20) + " MiB (max_memory)";
      s->replace_outdated = false;
      log::at_with(
          spdlog::level::info, "worker.memory",
          [&] {
            auto f = s->process->log_fields();
            f["rss_bytes"] = stats->rss_bytes;
            f["max_memory"] = config_->max_memory;
            return f;
          },
          "worker {}[{}] pid {} uses {} bytes, over max_memory; replacing it", config_->name,
                s->index, s->process->pid(), stats->rss_bytes);
      spawn_replacement(*s);
    }
  }
}

}  // namespace forkpool::supervisor
