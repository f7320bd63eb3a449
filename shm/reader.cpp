// SPDX-License-Identifier: Apache-2.0
#include "shm/reader.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include "shm/region.hpp"
#include "shm/seqlock.hpp"

namespace forkpool::shm {

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

template <typename T>
const T* at(const std::byte* base, std::uint64_t offset) {
  return std::launder(reinterpret_cast<const T*>(base + offset));
}

// Lifecycle combined with activity: the master decides whether a worker is starting,
// ready, stopping or gone; only a ready worker's own Idle/Busy refines that. A worker can
// therefore never promote itself to ready by writing its page.
WorkerState combine(std::uint32_t lifecycle_raw, WorkerState activity) {
  const WorkerState lifecycle = worker_state_from_raw(lifecycle_raw).value_or(WorkerState::Empty);
  if (lifecycle == WorkerState::Idle || lifecycle == WorkerState::Busy) {
    return activity == WorkerState::Busy ? WorkerState::Busy : WorkerState::Idle;
  }
  return lifecycle;
}

}  // namespace

Reader::Reader(const std::byte* region, std::vector<const SlotActivity*> pages)
    : header_(at<Header>(region, 0)), pages_(std::move(pages)) {
  pool_count_ = header_->pool_count.load(kRelaxed);
  pools_ = at<PoolBlock>(region, header_->pools_offset.load(kRelaxed));
  records_ = at<SlotRecord>(region, header_->slots_offset.load(kRelaxed));
}

Reader::Copy Reader::copy_worker(std::uint32_t slot) const {
  Copy c;
  WorkerSnapshot& w = c.worker;
  w.slot = slot;
  const SlotRecord& r = records_[slot];
  // The master is the only writer and never stalls mid-update for long; if the counter
  // still did not settle, the fields read last are the best there is, and say so.
  c.record_settled = seqlock_read(r.seq, [&] {
    w.epoch = r.epoch.load(kRelaxed);
    w.pid = r.pid.load(kRelaxed);
    c.lifecycle = r.state.load(kRelaxed);
    w.pool = r.pool.load(kRelaxed);
    w.worker_index = r.worker_index.load(kRelaxed);
    w.generation = r.generation.load(kRelaxed);
    w.last_exit_status = r.last_exit_status.load(kRelaxed);
    w.start_time_ns = r.start_time_ns.load(kRelaxed);
    w.restarts = r.restarts.load(kRelaxed);
    w.rss_bytes = r.rss_bytes.load(kRelaxed);
    w.cpu_time_us = r.cpu_time_us.load(kRelaxed);
    c.master_counts = r.master_counts.load(kRelaxed) != 0;
    c.held = r.held.load(kRelaxed);
    c.handed_back = r.handed_back.load(kRelaxed);
    c.held_since_ns = r.held_since_ns.load(kRelaxed);
  });
  if (c.master_counts) return c;  // the worker's page is not looked at
  const SlotActivity* page = pages_[slot];
  c.stale = slot < page_epochs_.size() && page_epochs_[slot] != w.epoch;
  if (c.stale || page == nullptr) return c;
  RawActivity raw;
  // A slot never validated before has no history yet: a reader is patient with it.
  const bool patient = slot >= history_.size() || history_[slot].epoch != w.epoch || !history_[slot].unsettled;
  const bool ok = seqlock_read(
      page->seq,
      [&] {
        raw.state = page->state.load(kRelaxed);
        raw.in_flight = page->in_flight.load(kRelaxed);
        raw.connections_handled = page->connections_handled.load(kRelaxed);
        raw.busy_since_ns = page->busy_since_ns.load(kRelaxed);
      },
      patient ? kSeqlockAttempts : kSeqlockSpins);
  c.mapped = true;
  if (ok) c.raw = raw;
  return c;
}

WorkerSnapshot Reader::finish_worker(Copy& c, std::int64_t now_ns) {
  WorkerSnapshot& w = c.worker;
  // Grown to the highest slot read, not sized for every slot at once: the master reads the
  // few slots its workers use out of room for thousands (docs/performance.md, memory).
  if (w.slot >= history_.size()) history_.resize(w.slot + 1);
  ActivityHistory& h = history_[w.slot];
  if (h.epoch != w.epoch) h = ActivityHistory{w.epoch, 0, {}, false};
  Activity a;
  if (c.master_counts) {
    a.state = c.held > 0 ? WorkerState::Busy : WorkerState::Idle;
    a.in_flight = std::min(c.held, kMaxInFlight);
    a.connections_handled = c.handed_back;
    a.busy_since_ns = c.held > 0 ? c.held_since_ns : 0;
  } else if (c.stale) {
    a.anomalies = kAnomalyStalePage;
  } else if (c.mapped) {
    a = validate_activity(c.raw, w.start_time_ns, now_ns, h);
    h.unsettled = !c.raw.has_value();
  }
  w.state = combine(c.lifecycle, a.state);
  w.connections_handled = a.connections_handled;
  w.in_flight = a.in_flight;
  w.busy_since_ns = w.state == WorkerState::Busy ? a.busy_since_ns : 0;
  w.anomalies = a.anomalies | (c.record_settled ? 0u : static_cast<std::uint32_t>(kAnomalyNoConsistentRead));
  return w;
}

WorkerSnapshot Reader::read_worker(std::uint32_t slot) {
  Copy c = copy_worker(slot);
  // The clock is read after the copy so an honest worker's timestamp is never after it.
  return finish_worker(c, monotonic_ns());
}

PoolSnapshot Reader::read_pool(std::uint32_t pool) const {
  PoolSnapshot p;
  p.pool = pool;
  const PoolBlock& b = pools_[pool];
  std::uint32_t state = 0;
  std::uint32_t in_use = 0;
  std::uint32_t scale_reason = 0;
  char name[kPoolNameWords * 8 + 1] = {};
  seqlock_read(b.seq, [&] {
    state = b.state.load(kRelaxed);
    in_use = b.in_use.load(kRelaxed);
    p.generation = b.generation.load(kRelaxed);
    for (std::size_t i = 0; i < kPoolNameWords; ++i) {
      const std::uint64_t word = b.name[i].load(kRelaxed);
      std::memcpy(name + i * 8, &word, 8);
    }
    p.size = b.size.load(kRelaxed);
    p.min_workers = b.min_workers.load(kRelaxed);
    p.max_workers = b.max_workers.load(kRelaxed);
    scale_reason = b.last_scale_reason.load(kRelaxed);
    p.last_scale.from = b.last_scale_from.load(kRelaxed);
    p.last_scale.to = b.last_scale_to.load(kRelaxed);
    p.last_scale.at_ns = b.last_scale_ns.load(kRelaxed);
    p.scale_decisions = b.scale_decisions.load(kRelaxed);
    p.accepted = b.accepted.load(kRelaxed);
    p.dispatched = b.dispatched.load(kRelaxed);
    p.completed = b.completed.load(kRelaxed);
    p.in_flight = b.in_flight.load(kRelaxed);
    p.lost = b.lost.load(kRelaxed);
    p.closed = b.closed.load(kRelaxed);
    p.queued_now = b.queued_now.load(kRelaxed);
    p.queue_peak = b.queue_peak.load(kRelaxed);
    p.queue_timeouts = b.queue_timeouts.load(kRelaxed);
    p.spawned = b.spawned.load(kRelaxed);
    p.crashed = b.crashed.load(kRelaxed);
    p.killed = b.killed.load(kRelaxed);
    p.recycled = b.recycled.load(kRelaxed);
    p.spawn_failed = b.spawn_failed.load(kRelaxed);
    p.parked = b.parked.load(kRelaxed);
    p.resumed = b.resumed.load(kRelaxed);
    p.keepalive_timeouts = b.keepalive_timeouts.load(kRelaxed);
    p.keepalive_closed = b.keepalive_closed.load(kRelaxed);
    p.parked_closed = b.parked_closed.load(kRelaxed);
    p.parked_now = b.parked_now.load(kRelaxed);
    p.protocol_errors = b.protocol_errors.load(kRelaxed);
    p.duration = histogram_copy(b.duration);
    p.queue_wait = histogram_copy(b.queue_wait);
  });
  p.state = pool_state_from_raw(state).value_or(PoolState::Failed);
  p.in_use = in_use != 0;
  p.last_scale.reason = scale_reason_from_raw(scale_reason);
  name[kPoolNameBytes] = '\0';
  p.name = name;
  return p;
}

ScoreboardSnapshot Reader::snapshot() {
  ScoreboardSnapshot s;
  s.master_pid = header_->master_pid.load(kRelaxed);
  s.master_start_realtime_ns = header_->start_realtime_ns.load(kRelaxed);
  s.master_start_monotonic_ns = header_->start_monotonic_ns.load(kRelaxed);
  s.pools.reserve(pool_count_);
  for (std::uint32_t i = 0; i < pool_count_; ++i) s.pools.push_back(read_pool(i));
  // Copy every slot first and read the clock once afterwards: cheaper than a clock read
  // per slot, and still never earlier than any timestamp in the copies.
  std::vector<Copy> copies;
  copies.reserve(pages_.size());
  for (std::uint32_t i = 0; i < slot_count(); ++i) copies.push_back(copy_worker(i));
  s.taken_monotonic_ns = monotonic_ns();
  s.workers.reserve(copies.size());
  for (auto& c : copies) s.workers.push_back(finish_worker(c, s.taken_monotonic_ns));
  return s;
}

}  // namespace forkpool::shm
