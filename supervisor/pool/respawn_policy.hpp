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
  std::chrono::milliseconds next(std::mt19937_64& rng);
  void reset() { consecutive_ = 0; }
  // A reload changed restart_delay/restart_delay_max: the count of crashes carries on.
  void set_delays(std::chrono::milliseconds first, std::chrono::milliseconds max) {
    first_ = first;
    max_ = max;
  }
  unsigned consecutive() const { return consecutive_; }

 private:
  std::chrono::milliseconds first_;
  std::chrono::milliseconds max_;
  unsigned consecutive_ = 0;
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

 private:
  int limit_;
  std::chrono::milliseconds window_;
  std::deque<Clock::time_point> crashes_;
};

}  // namespace forkpool::supervisor
