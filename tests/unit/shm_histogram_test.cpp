// SPDX-License-Identifier: Apache-2.0
// Histogram buckets and percentiles against an exact reference from sorted samples.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "shm/histogram.hpp"

namespace shm = forkpool::shm;

TEST_CASE("shm histogram buckets have round bounds on a 1-2.5-5 ladder", "[shm][histogram]") {
  REQUIRE(shm::kHistogramBoundsUs.size() + 1 == shm::kHistogramBuckets);
  CHECK(shm::kHistogramBoundsUs.front() == 100);
  CHECK(shm::kHistogramBoundsUs.back() == 60'000'000);
  // Every bound but the last is 1, 2.5 or 5 times a power of ten.
  for (std::size_t k = 0; k + 1 < shm::kHistogramBoundsUs.size(); ++k) {
    std::uint64_t v = shm::kHistogramBoundsUs[k];
    while (v % 10 == 0 && v > 5) v /= 10;
    INFO("bound " << shm::kHistogramBoundsUs[k]);
    CHECK((v == 1 || v == 25 || v == 5));
  }
  // A bound is inclusive (Prometheus `le`), the next value belongs to the next bucket.
  CHECK(shm::histogram_bucket(0) == 0);
  CHECK(shm::histogram_bucket(100) == 0);
  CHECK(shm::histogram_bucket(101) == 1);
  CHECK(shm::histogram_bucket(1'000) == 3);
  CHECK(shm::histogram_bucket(1'001) == 4);
  CHECK(shm::histogram_bucket(1'500) == 4);
  CHECK(shm::histogram_bucket(60'000'000) == shm::kHistogramBuckets - 2);
  CHECK(shm::histogram_bucket(60'000'001) == shm::kHistogramBuckets - 1);
  CHECK(shm::histogram_bucket(UINT64_MAX) == shm::kHistogramBuckets - 1);
  CHECK(shm::histogram_bucket_max(shm::kHistogramBuckets - 1) == UINT64_MAX);
  for (std::size_t b = 0; b + 1 < shm::kHistogramBuckets; ++b) {
    CHECK(shm::histogram_bucket(shm::histogram_bucket_max(b)) == b);
    CHECK(shm::histogram_bucket(shm::histogram_bucket_max(b) + 1) == b + 1);
  }
}

TEST_CASE("shm histogram records every sample exactly once, sum and max exact", "[shm][histogram]") {
  auto block = std::make_unique<shm::HistogramBlock>();
  const std::vector<std::uint64_t> samples = {0, 100, 101, 999, 1'000, 2'500, 59'999'999, 60'000'000, 60'000'001};
  std::uint64_t sum = 0;
  for (const auto v : samples) {
    shm::histogram_record(*block, v);
    sum += v;
  }
  const auto snap = shm::histogram_copy(*block);
  CHECK(snap.count == samples.size());
  CHECK(snap.sum_us == sum);
  CHECK(snap.max_us == 60'000'001);
  CHECK(snap.buckets[0] == 2);   // 0, 100
  CHECK(snap.buckets[1] == 1);   // 101
  CHECK(snap.buckets[3] == 2);   // 999, 1000
  CHECK(snap.buckets[4] == 1);   // 2500
  CHECK(snap.buckets[shm::kHistogramBuckets - 2] == 2);
  CHECK(snap.buckets[shm::kHistogramBuckets - 1] == 1);
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
    // Never below the truth, never outside the truth's bucket.
    CHECK(got >= exact);
    CHECK(shm::histogram_bucket(got) == shm::histogram_bucket(exact));
    CHECK(got <= samples.back());
  }
  const auto p = shm::histogram_percentiles(snap);
  CHECK(p.p50_us <= p.p90_us);
  CHECK(p.p90_us <= p.p99_us);
  CHECK(p.p99_us <= p.max_us);
}
