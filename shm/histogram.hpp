#pragma once
// Log-spaced latency histograms: the master records into a HistogramBlock in shared memory,
// readers copy it into a HistogramSnapshot and compute percentiles from the copy.

#include <array>
#include <cstdint>

#include "shm/layout.hpp"

namespace forkpool::shm {

// Bucket k (1..32) holds [2^(k-1), 2^k) us; 0 holds 0 us; the last holds >= 2^32 us.
std::size_t histogram_bucket(std::uint64_t us);
// Largest value a bucket holds (the upper bound reported for a percentile in it).
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
// above the recorded maximum: within a factor of two of the exact answer, never below it.
std::uint64_t histogram_quantile(const HistogramSnapshot& s, double q);
Percentiles histogram_percentiles(const HistogramSnapshot& s);

}  // namespace forkpool::shm
