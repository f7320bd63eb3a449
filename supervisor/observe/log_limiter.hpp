// SPDX-License-Identifier: Apache-2.0
#pragma once
// Repeated warnings from one source (one worker's malformed channel records, one uid's
// refused control connections): the first few are logged in full, the rest are counted
// and summed up in one line per interval, so a misbehaving peer cannot flood the log
// (a worker sending garbage once produced two million lines in six seconds).

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "supervisor/observe/log.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::log {

// The policy alone, on the caller's clock, so it can be tested without a loop.
// A window opens at the first occurrence; its first `burst` occurrences are logged, the
// rest suppressed. When a window that suppressed something ends, flush() hands out the
// count and the next window starts without a burst (the flood goes on: only summaries).
// A window that ends with nothing suppressed closes; the next occurrence opens a new
// window with a fresh burst.
class RepeatPolicy {
 public:
  using Clock = std::chrono::steady_clock;

  RepeatPolicy(std::size_t burst, Clock::duration interval) : burst_(burst), interval_(interval) {}

  // True: log this occurrence in full. False: it was counted for the next summary.
  bool admit(Clock::time_point now);
  // When the current window ends (meaningful while suppressed() > 0).
  Clock::time_point window_end() const { return start_ + interval_; }
  // At the end of a window (or when the source goes away): the count to report, now
  // reset. 0 means nothing was suppressed and the window closed.
  std::uint64_t flush(Clock::time_point now);

  std::uint64_t suppressed() const { return suppressed_; }
  std::uint64_t total() const { return total_; }
  Clock::time_point window_start() const { return start_; }

 private:
  std::size_t burst_;
  Clock::duration interval_;
  bool open_ = false;
  Clock::time_point start_{};
  std::size_t logged_ = 0;
  std::uint64_t suppressed_ = 0;
  std::uint64_t total_ = 0;
};

// One source's warnings under a RepeatPolicy, with the timer that writes the summary
// line ("worker web[0] pid 42: 1234 more suppressed in the last 10s") under the same
// event name. Destroying it writes what is still pending.
class RepeatedWarning {
 public:
  static constexpr std::size_t kBurst = 5;
  static constexpr std::chrono::milliseconds kInterval{10'000};

  RepeatedWarning(uv_loop_t* loop, std::string event, std::size_t burst = kBurst,
                  std::chrono::milliseconds interval = kInterval);
  ~RepeatedWarning();
  RepeatedWarning(const RepeatedWarning&) = delete;
  RepeatedWarning& operator=(const RepeatedWarning&) = delete;

  // Logs message() unless suppressed; it is only called when logged, so a flood costs no
  // formatting. `subject` names the source in the summary line. True when not suppressed
  // (for a caller that pairs a later line with this one).
  template <typename MakeMessage>
  bool warn(std::string_view subject, MakeMessage&& message) {
    if (!note(subject)) return false;
    if (enabled(spdlog::level::warn)) write(spdlog::level::warn, event_, message());
    return true;
  }
  // Writes the pending summary now (the source is going away).
  void flush();
  // Every occurrence so far, logged or not.
  std::uint64_t total() const { return policy_.total(); }

 private:
  bool note(std::string_view subject);
  void on_window_end();
  // Logs the summary of the window that ends now; returns its count.
  std::uint64_t summarize();

  std::string event_;
  std::string subject_;  // of the latest occurrence, for the summary
  RepeatPolicy policy_;
  supervisor::Timer timer_;
};

}  // namespace forkpool::log
