// SPDX-License-Identifier: Apache-2.0
#include "supervisor/pool/respawn_policy.hpp"

#include <algorithm>

namespace forkpool::supervisor {

std::chrono::milliseconds Backoff::next(std::mt19937_64& rng, bool started) {
  if (consecutive_ == 0 && started) {
    ++consecutive_;
    first_was_free_ = true;
    return std::chrono::milliseconds(0);
  }
  // Doubling stops once it passes max, so the shift can never overflow.
  auto delay = first_;
  const unsigned doublings = consecutive_ - (first_was_free_ ? 1 : 0);
  for (unsigned i = 0; i < doublings && delay < max_; ++i) delay *= 2;
  delay = std::min(delay, max_);
  ++consecutive_;
  if (delay.count() == 0) return delay;
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  const auto jittered = static_cast<std::int64_t>(static_cast<double>(delay.count()) * jitter(rng));
  return std::chrono::milliseconds(std::max<std::int64_t>(1, jittered));
}

bool FlapDetector::record(Clock::time_point now) {
  crashes_.push_back(now);
  while (!crashes_.empty() && now - crashes_.front() > window_) crashes_.pop_front();
  return static_cast<int>(crashes_.size()) > limit_;
}

}  // namespace forkpool::supervisor
