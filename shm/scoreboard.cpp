// SPDX-License-Identifier: Apache-2.0
#include "shm/scoreboard.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "shm/histogram.hpp"
#include "shm/seqlock.hpp"

namespace forkpool::shm {

namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

// A bad index from the master's own tables is a bug in the master, not bad input.
void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "forkpool: scoreboard: %s out of range\n", what);
  std::abort();
}

// Single writer: no read-modify-write needed.
void bump(AtomicU64& a, std::uint64_t n) {
  a.store(a.load(kRelaxed) + n, kRelaxed);
}

}  // namespace

std::uint32_t Scoreboard::pool_room(std::size_t pools) {
  return static_cast<std::uint32_t>(std::min<std::size_t>(kMaxPools, std::max<std::size_t>(64, 2 * pools)));
}

std::uint32_t Scoreboard::slot_room(std::size_t slots) {
  return static_cast<std::uint32_t>(std::min<std::size_t>(kMaxSlots, std::max<std::size_t>(1024, 2 * slots)));
}

Scoreboard::Scoreboard(std::uint32_t pool_count, std::uint32_t slot_count)
    : pool_count_(pool_count), slot_used_(slot_count, false), pool_used_(pool_count, false) {
  if (slot_count > kMaxSlots || pool_count > kMaxPools) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            "scoreboard: too many slots or pools");
  }
  const std::size_t page = system_page_size();
  const RegionGeometry g = region_geometry(pool_count, slot_count);
  const std::size_t size = (g.size + page - 1) / page * page;
  // Read-only even to the master's user: the master writes through the descriptor it
  // has, and nobody may reopen one read-write (region.hpp says why).
  if (auto ec = make_sealed_memfd("forkpool-scoreboard", size, region_fd_, 0400)) {
    throw std::system_error(ec, "memfd_create/ftruncate/F_ADD_SEALS (scoreboard region)");
  }
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd_.get(), 0);
  if (addr == MAP_FAILED) {
    throw std::system_error(errno, std::system_category(), "mmap (scoreboard region)");
  }
  region_ = Mapping(addr, size);
  format_region(region_.data(), HeaderSpec{pool_count, slot_count, static_cast<std::uint32_t>(page),
                                           ::getpid(), realtime_ns(), monotonic_ns()});
  pools_ = std::launder(reinterpret_cast<PoolBlock*>(region_.data() + g.pools_offset));
  records_ = std::launder(reinterpret_cast<SlotRecord*>(region_.data() + g.slots_offset));

  pages_ = SlotPages(slot_count, page);
  slot_fds_.resize(slot_count);
  reader_ = Reader(region_.data(), std::vector<const SlotActivity*>(slot_count, nullptr));
}

std::optional<std::uint32_t> Scoreboard::add_pool(std::string_view name, std::uint32_t generation) {
  for (std::uint32_t i = 0; i < pool_count_; ++i) {
    if (pool_used_[i]) continue;
    pool_used_[i] = true;
    PoolBlock& b = pools_[i];
    SeqlockWrite w(b.seq);
    // A block is reused by a later pool: nothing of the earlier one may show through.
    for (AtomicU64* f : {&b.accepted, &b.dispatched, &b.completed, &b.in_flight, &b.lost, &b.closed,
                         &b.queued_now, &b.queue_peak, &b.queue_timeouts, &b.spawned, &b.crashed, &b.killed,
                         &b.recycled, &b.spawn_failed, &b.parked, &b.resumed, &b.keepalive_timeouts,
                         &b.keepalive_closed, &b.parked_closed, &b.parked_now, &b.protocol_errors})
      f->store(0, kRelaxed);
    for (HistogramBlock* h : {&b.duration, &b.queue_wait}) {
      for (auto& bucket : h->buckets) bucket.store(0, kRelaxed);
      h->count.store(0, kRelaxed);
      h->sum_us.store(0, kRelaxed);
      h->max_us.store(0, kRelaxed);
    }
    char text[kPoolNameWords * 8] = {};
    std::memcpy(text, name.data(), std::min(name.size(), kPoolNameBytes));
    for (std::size_t k = 0; k < kPoolNameWords; ++k) {
      std::uint64_t word = 0;
      std::memcpy(&word, text + k * 8, 8);
      b.name[k].store(word, kRelaxed);
    }
    b.state.store(static_cast<std::uint32_t>(PoolState::Stopped), kRelaxed);
    b.size.store(0, kRelaxed);
    for (AtomicU32* f : {&b.min_workers, &b.max_workers, &b.last_scale_reason, &b.last_scale_from,
                         &b.last_scale_to, &b.scale_decisions})
      f->store(0, kRelaxed);
    b.last_scale_ns.store(0, kRelaxed);
    b.generation.store(generation, kRelaxed);
    b.in_use.store(1, kRelaxed);
    return i;
  }
  return std::nullopt;
}

void Scoreboard::remove_pool(std::uint32_t pool) {
  PoolBlock& b = pool_block(pool);
  {
    SeqlockWrite w(b.seq);
    b.in_use.store(0, kRelaxed);
    b.state.store(static_cast<std::uint32_t>(PoolState::Stopped), kRelaxed);
  }
  pool_used_[pool] = false;
}

void Scoreboard::set_pool_generation(std::uint32_t pool, std::uint32_t generation) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.generation.store(generation, kRelaxed);
}

std::uint32_t Scoreboard::free_pools() const {
  return static_cast<std::uint32_t>(std::count(pool_used_.begin(), pool_used_.end(), false));
}

std::error_code Scoreboard::acquire_slot(std::uint32_t& slot) {
  for (std::uint32_t i = 0; i < slot_used_.size(); ++i) {
    if (slot_used_[i]) continue;
    if (!slot_fds_[i]) {
      if (auto ec = renew_page(i)) return ec;
    }
    slot_used_[i] = true;
    slot = i;
    return {};
  }
  return std::make_error_code(std::errc::no_space_on_device);
}

void Scoreboard::release_slot(std::uint32_t slot) {
  require(slot < slot_count(), "slot index");
  slot_used_[slot] = false;
}

std::error_code Scoreboard::make_pages(std::uint32_t count) {
  for (std::uint32_t i = 0; i < count && i < slot_count(); ++i)
    if (!slot_fds_[i])
      if (auto ec = renew_page(i)) return ec;
  return {};
}

std::uint32_t Scoreboard::free_slots() const {
  return static_cast<std::uint32_t>(std::count(slot_used_.begin(), slot_used_.end(), false));
}

std::error_code Scoreboard::renew_page(std::uint32_t slot) {
  OwnedFd fd;
  if (auto ec = make_sealed_memfd("forkpool-slot", pages_.page_size(), fd, 0600)) return ec;
  if (auto ec = pages_.map(slot, fd.get(), true)) return ec;
  new (pages_.page(slot)) SlotActivity{};
  slot_fds_[slot] = std::move(fd);
  reader_.set_page(slot, std::launder(reinterpret_cast<const SlotActivity*>(pages_.page(slot))));
  // Slots are handed out lowest first, so the paged ones stay a prefix (a reader gets
  // the fds of slots [0, paged_) and nothing else).
  paged_ = std::max(paged_, slot + 1);
  return {};
}

PoolBlock& Scoreboard::pool_block(std::uint32_t pool) {
  require(pool < pool_count_, "pool index");
  return pools_[pool];
}

SlotRecord& Scoreboard::record(std::uint32_t slot) {
  require(slot < slot_count(), "slot index");
  // Records are started when first written, a prefix at a time (slots are handed out
  // lowest first), so the pages of the records nobody uses stay untouched.
  for (; formatted_ <= slot; ++formatted_) format_slot_record(region_.data(), pool_count_, slot_count(), formatted_);
  return records_[slot];
}

std::uint64_t Scoreboard::slot_epoch(std::uint32_t slot) const {
  require(slot < slot_count(), "slot index");
  return records_[slot].epoch.load(kRelaxed);
}

void Scoreboard::assign_slot(std::uint32_t slot, std::uint32_t pool, std::uint32_t worker_index) {
  require(pool < pool_count_, "pool index");
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.pool.store(pool, kRelaxed);
  r.worker_index.store(worker_index, kRelaxed);
}

std::error_code Scoreboard::start_worker(std::uint32_t slot, std::uint32_t generation) {
  SlotRecord& r = record(slot);
  const std::uint64_t epoch = r.epoch.load(kRelaxed);
  std::error_code ec;
  if (!slot_fds_[slot]) {
    // A slot nobody acquired (unit tests drive slots directly): make its page now.
    if (auto first = renew_page(slot)) return first;
  } else if (epoch != 0) {
    ec = renew_page(slot);
    if (ec) {
      // Degraded but safe: the old page is reset by the master, which owns it while no
      // worker runs in the slot.
      auto* a = std::launder(reinterpret_cast<SlotActivity*>(pages_.page(slot)));
      SeqlockWrite w(a->seq);
      a->state.store(0, kRelaxed);
      a->in_flight.store(0, kRelaxed);
      a->connections_handled.store(0, kRelaxed);
      a->busy_since_ns.store(0, kRelaxed);
    }
  }
  SeqlockWrite w(r.seq);
  r.epoch.store(epoch + 1, kRelaxed);
  if (epoch != 0) bump(r.restarts, 1);
  r.pid.store(0, kRelaxed);
  r.state.store(static_cast<std::uint32_t>(WorkerState::Starting), kRelaxed);
  r.generation.store(generation, kRelaxed);
  r.start_time_ns.store(0, kRelaxed);
  r.rss_bytes.store(0, kRelaxed);
  r.cpu_time_us.store(0, kRelaxed);
  r.master_counts.store(0, kRelaxed);
  r.held.store(0, kRelaxed);
  r.handed_back.store(0, kRelaxed);
  r.held_since_ns.store(0, kRelaxed);
  return ec;
}

void Scoreboard::set_master_activity(std::uint32_t slot, std::uint32_t held, std::uint64_t handed_back,
                                     std::int64_t held_since_ns) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.master_counts.store(1, kRelaxed);
  r.held.store(held, kRelaxed);
  r.handed_back.store(handed_back, kRelaxed);
  r.held_since_ns.store(held > 0 ? held_since_ns : 0, kRelaxed);
}

void Scoreboard::set_worker_generation(std::uint32_t slot, std::uint32_t generation) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.generation.store(generation, kRelaxed);
}

void Scoreboard::set_pid(std::uint32_t slot, pid_t pid, std::int64_t start_time_ns) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.pid.store(pid, kRelaxed);
  r.start_time_ns.store(start_time_ns, kRelaxed);
}

void Scoreboard::set_history(std::uint32_t slot, std::uint64_t restarts, int last_exit_status) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.restarts.store(restarts, kRelaxed);
  r.last_exit_status.store(last_exit_status, kRelaxed);
}

void Scoreboard::set_last_exit(std::uint32_t slot, int last_exit_status) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.last_exit_status.store(last_exit_status, kRelaxed);
}

void Scoreboard::set_state(std::uint32_t slot, WorkerState state) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.state.store(static_cast<std::uint32_t>(state), kRelaxed);
}

void Scoreboard::mark_ready(std::uint32_t slot) {
  set_state(slot, WorkerState::Idle);
}
void Scoreboard::mark_stopping(std::uint32_t slot) {
  set_state(slot, WorkerState::Stopping);
}
void Scoreboard::mark_empty(std::uint32_t slot) {
  set_state(slot, WorkerState::Empty);
}

void Scoreboard::mark_exited(std::uint32_t slot, int wait_status) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.state.store(static_cast<std::uint32_t>(WorkerState::Exited), kRelaxed);
  r.last_exit_status.store(wait_status, kRelaxed);
}

void Scoreboard::set_usage(std::uint32_t slot, std::uint64_t rss_bytes, std::uint64_t cpu_time_us) {
  SlotRecord& r = record(slot);
  SeqlockWrite w(r.seq);
  r.rss_bytes.store(rss_bytes, kRelaxed);
  r.cpu_time_us.store(cpu_time_us, kRelaxed);
}

void Scoreboard::set_pool_state(std::uint32_t pool, PoolState state) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.state.store(static_cast<std::uint32_t>(state), kRelaxed);
}

void Scoreboard::set_pool_size(std::uint32_t pool, std::uint32_t size) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.size.store(size, kRelaxed);
}

void Scoreboard::set_pool_bounds(std::uint32_t pool, std::uint32_t min, std::uint32_t max) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.min_workers.store(min, kRelaxed);
  b.max_workers.store(max, kRelaxed);
}

void Scoreboard::record_scale(std::uint32_t pool, ScaleReason reason, std::uint32_t from, std::uint32_t to,
                              std::int64_t at_ns) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.last_scale_reason.store(static_cast<std::uint32_t>(reason), kRelaxed);
  b.last_scale_from.store(from, kRelaxed);
  b.last_scale_to.store(to, kRelaxed);
  b.last_scale_ns.store(at_ns, kRelaxed);
  b.scale_decisions.store(b.scale_decisions.load(kRelaxed) + 1, kRelaxed);
}

void Scoreboard::count(std::uint32_t pool, PoolCounter counter, std::uint64_t n) {
  PoolBlock& b = pool_block(pool);
  AtomicU64* field = nullptr;
  switch (counter) {
    case PoolCounter::Accepted:
      field = &b.accepted;
      break;
    case PoolCounter::Dispatched:
      field = &b.dispatched;
      break;
    case PoolCounter::Completed:
      field = &b.completed;
      break;
    case PoolCounter::QueueTimeouts:
      field = &b.queue_timeouts;
      break;
    case PoolCounter::Spawned:
      field = &b.spawned;
      break;
    case PoolCounter::Crashed:
      field = &b.crashed;
      break;
    case PoolCounter::Killed:
      field = &b.killed;
      break;
    case PoolCounter::Recycled:
      field = &b.recycled;
      break;
    case PoolCounter::Lost:
      field = &b.lost;
      break;
    case PoolCounter::Closed:
      field = &b.closed;
      break;
    case PoolCounter::SpawnFailed:
      field = &b.spawn_failed;
      break;
    case PoolCounter::Parked:
      field = &b.parked;
      break;
    case PoolCounter::Resumed:
      field = &b.resumed;
      break;
    case PoolCounter::KeepaliveTimeouts:
      field = &b.keepalive_timeouts;
      break;
    case PoolCounter::KeepaliveClosed:
      field = &b.keepalive_closed;
      break;
    case PoolCounter::ParkedClosed:
      field = &b.parked_closed;
      break;
    case PoolCounter::ProtocolErrors:
      field = &b.protocol_errors;
      break;
  }
  require(field != nullptr, "pool counter");
  SeqlockWrite w(b.seq);
  bump(*field, n);
}

void Scoreboard::set_in_flight(std::uint32_t pool, std::uint64_t in_flight) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.in_flight.store(in_flight, std::memory_order_relaxed);
}

void Scoreboard::set_parked(std::uint32_t pool, std::uint64_t parked_now) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.parked_now.store(parked_now, kRelaxed);
}

void Scoreboard::set_queued(std::uint32_t pool, std::uint64_t queued_now) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  b.queued_now.store(queued_now, kRelaxed);
  if (queued_now > b.queue_peak.load(kRelaxed)) b.queue_peak.store(queued_now, kRelaxed);
}

void Scoreboard::record_duration(std::uint32_t pool, std::uint64_t us) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  histogram_record(b.duration, us);
}

void Scoreboard::record_queue_wait(std::uint32_t pool, std::uint64_t us) {
  PoolBlock& b = pool_block(pool);
  SeqlockWrite w(b.seq);
  histogram_record(b.queue_wait, us);
}

}  // namespace forkpool::shm
