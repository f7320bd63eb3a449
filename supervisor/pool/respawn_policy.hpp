// SPDX-License-Identifier: Apache-2.0
#pragma once
// When to start a crashed worker again, and when a pool is flapping. Pure logic:
// the caller supplies the clock and the random source, so tests drive it directly.

#include <chrono>
#include <deque>
#include <random>

namespace forkpool::supervisor {

using Clock = std::chrono::steady_clock;

// A worker that stayed up this long had a healthy run: its backoff starts over.
inline constexpr std::chrono::seconds kHealthyRun{10};

class Backoff {
 public:
  Backoff(std::chrono::milliseconds first, std::chrono::milliseconds max) : first_(first), max_(max) {}

  // The delay before the next start: first * 2^(crashes so far), capped at max, ±20 % jitter.
  // `started`: the worker that crashed had started (ready, and up kStartupGrace or
  // more). The first crash in a row of such a worker is restarted at once, so a worker
  // that was serving is replaced in milliseconds; the delays begin with the second.
  std::chrono::milliseconds next(std::mt19937_64& rng, bool started = false);
  void reset() {
    consecutive_ = 0;
    first_was_free_ = false;
  }
  // A reload changed restart_delay/restart_delay_max: the count of crashes carries on.
  void set_delays(std::chrono::milliseconds first, std::chrono::milliseconds max) {
    first_ = first;
    max_ = max;
  }
  unsigned consecutive() const { return consecutive_; }
  bool first_was_free() const { return first_was_free_; }
  // A binary upgrade: the count of crashes as the previous image left it.
  void restore(unsigned consecutive, bool first_was_free) {
    consecutive_ = consecutive;
    first_was_free_ = first_was_free && consecutive > 0;
  }

 private:
  std::chrono::milliseconds first_;
  std::chrono::milliseconds max_;
  unsigned consecutive_ = 0;
  bool first_was_free_ = false;  // the first crash in this row was restarted at once
};

// A worker that exits this soon after it started never really started, even if it was
// ready (with ready = "exec" every worker is ready at exec, so only the time tells).
inline constexpr std::chrono::seconds kStartupGrace{1};
// The program could not be started (exec or another set-up step failed) this many times
// in a row: a broken deploy, so the pool fails at once instead of retrying for ever.
inline constexpr unsigned kSpawnFailuresInARow = 3;

// True for an exit of a worker that never became ready, or ran less than kStartupGrace.
constexpr bool never_started(bool was_ready, std::chrono::milliseconds uptime) {
  return !was_ready || uptime < kStartupGrace;
}

// Starts of one slot in a row that came to nothing (a spawn that failed, a worker that
// never started), counted whatever the backoff delays: with the default delays ten
// crashes take longer than flap_window, so the window alone never sees them.
class StartStreak {
 public:
  // Records how a worker of the slot ended; returns the streak's length after it.
  unsigned record(bool came_to_nothing) {
    streak_ = came_to_nothing ? streak_ + 1 : 0;
    return streak_;
  }
  void reset() { streak_ = 0; }
  unsigned length() const { return streak_; }
  // A binary upgrade: the streak as the previous image left it.
  void restore(unsigned length) { streak_ = length; }

 private:
  unsigned streak_ = 0;
};

// More than `limit` crashes within `window` means the pool is flapping.
class FlapDetector {
 public:
  FlapDetector(int limit, std::chrono::milliseconds window) : limit_(limit), window_(window) {}

  // Records one crash at `now`; returns true when the pool is now flapping.
  bool record(Clock::time_point now);
  void clear() { crashes_.clear(); }
  // A reload changed flap_restarts/flap_window: crashes already seen still count.
  void set_limits(int limit, std::chrono::milliseconds window) {
    limit_ = limit;
    window_ = window;
  }
  std::size_t recent() const { return crashes_.size(); }
  // The crashes still counted, oldest first (a binary upgrade carries them).
  const std::deque<Clock::time_point>& history() const { return crashes_; }
  // A binary upgrade: the previous image's history, oldest first, in place of this one's.
  void restore(const std::deque<Clock::time_point>& crashes) { crashes_ = crashes; }

 private:
  int limit_;
  std::chrono::milliseconds window_;
  std::deque<Clock::time_point> crashes_;
};

}  // namespace forkpool::supervisor
