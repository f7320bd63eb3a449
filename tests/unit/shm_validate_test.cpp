// SPDX-License-Identifier: Apache-2.0
// Validation of worker-written fields, and snapshots over a heap-buffer scoreboard written
// through the C worker API.

#include <catch2/catch.hpp>
#include <cstring>
#include <new>
#include <random>
#include <vector>

#include "shm/layout.hpp"
#include "shm/reader.hpp"
#include "shm/region.hpp"
#include "shm/slot_writer.h"
#include "shm/snapshot.hpp"

namespace shm = forkpool::shm;

namespace {

constexpr std::int64_t kStart = 1'000;
constexpr std::int64_t kNow = 1'000'000;

shm::RawActivity raw(std::uint32_t state, std::uint32_t in_flight, std::uint64_t handled,
                     std::int64_t since) {
  return {state, in_flight, handled, since};
}

// A whole scoreboard in heap memory: the main region plus one activity "page" per slot.
class HeapScoreboard {
 public:
  HeapScoreboard(std::uint32_t pools, std::uint32_t slots) : pages_(slots) {
    const auto g = shm::region_geometry(pools, slots);
    region_ = static_cast<std::byte*>(::operator new (g.size, std::align_val_t{64}));
    std::memset(region_, 0, g.size);
    shm::format_region(region_, {pools, slots, 4096, 1, 0, 0});
    std::vector<const shm::SlotActivity*> views;
    for (auto& p : pages_) views.push_back(new (&p) shm::SlotActivity{});
    reader_ = shm::Reader(region_, std::move(views));
  }
  ~HeapScoreboard() { ::operator delete (region_, std::align_val_t{64}); }
  HeapScoreboard(const HeapScoreboard&) = delete;
  HeapScoreboard& operator=(const HeapScoreboard&) = delete;

  shm::SlotRecord& record(std::uint32_t i) {
    const auto g = shm::region_geometry(reader_.pool_count(), reader_.slot_count());
    return *std::launder(reinterpret_cast<shm::SlotRecord*>(region_ + g.slots_offset) + i);
  }
  void* page(std::uint32_t i) { return &pages_[i]; }
  shm::Reader& reader() { return reader_; }

 private:
  std::byte* region_ = nullptr;
  std::vector<shm::SlotActivity> pages_;
  shm::Reader reader_;
};

}  // namespace

TEST_CASE("shm honest activity passes validation unchanged", "[shm][validate]") {
  shm::ActivityHistory h;
  auto a = shm::validate_activity(raw(FP_SLOT_STATE_BUSY, 2, 10, 5'000), kStart, kNow, h);
  CHECK(a.anomalies == 0);
  CHECK(a.state == shm::WorkerState::Busy);
  CHECK(a.in_flight == 2);
  CHECK(a.connections_handled == 10);
  CHECK(a.busy_since_ns == 5'000);
  a = shm::validate_activity(raw(FP_SLOT_STATE_IDLE, 0, 12, 0), kStart, kNow, h);
  CHECK(a.anomalies == 0);
  CHECK(a.state == shm::WorkerState::Idle);
  // A fresh, all-zero page is a worker that has not written yet, not an anomaly.
  shm::ActivityHistory fresh;
  a = shm::validate_activity(raw(0, 0, 0, 0), kStart, kNow, fresh);
  CHECK(a.anomalies == 0);
  CHECK(a.state == shm::WorkerState::Starting);
}

TEST_CASE("shm hostile activity values are flagged and clamped", "[shm][validate]") {
  shm::ActivityHistory h;
  SECTION("state out of range") {
    const auto a = shm::validate_activity(raw(77, 0, 0, 0), kStart, kNow, h);
    CHECK(a.anomalies & shm::kAnomalyBadState);
    CHECK(a.state == shm::WorkerState::Idle);
    const auto b = shm::validate_activity(raw(0xffffffffu, 3, 0, 2'000), kStart, kNow, h);
    CHECK(b.state == shm::WorkerState::Busy);
  }
  SECTION("in flight out of range") {
    const auto a =
        shm::validate_activity(raw(FP_SLOT_STATE_BUSY, 0xffffffffu, 0, 2'000), kStart, kNow, h);
    CHECK(a.anomalies & shm::kAnomalyInFlightRange);
    CHECK(a.in_flight == shm::kMaxInFlight);
  }
  SECTION("timestamp in the future") {
    const auto a = shm::validate_activity(raw(FP_SLOT_STATE_BUSY, 1, 0, kNow + 1), kStart, kNow, h);
    CHECK(a.anomalies == shm::kAnomalyFutureTime);
    CHECK(a.busy_since_ns == 0);
  }
  SECTION("timestamp before the worker started, or negative") {
    auto a = shm::validate_activity(raw(FP_SLOT_STATE_BUSY, 1, 0, kStart - 1), kStart, kNow, h);
    CHECK(a.anomalies == shm::kAnomalyPastTime);
    a = shm::validate_activity(raw(FP_SLOT_STATE_BUSY, 1, 0, INT64_MIN), kStart, kNow, h);
    CHECK(a.anomalies == shm::kAnomalyPastTime);
    CHECK(a.busy_since_ns == 0);
  }
  SECTION("counter going backwards reports the highest value seen") {
    shm::validate_activity(raw(FP_SLOT_STATE_IDLE, 0, 500, 0), kStart, kNow, h);
    const auto a = shm::validate_activity(raw(FP_SLOT_STATE_IDLE, 0, 3, 0), kStart, kNow, h);
    CHECK(a.anomalies == shm::kAnomalyCounterBackwards);
    CHECK(a.connections_handled == 500);
    const auto b = shm::validate_activity(raw(FP_SLOT_STATE_IDLE, 0, 501, 0), kStart, kNow, h);
    CHECK(b.anomalies == 0);
    CHECK(b.connections_handled == 501);
  }
  SECTION("busy without connections, idle with a start time") {
    auto a = shm::validate_activity(raw(FP_SLOT_STATE_BUSY, 0, 0, 2'000), kStart, kNow, h);
    CHECK(a.anomalies == shm::kAnomalyInconsistent);
    a = shm::validate_activity(raw(FP_SLOT_STATE_IDLE, 0, 0, 2'000), kStart, kNow, h);
    CHECK(a.anomalies == shm::kAnomalyInconsistent);
  }
  SECTION("no consistent read falls back to the last good values") {
    shm::validate_activity(raw(FP_SLOT_STATE_BUSY, 1, 9, 2'000), kStart, kNow, h);
    const auto a = shm::validate_activity(std::nullopt, kStart, kNow, h);
    CHECK(a.anomalies == shm::kAnomalyNoConsistentRead);
    CHECK(a.connections_handled == 9);
    CHECK(a.busy_since_ns == 2'000);
  }
  CHECK_FALSE(shm::describe_anomalies(shm::kAnomalyBadState | shm::kAnomalyFutureTime).empty());
}

TEST_CASE("shm random activity never yields out-of-range values", "[shm][validate]") {
  std::mt19937_64 rng(7);
  shm::ActivityHistory h;
  std::uint64_t last_handled = 0;
  for (int i = 0; i < 100'000; ++i) {
    const shm::RawActivity r{static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng()),
                             rng(), static_cast<std::int64_t>(rng())};
    const auto a = shm::validate_activity(r, kStart, kNow, h);
    REQUIRE(shm::to_string(a.state) != "unknown");
    REQUIRE(a.in_flight <= shm::kMaxInFlight);
    REQUIRE(a.busy_since_ns <= kNow);
    REQUIRE((a.busy_since_ns == 0 || a.busy_since_ns >= kStart));
    REQUIRE(a.connections_handled >= last_handled);
    last_handled = a.connections_handled;
  }
}

TEST_CASE("shm reader combines master lifecycle with worker activity", "[shm][validate]") {
  HeapScoreboard sb(1, 2);
  fp_slot_writer w;
  fp_slot_writer_bind(&w, sb.page(0));
  auto& rec = sb.record(0);
  rec.epoch.store(1);
  rec.state.store(static_cast<std::uint32_t>(shm::WorkerState::Starting));
  rec.start_time_ns.store(1);

  // A worker cannot promote itself: busy on its page, but the master has not seen it ready.
  fp_slot_writer_set_ready(&w);
  fp_slot_writer_mark_busy(&w, 100);
  CHECK(sb.reader().read_worker(0).state == shm::WorkerState::Starting);

  rec.state.store(static_cast<std::uint32_t>(shm::WorkerState::Idle));  // master: ready
  auto s = sb.reader().read_worker(0);
  CHECK(s.state == shm::WorkerState::Busy);
  CHECK(s.in_flight == 1);
  CHECK(s.busy_since_ns == 100);
  fp_slot_writer_mark_busy(&w, 200);  // a second overlapping connection keeps the first time
  fp_slot_writer_mark_idle(&w);
  s = sb.reader().read_worker(0);
  CHECK(s.state == shm::WorkerState::Busy);
  CHECK(s.busy_since_ns == 100);
  CHECK(s.connections_handled == 1);
  fp_slot_writer_mark_idle(&w);
  s = sb.reader().read_worker(0);
  CHECK(s.state == shm::WorkerState::Idle);
  CHECK(s.connections_handled == 2);
  CHECK(s.busy_since_ns == 0);
  CHECK(s.anomalies == 0);

  rec.state.store(static_cast<std::uint32_t>(shm::WorkerState::Stopping));
  CHECK(sb.reader().read_worker(0).state == shm::WorkerState::Stopping);

  // A page left odd forever (writer died mid-update, or hostile) cannot hang the reader.
  rec.state.store(static_cast<std::uint32_t>(shm::WorkerState::Idle));
  auto* page = static_cast<shm::SlotActivity*>(sb.page(0));
  page->seq.store(7);
  s = sb.reader().read_worker(0);
  CHECK(s.anomalies == shm::kAnomalyNoConsistentRead);
  CHECK(s.connections_handled == 2);

  // A new worker in the slot (epoch bump) starts a fresh history: its counter may restart.
  page->seq.store(8);
  page->connections_handled.store(0);
  rec.epoch.store(2);
  s = sb.reader().read_worker(0);
  CHECK(s.epoch == 2);
  CHECK(s.connections_handled == 0);
  CHECK((s.anomalies & shm::kAnomalyCounterBackwards) == 0);

  // The untouched slot reads as empty.
  CHECK(sb.reader().read_worker(1).state == shm::WorkerState::Empty);
  const auto snap = sb.reader().snapshot();
  CHECK(snap.workers.size() == 2);
  CHECK(snap.pools.size() == 1);
  CHECK(snap.master_pid == 1);
}

TEST_CASE("shm reader marks pages of an earlier epoch as stale", "[shm][validate]") {
  HeapScoreboard sb(1, 1);
  sb.record(0).epoch.store(3);
  sb.record(0).state.store(static_cast<std::uint32_t>(shm::WorkerState::Idle));
  sb.reader().set_page_epochs({2});
  const auto s = sb.reader().read_worker(0);
  CHECK(s.anomalies == shm::kAnomalyStalePage);
  CHECK(s.epoch == 3);
}

TEST_CASE("shm pages that never settle are reported and recover", "[shm][validate]") {
  HeapScoreboard sb(1, 64);
  for (std::uint32_t i = 0; i < 64; ++i) {
    sb.record(i).epoch.store(1);
    sb.record(i).state.store(static_cast<std::uint32_t>(shm::WorkerState::Idle));
    static_cast<shm::SlotActivity*>(sb.page(i))->seq.store(1);  // odd forever
  }
  for (int round = 0; round < 3; ++round) {
    for (const auto& w : sb.reader().snapshot().workers) {
      REQUIRE(w.anomalies == shm::kAnomalyNoConsistentRead);
      REQUIRE(w.state == shm::WorkerState::Idle);
    }
  }
  fp_slot_writer w;
  fp_slot_writer_bind(&w, sb.page(5));  // a writer resuming makes the counter even again
  fp_slot_writer_set_ready(&w);
  const auto s = sb.reader().read_worker(5);
  CHECK(s.anomalies == 0);
  CHECK(s.state == shm::WorkerState::Idle);
}
