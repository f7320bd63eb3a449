// Histogram buckets and percentiles against an exact reference from sorted samples.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "shm/histogram.hpp"

namespace shm = forkpool::shm;

TEST_CASE("shm histogram buckets are powers of two in microseconds", "[shm][histogram]") {
  CHECK(shm::histogram_bucket(0) == 0);
  CHECK(shm::histogram_bucket(1) == 1);
  CHECK(shm::histogram_bucket(2) == 2);
  CHECK(shm::histogram_bucket(3) == 2);
  CHECK(shm::histogram_bucket(4) == 3);
  CHECK(shm::histogram_bucket(1023) == 10);
  CHECK(shm::histogram_bucket(1024) == 11);
  // One hour lands in a real bucket, not the overflow one.
  CHECK(shm::histogram_bucket(3600ull * 1'000'000) == 32);
  CHECK(shm::histogram_bucket((1ull << 32) - 1) == 32);
  CHECK(shm::histogram_bucket(1ull << 32) == shm::kHistogramBuckets - 1);
  CHECK(shm::histogram_bucket(UINT64_MAX) == shm::kHistogramBuckets - 1);
  for (std::size_t b = 1; b + 1 < shm::kHistogramBuckets; ++b) {
    CHECK(shm::histogram_bucket(shm::histogram_bucket_max(b)) == b);
    CHECK(shm::histogram_bucket(shm::histogram_bucket_max(b) + 1) == b + 1);
  }
}

TEST_CASE("shm histogram of nothing reports zeros", "[shm][histogram]") {
  const shm::HistogramSnapshot s;
  const auto p = shm::histogram_percentiles(s);
  CHECK(p.p50_us == 0);
  CHECK(p.p99_us == 0);
  CHECK(p.max_us == 0);
}

TEST_CASE("shm histogram percentiles match sorted samples within their bucket",
          "[shm][histogram]") {
  auto block = std::make_unique<shm::HistogramBlock>();
  std::mt19937_64 rng(GENERATE(1u, 2u, 3u, 42u));
  const int n = GENERATE(1, 7, 100, 5000);
  // Log-uniform over 0 us .. ~1 h, plus the odd exact zero, like real latencies.
  std::uniform_real_distribution<double> exponent(0.0, 31.7);
  std::vector<std::uint64_t> samples;
  for (int i = 0; i < n; ++i) {
    const std::uint64_t v =
        (rng() % 50 == 0) ? 0 : static_cast<std::uint64_t>(std::exp2(exponent(rng)));
    samples.push_back(v);
    shm::histogram_record(*block, v);
  }
  std::sort(samples.begin(), samples.end());
  const auto snap = shm::histogram_copy(*block);
  CHECK(snap.count == static_cast<std::uint64_t>(n));
  CHECK(snap.max_us == samples.back());

  for (const double q : {0.5, 0.9, 0.99, 1.0}) {
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * n)));
    const std::uint64_t exact = samples[rank - 1];
    const std::uint64_t got = shm::histogram_quantile(snap, q);
    INFO("q=" << q << " n=" << n << " exact=" << exact << " got=" << got);
    // Never below the truth, never outside the truth's bucket (so under 2x above it).
    CHECK(got >= exact);
    CHECK(shm::histogram_bucket(got) == shm::histogram_bucket(exact));
    CHECK(got <= samples.back());
  }
  const auto p = shm::histogram_percentiles(snap);
  CHECK(p.p50_us <= p.p90_us);
  CHECK(p.p90_us <= p.p99_us);
  CHECK(p.p99_us <= p.max_us);
}
