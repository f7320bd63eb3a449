// SPDX-License-Identifier: Apache-2.0
// Unit tests of the dynamic pool's sizing decision and spawn rate (pool_sizing.hpp).

#include <catch2/catch.hpp>

#include "supervisor/pool/pool_sizing.hpp"

using namespace forkpool::supervisor;
using namespace std::chrono_literals;

namespace {

SizingCounts counts(int min, int max, int spare) {
  SizingCounts c;
  c.min = min;
  c.max = max;
  c.spare = spare;
  return c;
}

}  // namespace

TEST_CASE("pool sizing: a pool below min_workers grows to it", "[sizing]") {
  SizingCounts c = counts(2, 8, 1);
  const Growth g = growth(c);
  CHECK(g.add == 2);
  CHECK(g.reason == ScaleReason::BelowMin);
}

TEST_CASE("pool sizing: spare idle workers are kept, counting the ones starting", "[sizing]") {
  SizingCounts c = counts(1, 8, 2);
  c.target = 2;
  c.idle = 1;
  c.busy = 1;
  Growth g = growth(c);
  CHECK(g.add == 1);
  CHECK(g.reason == ScaleReason::SpareShort);
  c.target = 3;
  c.starting = 1;
  CHECK(growth(c).add == 0);
  c.starting = 0;
  c.idle = 2;
  CHECK(growth(c).add == 0);
}

TEST_CASE("pool sizing: waiting connections start one worker each, many at once, up to max", "[sizing]") {
  SizingCounts c = counts(2, 32, 1);
  c.target = 2;
  c.busy = 2;
  c.waiting = 30;
  Growth g = growth(c);
  CHECK(g.reason == ScaleReason::Waiting);
  CHECK(g.add == 30);  // 30 for the queue; the spare would be one past max
  c.waiting = 5;
  CHECK(growth(c).add == 6);  // 5 for the queue and the spare
  c.target = 8;
  c.starting = 6;
  CHECK(growth(c).add == 0);  // already on their way
  c.target = 32;
  c.starting = 0;
  c.busy = 32;
  c.waiting = 100;
  CHECK(growth(c).add == 0);  // at max_workers
}

TEST_CASE("pool sizing: a held pool does not grow", "[sizing]") {
  SizingCounts c = counts(1, 8, 1);
  c.target = 1;
  c.busy = 1;
  c.waiting = 4;
  c.held = true;
  CHECK(growth(c).add == 0);
}

TEST_CASE("pool sizing: an on-demand pool keeps no spare at rest, spares while in use", "[sizing]") {
  SizingCounts c = counts(0, 4, 1);
  CHECK(growth(c).add == 0);
  c.waiting = 1;
  const Growth first = growth(c);
  CHECK(first.add == 2);  // one for the connection, one spare
  CHECK(first.reason == ScaleReason::Waiting);
  c = counts(0, 4, 1);
  c.target = 1;
  c.idle = 1;
  CHECK(may_retire(c));  // at rest it goes back to zero
  c.target = 2;
  c.idle = 1;
  c.busy = 1;
  CHECK_FALSE(may_retire(c));  // the spare stays while one is busy
}

TEST_CASE("pool sizing: retire down to min and never below the spare idle ones", "[sizing]") {
  SizingCounts c = counts(1, 8, 1);
  c.target = 3;
  c.idle = 3;
  CHECK(may_retire(c));
  c.target = 2;
  c.idle = 1;
  c.busy = 1;
  CHECK_FALSE(may_retire(c));  // the last idle one is the spare
  c.target = 1;
  c.idle = 1;
  c.busy = 0;
  CHECK_FALSE(may_retire(c));  // at min
  c = counts(1, 8, 3);
  c.target = 3;
  c.idle = 3;
  CHECK_FALSE(may_retire(c));  // spare_workers above min keeps three
  c = counts(1, 8, 0);
  c.target = 2;
  c.idle = 1;
  c.busy = 1;
  c.waiting = 1;
  CHECK_FALSE(may_retire(c));  // something waits
  c.waiting = 0;
  CHECK(may_retire(c));
}

TEST_CASE("spawn rate: the allowance doubles each second the need goes on, and starts over", "[sizing]") {
  SpawnRate rate;
  const auto t0 = SpawnRate::Clock::time_point{} + 100s;
  CHECK(rate.allow(t0, 10) == 10);
  CHECK(rate.allow(t0 + 10ms, kInitialSpawnRate) == kInitialSpawnRate - 10);
  CHECK(rate.allow(t0 + 20ms, 5) == 0);  // this second's allowance is spent
  CHECK(rate.next_window() == t0 + kSpawnWindow);
  CHECK(rate.allow(t0 + 1s, 1000) == 2 * kInitialSpawnRate);
  CHECK(rate.allow(t0 + 2s, 1000) == 4 * kInitialSpawnRate);
  // A second whose allowance was enough does not double the next one.
  CHECK(rate.allow(t0 + 3s, 1) == 1);
  CHECK(rate.rate() == 8 * kInitialSpawnRate);
  CHECK(rate.allow(t0 + 4s, 1) == 1);
  CHECK(rate.rate() == 8 * kInitialSpawnRate);
  // The need met: back to the start.
  CHECK(rate.allow(t0 + 5s, 0) == 0);
  CHECK(rate.rate() == kInitialSpawnRate);
  CHECK(rate.allow(t0 + 5s, 1000) == kInitialSpawnRate);
}

TEST_CASE("spawn rate: never past the ceiling", "[sizing]") {
  SpawnRate rate;
  auto t = SpawnRate::Clock::time_point{} + 1s;
  for (int i = 0; i < 20; ++i, t += 1s) rate.allow(t, 100000);
  CHECK(rate.rate() == kMaxSpawnRate);
}
