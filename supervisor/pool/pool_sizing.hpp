// SPDX-License-Identifier: Apache-2.0
#pragma once
// How many workers a dynamic pool wants (SPEC section 3a), as pure functions of counts the
// pool takes from its workers, its dispatcher's queue or its listeners' backlog. The pool
// asks on every event that changes a count (accept, ready, done, exit, a sample while a
// worker is busy); nothing here looks at the clock except SpawnRate, which is handed it.

#include <chrono>
#include <string_view>

#include "shm/scale_reason.hpp"

namespace forkpool::supervisor {

struct SizingCounts {
  int min = 0;    // min_workers
  int max = 0;    // max_workers
  int spare = 0;  // spare_workers
  int target = 0;    // workers the pool wants now (starting, idle and busy ones)
  int starting = 0;  // wanted workers not ready yet: each will be idle soon
  int idle = 0;      // ready with nothing in flight
  int busy = 0;      // ready with work in flight (or seen busy in the scoreboard)
  // Connections that wait for a worker (master queue, listener backlog), already divided by
  // max_inflight and rounded up: workers needed to take them.
  int waiting = 0;
  // Growth is held: a wanted worker is in crash backoff, or the pool is not running.
  bool held = false;
};

// Spare idle workers wanted now. An on-demand pool (min 0) keeps its spares only while it is
// in use, so that at rest it returns to zero workers.
int spare_wanted(const SizingCounts& c);

// The reasons are shared with readers of the scoreboard (shm/scale_reason.hpp).
using shm::ScaleReason;
using shm::to_string;

struct Growth {
  int add = 0;  // workers to start now (before the spawn rate), 0 = none
  ScaleReason reason = ScaleReason::None;
};

// Workers missing: up to min_workers, then the spare idle ones and one per waiting
// connection (per max_inflight of them), minus the ones already starting; never past
// max_workers, and nothing while growth is held (a flapping pool does not grow).
Growth growth(const SizingCounts& c);

// Whether one idle worker may be retired: the pool stays at min_workers or more and keeps
// spare_workers idle ones; nothing waits.
bool may_retire(const SizingCounts& c);

// Spawns a dynamic pool may start per second: kInitialSpawnRate in the first second of need,
// doubling each following second in which the need went on and the allowance ran out, up to
// kMaxSpawnRate; back to the start once the need is met.
inline constexpr int kInitialSpawnRate = 32;
inline constexpr int kMaxSpawnRate = 4096;
inline constexpr std::chrono::seconds kSpawnWindow{1};

class SpawnRate {
 public:
  using Clock = std::chrono::steady_clock;

  // How many of `wanted` workers may start at `now` (and counts them as started).
  // `wanted` 0 means the need is met: the rate starts over.
  int allow(Clock::time_point now, int wanted);
  // The current allowance per second.
  int rate() const { return rate_; }
  // When more may start, after allow() returned less than wanted.
  Clock::time_point next_window() const { return window_start_ + kSpawnWindow; }

 private:
  int rate_ = kInitialSpawnRate;
  int used_ = 0;
  bool short_ = false;  // the allowance of the current window ran out with need left
  bool open_ = false;   // a window is open (need was seen)
  Clock::time_point window_start_{};
};

}  // namespace forkpool::supervisor
