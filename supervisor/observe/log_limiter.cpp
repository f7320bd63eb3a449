// SPDX-License-Identifier: Apache-2.0
#include "supervisor/observe/log_limiter.hpp"

namespace forkpool::log {

bool RepeatPolicy::admit(Clock::time_point now) {
  ++total_;
  if (!open_) {
    open_ = true;
    start_ = now;
    logged_ = 0;
  } else if (suppressed_ == 0 && now >= start_ + interval_) {
    // A whole window went by without a flood: this is news again.
    start_ = now;
    logged_ = 0;
  }
  if (logged_ < burst_) {
    ++logged_;
    return true;
  }
  ++suppressed_;
  return false;
}

std::uint64_t RepeatPolicy::flush(Clock::time_point now) {
  const std::uint64_t n = suppressed_;
  suppressed_ = 0;
  if (n == 0) {
    open_ = false;
    return 0;
  }
  // Still flooding: the next window reports a sum only, no new burst.
  start_ = now;
  logged_ = burst_;
  return n;
}

RepeatedWarning::RepeatedWarning(uv_loop_t* loop, std::string event, std::size_t burst,
                                 std::chrono::milliseconds interval)
    : event_(std::move(event)), policy_(burst, interval), timer_(loop) {}

RepeatedWarning::~RepeatedWarning() {
  flush();
}

bool RepeatedWarning::note(std::string_view subject) {
  const auto now = RepeatPolicy::Clock::now();
  if (policy_.admit(now)) return true;
  if (subject_ != subject) subject_ = std::string(subject);
  if (!timer_.active()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(policy_.window_end() - now);
    timer_.start(left, [this] { on_window_end(); });
  }
  return false;
}

void RepeatedWarning::on_window_end() {
  if (summarize() == 0) return;  // a quiet window: the next occurrence is logged in full
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(policy_.window_end() -
                                                                 RepeatPolicy::Clock::now());
  timer_.start(left, [this] { on_window_end(); });
}

void RepeatedWarning::flush() {
  timer_.stop();
  summarize();
}

std::uint64_t RepeatedWarning::summarize() {
  const auto now = RepeatPolicy::Clock::now();
  const auto since = policy_.window_start();
  const std::uint64_t n = policy_.flush(now);
  if (n > 0) {
    const double secs = std::chrono::duration<double>(now - since).count();
    at(spdlog::level::warn, event_, "{}: {} more suppressed in the last {:.1f}s", subject_, n,
       secs);
  }
  return n;
}

}  // namespace forkpool::log
