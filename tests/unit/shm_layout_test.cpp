// SPDX-License-Identifier: Apache-2.0
// Layout, version pin and header validation of the scoreboard, on a heap buffer.

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <new>

#include "shm/layout.hpp"
#include "shm/pool_state.hpp"
#include "shm/region.hpp"
#include "shm/version.hpp"
#include "shm/worker_state.hpp"

namespace shm = forkpool::shm;

namespace {

struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t n)
      : size(n), data(static_cast<std::byte*>(::operator new (n, std::align_val_t{4096}))) {
    std::memset(data, 0, n);
  }
  ~AlignedBuffer() { ::operator delete (data, std::align_val_t{4096}); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::size_t size;
  std::byte* data;
};

shm::HeaderSpec spec(std::uint32_t pools, std::uint32_t slots) {
  return {pools, slots, static_cast<std::uint32_t>(shm::system_page_size()), 1234, 1, 2};
}

shm::Header& header(AlignedBuffer& b) {
  return *std::launder(reinterpret_cast<shm::Header*>(b.data));
}

}  // namespace

TEST_CASE("shm layout version string is pinned", "[shm][layout]") {
  // If this fails you changed the shared layout. Bump kLayoutVersion in shm/layout.hpp,
  // then update the expected string here (and docs/scoreboard.md).
  CHECK(shm::kLayoutVersion == 8);
  CHECK(shm::layout_version_string() == "8.192.704");
}

TEST_CASE("shm field offsets are pinned", "[shm][layout]") {
  // The version string only sees sizes; a reordering of fields keeps them. These offsets
  // are what other processes (C workers, an older forkpoolctl) depend on.
  CHECK(offsetof(shm::Header, magic) == 0);
  CHECK(offsetof(shm::Header, layout_version) == 8);
  CHECK(offsetof(shm::Header, slot_count) == 32);
  CHECK(offsetof(shm::Header, pool_count) == 36);
  CHECK(offsetof(shm::Header, activity_page_size) == 40);
  CHECK(offsetof(shm::Header, master_pid) == 44);
  CHECK(offsetof(shm::Header, pools_offset) == 48);
  CHECK(offsetof(shm::Header, region_size) == 64);
  CHECK(offsetof(shm::Header, start_monotonic_ns) == 80);
  CHECK(sizeof(shm::Header) == 128);

  CHECK(offsetof(shm::PoolBlock, seq) == 0);
  CHECK(offsetof(shm::PoolBlock, state) == 8);
  CHECK(offsetof(shm::PoolBlock, size) == 12);
  CHECK(offsetof(shm::PoolBlock, in_use) == 16);
  CHECK(offsetof(shm::PoolBlock, generation) == 20);
  CHECK(offsetof(shm::PoolBlock, name) == 24);
  CHECK(offsetof(shm::PoolBlock, accepted) == 88);
  CHECK(offsetof(shm::PoolBlock, completed) == 104);
  CHECK(offsetof(shm::PoolBlock, in_flight) == 112);
  CHECK(offsetof(shm::PoolBlock, lost) == 120);
  CHECK(offsetof(shm::PoolBlock, closed) == 128);
  CHECK(offsetof(shm::PoolBlock, recycled) == 184);
  CHECK(offsetof(shm::PoolBlock, spawn_failed) == 192);
  CHECK(offsetof(shm::PoolBlock, parked) == 200);
  CHECK(offsetof(shm::PoolBlock, protocol_errors) == 248);
  CHECK(offsetof(shm::PoolBlock, min_workers) == 256);
  CHECK(offsetof(shm::PoolBlock, max_workers) == 260);
  CHECK(offsetof(shm::PoolBlock, last_scale_reason) == 264);
  CHECK(offsetof(shm::PoolBlock, last_scale_to) == 272);
  CHECK(offsetof(shm::PoolBlock, scale_decisions) == 276);
  CHECK(offsetof(shm::PoolBlock, last_scale_ns) == 280);
  CHECK(offsetof(shm::PoolBlock, duration) == 320);
  CHECK(offsetof(shm::PoolBlock, queue_wait) == 512);
  CHECK(sizeof(shm::HistogramBlock) == 192);
  CHECK(offsetof(shm::HistogramBlock, count) == 152);
  CHECK(sizeof(shm::PoolBlock) == 704);

  CHECK(offsetof(shm::SlotRecord, epoch) == 8);
  CHECK(offsetof(shm::SlotRecord, pid) == 16);
  CHECK(offsetof(shm::SlotRecord, state) == 20);
  CHECK(offsetof(shm::SlotRecord, last_exit_status) == 36);
  CHECK(offsetof(shm::SlotRecord, start_time_ns) == 40);
  CHECK(offsetof(shm::SlotRecord, cpu_time_us) == 64);
  CHECK(offsetof(shm::SlotRecord, master_counts) == 72);
  CHECK(offsetof(shm::SlotRecord, held) == 76);
  CHECK(offsetof(shm::SlotRecord, handed_back) == 80);
  CHECK(offsetof(shm::SlotRecord, held_since_ns) == 88);
  CHECK(sizeof(shm::SlotRecord) == 128);

  CHECK(offsetof(shm::SlotActivity, busy_since_ns) == 24);
  CHECK(sizeof(shm::SlotActivity) == 64);
}

TEST_CASE("shm blocks with their own writer start on a cache line", "[shm][layout]") {
  const auto g = shm::region_geometry(3, 5);
  CHECK(g.pools_offset % shm::kCacheLine == 0);
  CHECK(g.slots_offset % shm::kCacheLine == 0);
  CHECK(g.slots_offset == sizeof(shm::Header) + 3 * sizeof(shm::PoolBlock));
  CHECK(g.size == g.slots_offset + 5 * sizeof(shm::SlotRecord));
  CHECK(alignof(shm::SlotRecord) == 64);
  CHECK(alignof(shm::PoolBlock) == 64);
  CHECK(alignof(shm::SlotActivity) == 64);
}

TEST_CASE("shm worker and pool state names live in one place", "[shm][layout]") {
  CHECK(shm::to_string(shm::WorkerState::Starting) == "starting");
  CHECK(shm::to_string(shm::WorkerState::Idle) == "idle");
  CHECK(shm::to_string(shm::WorkerState::Busy) == "busy");
  CHECK(shm::to_string(shm::WorkerState::Stopping) == "stopping");
  CHECK(shm::to_string(shm::WorkerState::Exited) == "exited");
  CHECK(shm::to_string(shm::WorkerState::Empty) == "empty");
  for (std::uint32_t i = 0; i < shm::kWorkerStateCount; ++i) {
    const auto s = static_cast<shm::WorkerState>(i);
    CHECK(shm::parse_worker_state(shm::to_string(s)) == s);
  }
  CHECK_FALSE(shm::worker_state_from_raw(shm::kWorkerStateCount).has_value());
  CHECK(static_cast<std::uint32_t>(shm::WorkerState::Busy) == FP_SLOT_STATE_BUSY);
  CHECK(static_cast<std::uint32_t>(shm::WorkerState::Idle) == FP_SLOT_STATE_IDLE);
  CHECK(static_cast<std::uint32_t>(shm::WorkerState::Starting) == FP_SLOT_STATE_STARTING);
  CHECK(shm::to_string(shm::PoolState::Failed) == "failed");
  CHECK(shm::to_string(shm::PoolState::Running) == "running");
  CHECK_FALSE(shm::pool_state_from_raw(shm::kPoolStateCount).has_value());
}

TEST_CASE("shm formatted header validates", "[shm][header]") {
  const auto g = shm::region_geometry(2, 4);
  AlignedBuffer b(g.size);
  shm::format_region(b.data, spec(2, 4));
  CHECK(shm::check_header(b.data, b.size) == "");
  CHECK(header(b).master_pid.load() == 1234);
  CHECK(header(b).slot_count.load() == 4);
  CHECK(std::memcmp(b.data, "FPSCORE\x01", 8) == 0);
}

TEST_CASE("shm header validation names what is wrong", "[shm][header]") {
  const auto g = shm::region_geometry(2, 4);
  AlignedBuffer b(g.size);
  shm::format_region(b.data, spec(2, 4));

  SECTION("too small to hold a header") {
    CHECK_THAT(shm::check_header(b.data, 16), Catch::Contains("smaller than a 128-byte header"));
  }
  SECTION("bad magic") {
    header(b).magic.store(0x1122334455667788ull);
    CHECK_THAT(shm::check_header(b.data, b.size), Catch::Contains("bad magic 0x1122334455667788") &&
                                                      Catch::Contains("not a forkpool"));
  }
  SECTION("other layout version") {
    header(b).layout_version.store(2);
    CHECK_THAT(shm::check_header(b.data, b.size),
               Catch::Contains("layout version 2 is not supported"));
  }
  SECTION("wrong slot size") {
    header(b).slot_record_size.store(64);
    CHECK_THAT(shm::check_header(b.data, b.size),
               Catch::Contains("slot_record_size is 64, expected 128"));
  }
  SECTION("wrong pool block size") {
    header(b).pool_block_size.store(1);
    CHECK_THAT(shm::check_header(b.data, b.size), Catch::Contains("pool_block_size is 1"));
  }
  SECTION("absurd slot count") {
    header(b).slot_count.store(0xffffffffu);
    CHECK_THAT(shm::check_header(b.data, b.size), Catch::Contains("slot_count"));
  }
  SECTION("slot count larger than the mapping") {
    header(b).slot_count.store(5);
    CHECK_THAT(shm::check_header(b.data, b.size),
               Catch::Contains("slots_offset") || Catch::Contains("region_size"));
  }
  SECTION("region shorter than the header says") {
    CHECK_THAT(shm::check_header(b.data, b.size - 1),
               Catch::Contains("header describes " + std::to_string(g.size)));
  }
  SECTION("odd page size") {
    header(b).activity_page_size.store(100);
    CHECK_THAT(shm::check_header(b.data, b.size), Catch::Contains("activity_page_size"));
  }
}
