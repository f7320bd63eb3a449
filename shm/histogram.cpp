// SPDX-License-Identifier: Apache-2.0
#include "shm/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace forkpool::shm {

namespace {
constexpr std::size_t kLastBucket = kHistogramBuckets - 1;

constexpr bool strictly_increasing() {
  for (std::size_t i = 1; i < kHistogramBoundsUs.size(); ++i)
    if (kHistogramBoundsUs[i] <= kHistogramBoundsUs[i - 1]) return false;
  return true;
}
static_assert(strictly_increasing(), "histogram bounds must increase");
}  // namespace

std::size_t histogram_bucket(std::uint64_t us) {
  // A binary search over 18 bounds: five compares, no division, no floating point.
  const auto it = std::lower_bound(kHistogramBoundsUs.begin(), kHistogramBoundsUs.end(), us);
  return static_cast<std::size_t>(it - kHistogramBoundsUs.begin());
}

std::uint64_t histogram_bucket_max(std::size_t bucket) {
  if (bucket >= kLastBucket) return UINT64_MAX;
  return kHistogramBoundsUs[bucket];
}

void histogram_record(HistogramBlock& h, std::uint64_t us) {
  auto& b = h.buckets[histogram_bucket(us)];
  b.store(b.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  h.count.store(h.count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  h.sum_us.store(h.sum_us.load(std::memory_order_relaxed) + us, std::memory_order_relaxed);
  if (us > h.max_us.load(std::memory_order_relaxed)) {
    h.max_us.store(us, std::memory_order_relaxed);
  }
}

HistogramSnapshot histogram_copy(const HistogramBlock& h) {
  HistogramSnapshot s;
  for (std::size_t i = 0; i < kHistogramBuckets; ++i) {
    s.buckets[i] = h.buckets[i].load(std::memory_order_relaxed);
  }
  s.count = h.count.load(std::memory_order_relaxed);
  s.sum_us = h.sum_us.load(std::memory_order_relaxed);
  s.max_us = h.max_us.load(std::memory_order_relaxed);
  return s;
}

std::uint64_t histogram_quantile(const HistogramSnapshot& s, double q) {
  // Count from the buckets rather than trusting `count`, so a snapshot stays
  // self-consistent even if it was taken without the seqlock.
  std::uint64_t total = 0;
  for (const auto b : s.buckets) total += b;
  if (total == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const auto rank = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total))));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kHistogramBuckets; ++i) {
    seen += s.buckets[i];
    if (seen >= rank) return std::min(histogram_bucket_max(i), s.max_us);
  }
  return s.max_us;
}

Percentiles histogram_percentiles(const HistogramSnapshot& s) {
  return {histogram_quantile(s, 0.50), histogram_quantile(s, 0.90), histogram_quantile(s, 0.99),
          s.max_us, s.count};
}

}  // namespace forkpool::shm
