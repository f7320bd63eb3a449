// SPDX-License-Identifier: Apache-2.0
#pragma once
// Steady-clock instants in the upgrade state: CLOCK_MONOTONIC nanoseconds (what
// std::chrono::steady_clock reads on Linux), which an execve does not reset.

#include <chrono>
#include <cstdint>

namespace forkpool::supervisor::upgrade {

using SteadyTime = std::chrono::steady_clock::time_point;

inline std::int64_t to_ns(SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

inline SteadyTime from_ns(std::int64_t ns) {
  return SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace forkpool::supervisor::upgrade
