// SPDX-License-Identifier: Apache-2.0
#pragma once
// Clock readings as the scoreboard stores them: signed nanoseconds since the clock's
// epoch, so they fit the shared layout's fixed-width fields and subtract safely.

#include <time.h>

#include <cstdint>

namespace forkpool::base {

inline std::int64_t clock_ns(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline std::int64_t monotonic_ns() { return clock_ns(CLOCK_MONOTONIC); }
inline std::int64_t realtime_ns() { return clock_ns(CLOCK_REALTIME); }

}  // namespace forkpool::base
