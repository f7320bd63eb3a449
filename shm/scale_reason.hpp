// SPDX-License-Identifier: Apache-2.0
#pragma once
// Why a dynamic pool's target last changed: the one list, master-written into each pool
// block (so `forkpoolctl top` can show it) and named in `status` and the scale events.

#include <cstdint>
#include <string_view>

namespace forkpool::shm {

// Stored as a uint32_t in shared memory: the numeric values are part of the layout.
enum class ScaleReason : std::uint32_t {
  None = 0,         // the pool never scaled
  BelowMin = 1,     // fewer workers than min_workers
  SpareShort = 2,   // fewer idle workers than spare_workers
  Waiting = 3,      // connections waiting (the master's queue or a listener's backlog)
  IdleTimeout = 4,  // a worker idle longer than idle_timeout retired
  Operator = 5,     // `scale`, SIGTTIN, SIGTTOU
  Reload = 6,       // a reload moved min_workers or max_workers past the target
};

inline constexpr std::uint32_t kScaleReasonCount = 7;

constexpr std::string_view to_string(ScaleReason reason) {
  switch (reason) {
    case ScaleReason::None: return "";
    case ScaleReason::BelowMin: return "below min_workers";
    case ScaleReason::SpareShort: return "idle workers below spare_workers";
    case ScaleReason::Waiting: return "connections waiting";
    case ScaleReason::IdleTimeout: return "idle longer than idle_timeout";
    case ScaleReason::Operator: return "operator";
    case ScaleReason::Reload: return "reload";
  }
  return "";
}

// An unknown raw value (a newer master's reason) reads as None.
constexpr ScaleReason scale_reason_from_raw(std::uint32_t raw) {
  return raw < kScaleReasonCount ? static_cast<ScaleReason>(raw) : ScaleReason::None;
}

}  // namespace forkpool::shm
