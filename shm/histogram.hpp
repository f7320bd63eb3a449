// SPDX-License-Identifier: Apache-2.0
#pragma once
// Latency histograms with round bounds: the master records into a HistogramBlock in shared
// memory, readers copy it into a HistogramSnapshot and compute percentiles from the copy.

#include <array>
#include <cstdint>

#include "shm/layout.hpp"

namespace forkpool::shm {

// Upper bounds of the buckets in microseconds, inclusive (Prometheus `le`): 100 us,
// 250 us, 500 us, 1 ms, 2.5 ms, ... 10 s, 25 s, 60 s. The last bucket,
// kHistogramBuckets - 1, holds everything above 60 s. Changing them changes what the
// numbers in the scoreboard mean: bump kLayoutVersion.
inline constexpr std::array<std::uint64_t, kHistogramBuckets - 1> kHistogramBoundsUs = {
    100,     250,     500,     1'000,     2'500,     5'000,      10'000,     25'000,     50'000,
    100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000, 25'000'000, 60'000'000};

// The bucket a sample falls in: the first whose bound is >= us (exact integer compares).
std::size_t histogram_bucket(std::uint64_t us);
// Largest value a bucket holds (the upper bound reported for a percentile in it);
// UINT64_MAX for the last.
std::uint64_t histogram_bucket_max(std::size_t bucket);

// Master only: one writer, so load+store is enough and cheaper than fetch_add.
void histogram_record(HistogramBlock& h, std::uint64_t us);

struct HistogramSnapshot {
  std::array<std::uint64_t, kHistogramBuckets> buckets{};
  std::uint64_t count = 0;
  std::uint64_t sum_us = 0;
  std::uint64_t max_us = 0;
};

struct Percentiles {
  std::uint64_t p50_us = 0;
  std::uint64_t p90_us = 0;
  std::uint64_t p99_us = 0;
  std::uint64_t max_us = 0;
  std::uint64_t count = 0;
};

// Relaxed copy; call inside the pool's seqlock read for a consistent one.
HistogramSnapshot histogram_copy(const HistogramBlock& h);

// The value at rank ceil(q * count), reported as the upper bound of its bucket but never
// above the recorded maximum: never below the exact answer, and in the same bucket.
std::uint64_t histogram_quantile(const HistogramSnapshot& s, double q);
Percentiles histogram_percentiles(const HistogramSnapshot& s);

}  // namespace forkpool::shm
