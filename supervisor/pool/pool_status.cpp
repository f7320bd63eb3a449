// SPDX-License-Identifier: Apache-2.0
// Pool: what `status` shows of a pool and its workers, from one scoreboard read plus
// what only the master knows (roles, connections it handed out, STATUS= texts).

#include <time.h>

#include "config/names.hpp"
#include "shm/histogram.hpp"
#include "base/clock.hpp"
#include "supervisor/process/exit_status.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/pool/pool_slot.hpp"
#include "shm/proc_stats.hpp"
#include "supervisor/process/descendants.hpp"

namespace forkpool::supervisor {
namespace {

Percentiles percentiles(const shm::HistogramSnapshot& h) {
  const shm::Percentiles p = shm::histogram_percentiles(h);
  auto ms = [](std::uint64_t us) { return static_cast<double>(us) / 1000.0; };
  return {p.count, ms(p.p50_us), ms(p.p90_us), ms(p.p99_us), ms(p.max_us)};
}


}  // namespace

PoolStatus Pool::status() const {
  PoolStatus s;
  s.name = config_->name;
  s.state = std::string(shm::to_string(state_));
  s.dispatch = std::string(config::to_string(config_->dispatch));
  s.balance = std::string(config::to_string(config_->balance));
  s.generation = generation_;
  s.removed = removed_;
  for (const auto& l : listeners_) s.listeners.push_back(l->bound.empty() ? l->address.text : l->bound);
  s.target = target_;
  s.dynamic = config_->dynamic;
  s.min = min_workers();
  s.max = max_workers();
  // A dynamic pool's own decisions: a reload that made it fixed leaves none to show.
  if (config_->dynamic) s.last_scale = last_scale_;
  s.live = live();
  s.ready = ready_count();

  const shm::PoolSnapshot p = ctx_.scoreboard->read_pool(index_);
  s.queue_length = p.queued_now;
  s.queue_peak = p.queue_peak;
  s.queue_limit = static_cast<std::uint64_t>(config_->queue_limit);
  s.accepted = p.accepted;
  s.dispatched = p.dispatched;
  s.completed = p.completed;
  s.in_flight = p.in_flight;
  s.lost = p.lost;
  s.closed = p.closed;
  s.queue_timeouts = p.queue_timeouts;
  s.spawned = p.spawned;
  s.crashed = p.crashed;
  s.killed = p.killed;
  s.recycled = p.recycled;
  s.spawn_failed = p.spawn_failed;
  s.keepalive = std::string(config::to_string(config_->keepalive));
  s.parked = p.parked;
  s.resumed = p.resumed;
  s.keepalive_timeouts = p.keepalive_timeouts;
  s.keepalive_closed = p.keepalive_closed;
  s.parked_closed = p.parked_closed;
  s.parked_now = p.parked_now;
  s.protocol_errors = p.protocol_errors;
  if (dispatcher_) s.accept_paused = dispatcher_->accept_paused_reason();
  if (state_ == shm::PoolState::Failed) s.failed_reason = failed_reason_;
  s.duration = percentiles(p.duration);
  s.queue_wait = percentiles(p.queue_wait);
  s.duration_histogram = p.duration;
  s.queue_wait_histogram = p.queue_wait;

  const std::int64_t now_ns = base::monotonic_ns();
  // A shared or plain pool's worker may be a master of its own (gunicorn): its memory is
  // in its process tree. One pass over /proc serves every worker of the pool.
  std::optional<ProcessTable> table;
  auto usage = [&](const WorkerProcess& proc) {
    if (master_dispatched(proc)) return proc.usage(now_ns);
    if (!table) table = ProcessTable::read();
    return tree_stats(proc.pid(), *table);
  };
  auto add = [&](const Slot& slot, const WorkerProcess& proc, const char* role) {
    const unsigned worker = slot.index;
    const shm::WorkerSnapshot snap = ctx_.scoreboard->read_worker(proc.identity().scoreboard_slot);
    WorkerStatus w;
    w.worker = worker;
    w.slot = proc.identity().scoreboard_slot;
    w.pid = proc.pid();
    w.role = role;
    w.generation = proc.identity().generation;
    w.uptime_s = static_cast<double>(proc.uptime().count()) / 1000.0;
    // Of the worker number, not of the scoreboard slot the process happens to use (a
    // replacement takes another one, and a freed one may go to any pool): it only grows.
    w.restarts = slot.launches > 0 ? slot.launches - 1 : 0;
    w.status_text = proc.status_text();
    if (slot.last_exit_status >= 0) w.last_exit = describe_wait_status(slot.last_exit_status);
    if (master_dispatched(proc)) {
      // The master's own accounting: exact, and not up to the worker.
      w.handled = proc.completed();
      w.in_flight = proc.in_flight();
      // Microseconds, so a connection handed out a moment ago is not shown as 0 ms.
      w.current_ms = static_cast<double>(proc.oldest_held().count()) / 1000.0;
      w.state = proc.phase() == WorkerPhase::Starting   ? "starting"
                : proc.phase() != WorkerPhase::Ready    ? "stopping"
                : w.in_flight > 0                       ? "busy"
                                                        : "idle";
    } else {
      w.handled = snap.connections_handled;
      w.in_flight = snap.in_flight;
      w.current_ms = snap.busy_since_ns > 0 ? static_cast<double>(now_ns - snap.busy_since_ns) / 1e6 : 0.0;
      w.state = std::string(shm::to_string(snap.state));
    }
    if (auto stats = usage(proc)) {
      w.rss_bytes = stats->rss_bytes;
      w.cpu_s = static_cast<double>(stats->cpu_time_us) / 1e6;
    }
    if (w.state == "busy") ++s.busy;
    if (w.state == "idle") ++s.idle;
    s.workers.push_back(std::move(w));
  };
  s.workers.reserve(slots_.size());  // more only while replacements or retiring workers run
  for (const auto& slot : slots_) {
    if (!slot->process && !slot->last_error.empty() && slot->wanted) {
      // Its last start failed: no process, but the slot is not forgotten.
      WorkerStatus w;
      w.worker = slot->index;
      w.state = "failed";
      w.role = "serving";
      w.generation = worker_generation_;
      w.last_error = slot->last_error;
      s.workers.push_back(std::move(w));
    }
    if (slot->process) add(*slot, *slot->process, "serving");
    if (slot->replacement) add(*slot, *slot->replacement, "replacement");
    for (const auto& r : slot->retiring) add(*slot, *r, "retiring");
  }
  return s;
}

}  // namespace forkpool::supervisor
