// SPDX-License-Identifier: Apache-2.0
#pragma once
// What readers get out of the scoreboard: plain copies, taken once and then rendered (text,
// JSON, Prometheus) without touching shared memory again. Worker-written values in here
// have been validated; anything a worker wrote that made no sense is clamped and flagged
// in `anomalies` rather than passed on.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shm/histogram.hpp"
#include "shm/pool_state.hpp"
#include "shm/scale_reason.hpp"
#include "shm/worker_state.hpp"

namespace forkpool::shm {

// Why a worker's activity fields were not taken at face value (bit flags).
enum Anomaly : std::uint32_t {
  kAnomalyBadState = 1u << 0,          // state not Starting/Idle/Busy
  kAnomalyInFlightRange = 1u << 1,     // in_flight above kMaxInFlight
  kAnomalyInconsistent = 1u << 2,      // busy without in-flight connections, or the reverse
  kAnomalyFutureTime = 1u << 3,        // busy_since after the reader's clock
  kAnomalyPastTime = 1u << 4,          // busy_since before the worker was started
  kAnomalyCounterBackwards = 1u << 5,  // connections_handled smaller than seen before
  kAnomalyNoConsistentRead = 1u << 6,  // a seqlock never settled (the worker's page: last good
                                       // values reported; the master's record: its last read)
  kAnomalyStalePage = 1u << 7,         // reader holds the page of an earlier worker
};

// Far above any sane max_inflight, far below anything that overflows a sum over workers.
inline constexpr std::uint32_t kMaxInFlight = 65536;

// "bad_state,future_time"; "" when none.
std::string describe_anomalies(std::uint32_t anomalies);

// A consistent copy of a slot page, not yet trusted.
struct RawActivity {
  std::uint32_t state = 0;
  std::uint32_t in_flight = 0;
  std::uint64_t connections_handled = 0;
  std::int64_t busy_since_ns = 0;
};

// Validated worker-written values.
struct Activity {
  WorkerState state = WorkerState::Starting;  // Starting, Idle or Busy
  std::uint32_t in_flight = 0;
  std::uint64_t connections_handled = 0;
  std::int64_t busy_since_ns = 0;  // 0 unless Busy with a believable time
  std::uint32_t anomalies = 0;
};

// What a reader remembers about one slot between snapshots, to catch counters going
// backwards and to have something to show when a page never reads consistently.
struct ActivityHistory {
  std::uint64_t epoch = 0;
  std::uint64_t max_handled = 0;
  Activity last_good{};
  // Set after a read that never settled: the next read of the page only spins briefly, so
  // a worker keeping its counter odd on purpose cannot make every snapshot slow.
  bool unsettled = false;
};

// `raw` is nullopt when no consistent copy could be taken. `worker_start_ns` (0 = unknown)
// and `now_ns` are CLOCK_MONOTONIC. The caller resets `history` when the epoch changes.
Activity validate_activity(const std::optional<RawActivity>& raw, std::int64_t worker_start_ns,
                           std::int64_t now_ns, ActivityHistory& history);

struct WorkerSnapshot {
  std::uint32_t slot = 0;
  // Master-written lifecycle.
  std::uint64_t epoch = 0;
  std::uint32_t pool = 0;
  std::uint32_t worker_index = 0;
  std::int32_t pid = 0;
  WorkerState state = WorkerState::Empty;  // lifecycle refined by the worker's Idle/Busy
  std::uint32_t generation = 0;
  std::int64_t start_time_ns = 0;  // CLOCK_MONOTONIC
  std::uint64_t restarts = 0;
  std::int32_t last_exit_status = -1;  // raw wait status, -1 if none
  std::uint64_t rss_bytes = 0;
  std::uint64_t cpu_time_us = 0;
  // Worker-written activity, validated.
  std::uint64_t connections_handled = 0;
  std::uint32_t in_flight = 0;
  std::int64_t busy_since_ns = 0;  // CLOCK_MONOTONIC, 0 unless busy
  std::uint32_t anomalies = 0;
};

struct ScaleDecision {
  ScaleReason reason = ScaleReason::None;
  std::uint32_t from = 0;
  std::uint32_t to = 0;
  std::int64_t at_ns = 0;  // CLOCK_MONOTONIC
};

struct PoolSnapshot {
  std::uint32_t pool = 0;
  bool in_use = true;  // false for a free block (no pool there): readers skip it
  std::string name;
  std::uint32_t generation = 0;
  PoolState state = PoolState::Stopped;
  std::uint32_t size = 0;         // the target: workers the pool wants now
  std::uint32_t min_workers = 0;  // bounds of the target (both = size for a fixed pool)
  std::uint32_t max_workers = 0;
  ScaleDecision last_scale;       // reason None: never scaled
  std::uint32_t scale_decisions = 0;
  std::uint64_t accepted = 0;
  std::uint64_t dispatched = 0;
  std::uint64_t completed = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t lost = 0;
  std::uint64_t closed = 0;
  std::uint64_t queued_now = 0;
  std::uint64_t queue_peak = 0;
  std::uint64_t queue_timeouts = 0;
  std::uint64_t spawned = 0;
  std::uint64_t crashed = 0;
  std::uint64_t killed = 0;
  std::uint64_t recycled = 0;
  std::uint64_t spawn_failed = 0;
  std::uint64_t parked = 0;
  std::uint64_t resumed = 0;
  std::uint64_t keepalive_timeouts = 0;
  std::uint64_t keepalive_closed = 0;
  std::uint64_t parked_closed = 0;
  std::uint64_t parked_now = 0;
  std::uint64_t protocol_errors = 0;
  HistogramSnapshot duration;
  HistogramSnapshot queue_wait;
};

struct ScoreboardSnapshot {
  std::int32_t master_pid = 0;
  std::int64_t master_start_realtime_ns = 0;
  std::int64_t master_start_monotonic_ns = 0;
  std::int64_t taken_monotonic_ns = 0;
  std::vector<PoolSnapshot> pools;
  std::vector<WorkerSnapshot> workers;
};

// Aggregates are computed from a snapshot, never stored in shared memory.
struct WorkerCounts {
  std::uint32_t starting = 0;
  std::uint32_t idle = 0;
  std::uint32_t busy = 0;
  std::uint32_t stopping = 0;
  std::uint32_t exited = 0;
  std::uint32_t ready() const { return idle + busy; }
};
WorkerCounts count_workers(const ScoreboardSnapshot& s, std::uint32_t pool);

}  // namespace forkpool::shm
