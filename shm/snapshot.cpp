// SPDX-License-Identifier: Apache-2.0
#include "shm/snapshot.hpp"

#include <utility>

#include "shm/layout.hpp"

namespace forkpool::shm {

std::string describe_anomalies(std::uint32_t anomalies) {
  static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
      {kAnomalyBadState, "bad_state"},
      {kAnomalyInFlightRange, "in_flight_range"},
      {kAnomalyInconsistent, "inconsistent"},
      {kAnomalyFutureTime, "future_time"},
      {kAnomalyPastTime, "past_time"},
      {kAnomalyCounterBackwards, "counter_backwards"},
      {kAnomalyNoConsistentRead, "no_consistent_read"},
      {kAnomalyStalePage, "stale_page"},
  };
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if ((anomalies & bit) == 0) continue;
    if (!out.empty()) out += ',';
    out += name;
  }
  return out;
}

Activity validate_activity(const std::optional<RawActivity>& raw, std::int64_t worker_start_ns,
                           std::int64_t now_ns, ActivityHistory& history) {
  if (!raw) {
    Activity a = history.last_good;
    a.anomalies = kAnomalyNoConsistentRead;
    // The counter may have been seen higher by a read that was flagged for another field.
    a.connections_handled = history.max_handled;
    return a;
  }
  Activity a;
  a.in_flight = raw->in_flight;
  if (a.in_flight > kMaxInFlight) {
    a.anomalies |= kAnomalyInFlightRange;
    a.in_flight = kMaxInFlight;
  }
  switch (raw->state) {
    case 0:  // A fresh page: the worker has not written yet.
    case FP_SLOT_STATE_STARTING:
      a.state = WorkerState::Starting;
      break;
    case FP_SLOT_STATE_IDLE:
      a.state = WorkerState::Idle;
      break;
    case FP_SLOT_STATE_BUSY:
      a.state = WorkerState::Busy;
      break;
    default:
      a.anomalies |= kAnomalyBadState;
      a.state = a.in_flight > 0 ? WorkerState::Busy : WorkerState::Idle;
      break;
  }
  if ((a.state == WorkerState::Busy) != (a.in_flight > 0)) a.anomalies |= kAnomalyInconsistent;

  // A finished-connections counter only grows during one worker's life; if it shrinks,
  // report the highest value seen so pool totals never go backwards either.
  if (raw->connections_handled < history.max_handled) {
    a.anomalies |= kAnomalyCounterBackwards;
    a.connections_handled = history.max_handled;
  } else {
    a.connections_handled = raw->connections_handled;
    history.max_handled = raw->connections_handled;
  }

  if (a.state == WorkerState::Busy) {
    const std::int64_t t = raw->busy_since_ns;
    if (t > now_ns) {
      a.anomalies |= kAnomalyFutureTime;
    } else if (t <= 0 || t < worker_start_ns) {
      a.anomalies |= kAnomalyPastTime;
    } else {
      a.busy_since_ns = t;
    }
  } else if (raw->busy_since_ns != 0) {
    a.anomalies |= kAnomalyInconsistent;
  }
  if (a.anomalies == 0) history.last_good = a;
  return a;
}

WorkerCounts count_workers(const ScoreboardSnapshot& s, std::uint32_t pool) {
  WorkerCounts c;
  for (const auto& w : s.workers) {
    if (w.pool != pool) continue;
    switch (w.state) {
      case WorkerState::Starting:
        ++c.starting;
        break;
      case WorkerState::Idle:
        ++c.idle;
        break;
      case WorkerState::Busy:
        ++c.busy;
        break;
      case WorkerState::Stopping:
        ++c.stopping;
        break;
      case WorkerState::Exited:
        ++c.exited;
        break;
      case WorkerState::Empty:
        break;
    }
  }
  return c;
}

}  // namespace forkpool::shm
