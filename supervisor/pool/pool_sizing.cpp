// SPDX-License-Identifier: Apache-2.0
#include "supervisor/pool/pool_sizing.hpp"

#include <algorithm>

namespace forkpool::supervisor {

int spare_wanted(const SizingCounts& c) {
  if (c.min == 0 && c.busy == 0 && c.waiting == 0) return 0;
  return c.spare;
}

Growth growth(const SizingCounts& c) {
  if (c.held || c.target >= c.max) return {};
  if (c.target < c.min) return {c.min - c.target, ScaleReason::BelowMin};
  const int ready_soon = c.idle + c.starting;
  const int for_waiting = std::max(0, c.waiting - ready_soon);
  const int spare_missing = std::max(0, spare_wanted(c) - std::max(0, ready_soon - c.waiting));
  const int add = std::min(c.max - c.target, for_waiting + spare_missing);
  if (add <= 0) return {};
  return {add, for_waiting > 0 ? ScaleReason::Waiting : ScaleReason::SpareShort};
}

bool may_retire(const SizingCounts& c) {
  if (c.target <= c.min || c.idle <= 0 || c.waiting > 0) return false;
  // After retiring one, the idle ones left must still cover the spares. The spares wanted are
  // judged as if the retired one were gone (an on-demand pool at rest wants none).
  return c.idle - 1 >= spare_wanted(c);
}

int SpawnRate::allow(Clock::time_point now, int wanted) {
  if (wanted <= 0) {
    rate_ = kInitialSpawnRate;
    used_ = 0;
    short_ = false;
    open_ = false;
    return 0;
  }
  if (!open_ || now >= window_start_ + kSpawnWindow) {
    // The need went on through a window that ran short: twice as many this second.
    if (open_ && short_) rate_ = std::min(kMaxSpawnRate, rate_ * 2);
    window_start_ = now;
    used_ = 0;
    short_ = false;
    open_ = true;
  }
  const int n = std::min(wanted, rate_ - used_);
  used_ += n;
  if (n < wanted) short_ = true;
  return n;
}

}  // namespace forkpool::supervisor
