// SPDX-License-Identifier: Apache-2.0
// The master-side Scoreboard on real memfds, and the read-only attach path, in one process.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "shm/attach.hpp"
#include "shm/scoreboard.hpp"
#include "shm/slot_writer.h"

namespace shm = forkpool::shm;

namespace {

std::vector<int> slot_fds(const shm::Scoreboard& sb) {
  std::vector<int> fds;
  for (std::uint32_t i = 0; i < sb.slot_count(); ++i) fds.push_back(sb.slot_fd(i));
  return fds;
}

}  // namespace

TEST_CASE("shm scoreboard writes lifecycle and pool counters", "[shm][scoreboard]") {
  shm::Scoreboard sb(2, 3);
  REQUIRE_FALSE(sb.make_pages(3));
  sb.assign_slot(2, 1, 0);
  REQUIRE_FALSE(sb.start_worker(2, 7));
  sb.set_pid(2, 4242, 5);
  auto w = sb.read_worker(2);
  CHECK(w.state == shm::WorkerState::Starting);
  CHECK(w.pid == 4242);
  CHECK(w.pool == 1);
  CHECK(w.generation == 7);
  CHECK(w.epoch == 1);
  CHECK(w.restarts == 0);
  CHECK(w.last_exit_status == -1);
  sb.mark_ready(2);
  sb.set_usage(2, 1 << 20, 1500);
  w = sb.read_worker(2);
  CHECK(w.state == shm::WorkerState::Idle);
  CHECK(w.rss_bytes == 1 << 20);
  CHECK(w.cpu_time_us == 1500);

  sb.set_pool_state(1, shm::PoolState::Running);
  sb.set_pool_size(1, 1);
  sb.count(1, shm::PoolCounter::Accepted, 5);
  sb.count(1, shm::PoolCounter::Dispatched, 4);
  sb.count(1, shm::PoolCounter::Spawned);
  sb.set_queued(1, 3);
  sb.set_queued(1, 1);
  sb.record_duration(1, 1500);
  sb.record_queue_wait(1, 20);
  const auto p = sb.read_pool(1);
  CHECK(p.state == shm::PoolState::Running);
  CHECK(p.size == 1);
  CHECK(p.accepted == 5);
  CHECK(p.dispatched == 4);
  CHECK(p.spawned == 1);
  CHECK(p.queued_now == 1);
  CHECK(p.queue_peak == 3);
  CHECK(p.duration.count == 1);
  CHECK(p.duration.max_us == 1500);
  CHECK(p.queue_wait.count == 1);
  CHECK(sb.read_pool(0).accepted == 0);

  const auto snap = sb.snapshot();
  const auto counts = shm::count_workers(snap, 1);
  CHECK(counts.idle == 1);
  CHECK(counts.ready() == 1);
  CHECK(shm::count_workers(snap, 0).ready() == 0);
}

TEST_CASE("shm slot reuse bumps the epoch and gives the new worker a fresh page",
          "[shm][scoreboard]") {
  shm::Scoreboard sb(1, 1);
  REQUIRE_FALSE(sb.make_pages(1));
  REQUIRE_FALSE(sb.start_worker(0, 1));
  sb.mark_ready(0);
  const int first_fd = sb.slot_fd(0);
  fp_slot_writer w;
  REQUIRE(fp_slot_writer_attach(&w, first_fd) == 0);
  fp_slot_writer_set_ready(&w);
  fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());
  fp_slot_writer_mark_idle(&w);
  CHECK(sb.read_worker(0).connections_handled == 1);
  sb.mark_exited(0, 9);  // raw wait status: killed by SIGKILL
  CHECK(sb.read_worker(0).state == shm::WorkerState::Exited);

  REQUIRE_FALSE(sb.start_worker(0, 2));
  const auto s = sb.read_worker(0);
  CHECK(s.epoch == 2);
  CHECK(s.restarts == 1);
  CHECK(s.last_exit_status == 9);
  CHECK(s.generation == 2);
  CHECK(s.connections_handled == 0);
  CHECK(s.state == shm::WorkerState::Starting);
  // The pool's own history of its worker number replaces the slot's.
  sb.set_history(0, 5, -1);
  CHECK(sb.read_worker(0).restarts == 5);
  CHECK(sb.read_worker(0).last_exit_status == -1);
  sb.set_last_exit(0, 15);
  CHECK(sb.read_worker(0).last_exit_status == 15);

  // The old worker's mapping (or a descendant holding it) no longer reaches the slot.
  fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());
  fp_slot_writer_mark_idle(&w);
  CHECK(sb.read_worker(0).connections_handled == 0);
  fp_slot_writer_detach(&w);
}

TEST_CASE("shm the master's account of a worker's connections replaces its page until the next worker",
          "[shm][scoreboard]") {
  shm::Scoreboard sb(1, 1);
  REQUIRE_FALSE(sb.make_pages(1));
  REQUIRE_FALSE(sb.start_worker(0, 1));
  sb.mark_ready(0);
  fp_slot_writer w;
  REQUIRE(fp_slot_writer_attach(&w, sb.slot_fd(0)) == 0);
  fp_slot_writer_set_ready(&w);
  fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());  // what the worker says: busy, 0 handled
  CHECK(sb.read_worker(0).state == shm::WorkerState::Busy);

  sb.set_master_activity(0, 0, 7, 0);  // what the master says: idle, 7 handed back
  auto s = sb.read_worker(0);
  CHECK(s.state == shm::WorkerState::Idle);
  CHECK(s.connections_handled == 7);
  CHECK(s.in_flight == 0);
  CHECK(s.busy_since_ns == 0);
  CHECK(s.anomalies == 0);
  sb.set_master_activity(0, 2, 7, 12345);
  s = sb.read_worker(0);
  CHECK(s.state == shm::WorkerState::Busy);
  CHECK(s.in_flight == 2);
  CHECK(s.busy_since_ns == 12345);
  sb.mark_stopping(0);
  CHECK(sb.read_worker(0).state == shm::WorkerState::Stopping);  // the lifecycle still rules

  // The next worker in the slot starts from its own page again.
  sb.mark_exited(0, 0);
  REQUIRE_FALSE(sb.start_worker(0, 1));
  sb.mark_ready(0);
  s = sb.read_worker(0);
  CHECK(s.state == shm::WorkerState::Idle);
  CHECK(s.connections_handled == 0);
  fp_slot_writer_detach(&w);
}

TEST_CASE("shm region fd is close-on-exec and every memfd is sealed", "[shm][scoreboard]") {
  shm::Scoreboard sb(1, 2);
  REQUIRE_FALSE(sb.make_pages(2));
  CHECK((::fcntl(sb.region_fd(), F_GETFD) & FD_CLOEXEC) != 0);
  for (const int fd : {sb.region_fd(), sb.slot_fd(0), sb.slot_fd(1)}) {
    const int seals = ::fcntl(fd, F_GET_SEALS);
    CHECK((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
          (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
    CHECK(::ftruncate(fd, 1 << 20) != 0);
  }
}

TEST_CASE("shm read-only attach sees what the master and workers write", "[shm][attach]") {
  shm::Scoreboard sb(1, 2);
  REQUIRE_FALSE(sb.make_pages(2));
  sb.assign_slot(1, 0, 1);
  REQUIRE_FALSE(sb.start_worker(1, 1));
  sb.set_pid(1, 99, 1);
  sb.mark_ready(1);
  sb.count(0, shm::PoolCounter::Accepted, 11);
  fp_slot_writer w;
  REQUIRE(fp_slot_writer_attach(&w, sb.slot_fd(1)) == 0);
  fp_slot_writer_set_ready(&w);
  fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());

  const auto fds = slot_fds(sb);
  const std::vector<std::uint64_t> epochs{sb.slot_epoch(0), sb.slot_epoch(1)};
  auto ro = shm::AttachedScoreboard::attach(sb.region_fd(), fds, epochs);
  auto snap = ro.snapshot();
  CHECK(snap.master_pid == ::getpid());
  CHECK(snap.pools.at(0).accepted == 11);
  CHECK(snap.workers.at(1).state == shm::WorkerState::Busy);
  CHECK(snap.workers.at(1).pid == 99);
  CHECK(snap.workers.at(1).anomalies == 0);
  fp_slot_writer_mark_idle(&w);
  CHECK(ro.snapshot().workers.at(1).connections_handled == 1);

  // Restarting the worker replaces its page: the attached reader says so instead of
  // showing the old page as the new worker's.
  sb.mark_exited(1, 0);
  REQUIRE_FALSE(sb.start_worker(1, 1));
  CHECK(ro.snapshot().workers.at(1).anomalies == shm::kAnomalyStalePage);
  fp_slot_writer_detach(&w);
}

TEST_CASE("shm read-only attach rejects what is not a scoreboard", "[shm][attach]") {
  shm::Scoreboard sb(1, 1);
  REQUIRE_FALSE(sb.make_pages(1));
  const auto fds = slot_fds(sb);

  SECTION("a slot page is not a region") {
    shm::OwnedFd page;
    REQUIRE_FALSE(shm::make_sealed_memfd("x", 4096, page));
    CHECK_THROWS_WITH(shm::AttachedScoreboard::attach(page.get(), fds),
                      Catch::Contains("bad magic 0x0000000000000000"));
  }
  SECTION("wrong layout version") {
    shm::OwnedFd fd;
    REQUIRE_FALSE(shm::make_sealed_memfd("x", 4096, fd));
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    REQUIRE(p != MAP_FAILED);
    std::memcpy(p, "FPSCORE\x01\x09\x00\x00\x00", 12);
    ::munmap(p, 4096);
    CHECK_THROWS_WITH(shm::AttachedScoreboard::attach(fd.get(), fds),
                      Catch::Contains("layout version 9 is not supported"));
  }
  SECTION("an unsealed fd") {
    const int fd = ::memfd_create("x", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 4096) == 0);
    CHECK_THROWS_WITH(shm::AttachedScoreboard::attach(fd, fds),
                      Catch::Contains("not sealed against shrinking"));
    ::close(fd);
  }
  SECTION("more slot fds than slots") {
    const std::vector<int> two{fds.at(0), fds.at(0)};
    CHECK_THROWS_WITH(shm::AttachedScoreboard::attach(sb.region_fd(), two),
                      Catch::Contains("got 2 slot fds for 1 slots"));
  }
  SECTION("a closed fd") {
    CHECK_THROWS_AS(shm::AttachedScoreboard::attach(-1, fds), shm::AttachError);
  }
}

TEST_CASE("shm pool blocks are taken by name, zeroed for the next pool, and reused", "[shm][scoreboard]") {
  shm::Scoreboard sb(2, 4);
  auto web = sb.add_pool("web", 1);
  auto api = sb.add_pool("api-with-a-name-longer-than-sixty-three-bytes-which-is-cut-at-the-end", 2);
  REQUIRE(web);
  REQUIRE(api);
  CHECK_FALSE(sb.add_pool("third", 1));  // every block taken
  CHECK(sb.free_pools() == 0);
  sb.count(*web, shm::PoolCounter::Accepted, 5);
  auto snap = sb.snapshot();
  CHECK(snap.pools.at(*web).name == "web");
  CHECK(snap.pools.at(*web).in_use);
  CHECK(snap.pools.at(*web).generation == 1);
  CHECK(snap.pools.at(*api).name.size() == shm::kPoolNameBytes);
  CHECK(snap.pools.at(*api).generation == 2);

  // A removed pool frees its block; the next pool gets it without the old counters.
  sb.remove_pool(*web);
  CHECK_FALSE(sb.snapshot().pools.at(*web).in_use);
  auto jobs = sb.add_pool("jobs", 3);
  REQUIRE(jobs);
  CHECK(*jobs == *web);
  snap = sb.snapshot();
  CHECK(snap.pools.at(*jobs).name == "jobs");
  CHECK(snap.pools.at(*jobs).accepted == 0);
  sb.set_pool_generation(*jobs, 4);
  CHECK(sb.read_pool(*jobs).generation == 4);
}

TEST_CASE("shm slots are handed out lowest first with their page made on first use", "[shm][scoreboard]") {
  shm::Scoreboard sb(1, 3);
  CHECK(sb.slots_paged() == 0);
  CHECK(sb.slot_fd(0) < 0);
  std::uint32_t a = 99, b = 99, c = 99, d = 99;
  REQUIRE_FALSE(sb.acquire_slot(a));
  REQUIRE_FALSE(sb.acquire_slot(b));
  CHECK(a == 0);
  CHECK(b == 1);
  CHECK(sb.slots_paged() == 2);
  CHECK(sb.slot_fd(1) >= 0);
  sb.release_slot(a);
  REQUIRE_FALSE(sb.acquire_slot(c));
  CHECK(c == 0);  // the freed one, so paged slots stay a prefix
  REQUIRE_FALSE(sb.acquire_slot(d));
  CHECK(d == 2);
  std::uint32_t e = 0;
  CHECK(sb.acquire_slot(e) == std::errc::no_space_on_device);
  CHECK(sb.free_slots() == 0);
}
