// SPDX-License-Identifier: Apache-2.0
#pragma once
// The shared-memory layout of the scoreboard. Read this file before changing anything:
// every struct here is read by other processes (workers, forkpoolctl, possibly an older or
// newer master), so a change needs a kLayoutVersion bump; the version pin test fails
// otherwise.
//
// Two kinds of memory, chosen so that a worker can write its own activity fields and
// nothing else (see docs/scoreboard.md, "Isolation"):
//
//   main region (one memfd, mapped writable only by the master; the fd never reaches a
//   worker):   Header | PoolBlock x pool_count | SlotRecord x slot_count
//   slot pages (one memfd of one page per slot, the worker's FORKPOOL_SCOREBOARD_FD):
//              SlotActivity at offset 0
//
// Rules: fixed-width fields only, no pointers (offsets only), standard layout, every field
// a lock-free std::atomic, each field written by exactly one party (stated per field), and
// every block that has a writer of its own starts on a 64-byte cache line.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shm/slot_layout.h"

namespace forkpool::shm {

// Bump on any change to a struct in this file or to the numeric values of WorkerState,
// PoolState, ScaleReason or the histogram buckets.
inline constexpr std::uint32_t kLayoutVersion = 8;
// "FPSCORE" followed by a format byte; spelled so a hex dump of the region reads it.
inline constexpr std::uint64_t kMagic = 0x0145524f43535046ull;  // bytes: F P S C O R E 0x01
inline constexpr std::size_t kCacheLine = 64;

// Histogram buckets: round upper bounds on a 1-2.5-5 ladder from 100 us to 25 s, then
// 60 s, then everything longer (shm/histogram.hpp lists them; Prometheus shows them as
// its `le` labels). Bucket k holds the samples above bound k-1 and at most bound k.
inline constexpr std::size_t kHistogramBuckets = 19;

// Sanity bounds used when validating a header handed to us by another process.
inline constexpr std::uint32_t kMaxSlots = 65536;
inline constexpr std::uint32_t kMaxPools = 4096;

// A pool block carries its pool's name, so a reader matches blocks to pools by name and a
// reload can add and remove pools without renumbering the others.
inline constexpr std::size_t kPoolNameWords = 8;
inline constexpr std::size_t kPoolNameBytes = kPoolNameWords * 8 - 1;

using AtomicU32 = std::atomic<std::uint32_t>;
using AtomicI32 = std::atomic<std::int32_t>;
using AtomicU64 = std::atomic<std::uint64_t>;
using AtomicI64 = std::atomic<std::int64_t>;

static_assert(AtomicU32::is_always_lock_free && AtomicI32::is_always_lock_free);
static_assert(AtomicU64::is_always_lock_free && AtomicI64::is_always_lock_free);
// The C worker library writes plain integers with __atomic builtins at the same offsets,
// which is only sound if the atomic wrapper adds no size, alignment or hidden state.
static_assert(sizeof(AtomicU64) == sizeof(std::uint64_t) &&
              alignof(AtomicU64) == alignof(std::uint64_t));
static_assert(sizeof(AtomicI64) == sizeof(std::int64_t) &&
              alignof(AtomicI64) == alignof(std::int64_t));
static_assert(sizeof(AtomicU32) == sizeof(std::uint32_t) &&
              alignof(AtomicU32) == alignof(std::uint32_t));

// Written once by the master before the region fd is handed to anyone; read-only after.
struct alignas(kCacheLine) Header {
  AtomicU64 magic;               // master, at creation: kMagic
  AtomicU32 layout_version;      // master, at creation: kLayoutVersion
  AtomicU32 header_size;         // master, at creation: sizeof(Header)
  AtomicU32 slot_record_size;    // master, at creation: sizeof(SlotRecord)
  AtomicU32 activity_size;       // master, at creation: sizeof(SlotActivity)
  AtomicU32 pool_block_size;     // master, at creation: sizeof(PoolBlock)
  AtomicU32 histogram_buckets;   // master, at creation: kHistogramBuckets
  AtomicU32 slot_count;          // master, at creation: slot records allocated (with room to grow)
  AtomicU32 pool_count;          // master, at creation: pool blocks allocated (with room to grow)
  AtomicU32 activity_page_size;  // master, at creation: bytes in each slot memfd
  AtomicI32 master_pid;          // master, at creation
  AtomicU64 pools_offset;        // master, at creation: byte offset of PoolBlock[0]
  AtomicU64 slots_offset;        // master, at creation: byte offset of SlotRecord[0]
  AtomicU64 region_size;         // master, at creation: bytes of the main region
  AtomicI64 start_realtime_ns;   // master, at creation: CLOCK_REALTIME of master start
  AtomicI64 start_monotonic_ns;  // master, at creation: CLOCK_MONOTONIC at the same instant,
                                 // so readers can turn the monotonic stamps below into dates
};

// Log-spaced latency histogram; written only by the master (single writer, so plain
// load+store increments, no read-modify-write needed).
struct alignas(kCacheLine) HistogramBlock {
  AtomicU64 buckets[kHistogramBuckets];  // master
  AtomicU64 count;                       // master: samples recorded
  AtomicU64 sum_us;                      // master: sum of samples, for the mean
  AtomicU64 max_us;                      // master: largest sample
};

// Counters of one pool. All master-written; `seq` is a seqlock so a reader's copy of the
// block is from a single instant (e.g. dispatched never exceeds accepted in a snapshot).
struct alignas(kCacheLine) PoolBlock {
  AtomicU64 seq;              // master: seqlock, odd while an update is in progress
  AtomicU32 state;            // master: PoolState
  AtomicU32 size;             // master: configured number of workers
  AtomicU32 in_use;           // master: 1 while a pool owns the block, 0 when it is free
  AtomicU32 generation;       // master: configuration generation the pool runs
  AtomicU64 name[kPoolNameWords];  // master: pool name, NUL-padded, first 63 bytes
  AtomicU64 accepted;         // master: connections accepted on the pool's listeners
  AtomicU64 dispatched;       // master: connections handed to a worker
  AtomicU64 completed;        // master: DONE received from the worker
  AtomicU64 in_flight;        // master: dispatched and neither completed nor lost
  AtomicU64 lost;             // master: held by a worker that exited before sending DONE
  AtomicU64 closed;           // master: queued connections closed at shutdown
  AtomicU64 queued_now;       // master: connections waiting in the master's queue
  AtomicU64 queue_peak;       // master: highest queued_now since start
  AtomicU64 queue_timeouts;   // master: connections closed after waiting too long
  AtomicU64 spawned;          // master: workers forked
  AtomicU64 crashed;          // master: abnormal exits (signal or non-zero status)
  AtomicU64 killed;           // master: workers killed by a timeout or the watchdog
  AtomicU64 recycled;         // master: workers replaced on purpose (max requests, RSS)
  AtomicU64 spawn_failed;     // master: starts that never ran the program (exec or set-up failed)
  // keepalive = "master" (docs/protocol.md has the identities these keep):
  AtomicU64 parked;              // master: connections a worker handed back idle (PARK)
  AtomicU64 resumed;             // master: parked connections whose next request arrived (queued again)
  AtomicU64 keepalive_timeouts;  // master: parked connections closed idle (keepalive_timeout, max_parked)
  AtomicU64 keepalive_closed;    // master: parked connections the client closed
  AtomicU64 parked_closed;       // master: parked connections closed at a stop or shutdown
  AtomicU64 parked_now;          // master: connections parked at this moment
  AtomicU64 protocol_errors;     // master: worker messages refused (malformed, or a PARK that breaks the rules)
  AtomicU32 min_workers;         // master: lower bound of the size (= size for a fixed pool)
  AtomicU32 max_workers;         // master: upper bound of the size (= size for a fixed pool)
  AtomicU32 last_scale_reason;   // master: ScaleReason of the last scale decision, 0 if none
  AtomicU32 last_scale_from;     // master: size before the last scale decision
  AtomicU32 last_scale_to;       // master: size after it
  AtomicU32 scale_decisions;     // master: scale decisions since the pool was added
  AtomicI64 last_scale_ns;       // master: CLOCK_MONOTONIC of the last scale decision, 0 if none
  HistogramBlock duration;    // master: connection duration, dispatch to DONE
  HistogramBlock queue_wait;  // master: time a connection waited in the master's queue
};

// Lifecycle of the worker in one slot: master-written only, in the main region, so a
// worker cannot forge its own pid or state. `seq` is the master's seqlock for this block.
struct alignas(kCacheLine) SlotRecord {
  AtomicU64 seq;               // master: seqlock, odd while an update is in progress
  AtomicU64 epoch;             // master: bumped each time a new worker takes the slot
  AtomicI32 pid;               // master: 0 before fork and when the slot is empty
  AtomicU32 state;             // master: WorkerState, one of Empty, Starting, Idle (= ready,
                               //   refined to Idle/Busy by the activity page), Stopping, Exited
  AtomicU32 pool;              // master: index of the pool owning the slot
  AtomicU32 worker_index;      // master: FORKPOOL_WORKER, 0..size-1 within the pool
  AtomicU32 generation;        // master: newest config generation whose worker-side settings it runs
  AtomicI32 last_exit_status;  // master: raw wait status of the previous worker, -1 if none
  AtomicI64 start_time_ns;     // master: CLOCK_MONOTONIC when the worker was forked
  AtomicU64 restarts;          // master: processes started for this worker number after the first
  AtomicU64 rss_bytes;         // master: resident set size, sampled from /proc
  AtomicU64 cpu_time_us;       // master: user+system cpu time, sampled from /proc
  // Master dispatch: the master's own account of the worker's connections (what the
  // master handed it and what it handed back), which readers show instead of the
  // worker's page: exact, and there for workers that never write their page (the
  // protocol alone). 0 in `master_counts` until the first account of this epoch.
  AtomicU32 master_counts;     // master: 1 when the three fields below describe the worker
  AtomicU32 held;              // master: connections handed to the worker and not given back
  AtomicU64 handed_back;       // master: DONE or PARK received from the worker
  AtomicI64 held_since_ns;     // master: CLOCK_MONOTONIC when `held` left 0; 0 while it is 0
};

// The worker-writable page of one slot. Mirrors fp_slot_activity in slot_layout.h.
struct alignas(kCacheLine) SlotActivity {
  AtomicU64 seq;                  // worker: seqlock, odd while an update is in progress
  AtomicU32 state;                // worker: FP_SLOT_STATE_* (Starting, Idle, Busy)
  AtomicU32 in_flight;            // worker: connections currently held
  AtomicU64 connections_handled;  // worker: connections finished since exec
  AtomicI64 busy_since_ns;        // worker: CLOCK_MONOTONIC when it became busy, 0 if idle
};

template <typename T>
inline constexpr bool kSharedSafe = std::is_standard_layout_v<T> && !std::is_polymorphic_v<T>;
static_assert(kSharedSafe<Header> && kSharedSafe<HistogramBlock> && kSharedSafe<PoolBlock> &&
              kSharedSafe<SlotRecord> && kSharedSafe<SlotActivity>);
static_assert(sizeof(PoolBlock) % kCacheLine == 0 && sizeof(SlotRecord) % kCacheLine == 0 &&
              sizeof(Header) % kCacheLine == 0 && sizeof(HistogramBlock) % kCacheLine == 0);
static_assert(offsetof(PoolBlock, duration) % kCacheLine == 0);

// The C view must match the C++ view byte for byte.
static_assert(sizeof(SlotActivity) == FP_SLOT_ACTIVITY_SIZE);
static_assert(sizeof(SlotActivity) == sizeof(fp_slot_activity));
static_assert(offsetof(SlotActivity, seq) == FP_SLOT_OFF_SEQ);
static_assert(offsetof(SlotActivity, state) == FP_SLOT_OFF_STATE);
static_assert(offsetof(SlotActivity, in_flight) == FP_SLOT_OFF_IN_FLIGHT);
static_assert(offsetof(SlotActivity, connections_handled) == FP_SLOT_OFF_HANDLED);
static_assert(offsetof(SlotActivity, busy_since_ns) == FP_SLOT_OFF_BUSY_SINCE);
static_assert(offsetof(fp_slot_activity, seq) == FP_SLOT_OFF_SEQ);
static_assert(offsetof(fp_slot_activity, state) == FP_SLOT_OFF_STATE);
static_assert(offsetof(fp_slot_activity, in_flight) == FP_SLOT_OFF_IN_FLIGHT);
static_assert(offsetof(fp_slot_activity, connections_handled) == FP_SLOT_OFF_HANDLED);
static_assert(offsetof(fp_slot_activity, busy_since_ns) == FP_SLOT_OFF_BUSY_SINCE);

// Where things are inside the main region, computed the same way by creator and readers.
struct RegionGeometry {
  std::uint64_t pools_offset;
  std::uint64_t slots_offset;
  std::uint64_t size;  // not rounded to a page; the memfd is
};

constexpr RegionGeometry region_geometry(std::uint32_t pool_count, std::uint32_t slot_count) {
  const std::uint64_t pools = sizeof(Header);
  const std::uint64_t slots = pools + std::uint64_t{pool_count} * sizeof(PoolBlock);
  return {pools, slots, slots + std::uint64_t{slot_count} * sizeof(SlotRecord)};
}

}  // namespace forkpool::shm
