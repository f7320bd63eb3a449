// SPDX-License-Identifier: Apache-2.0
// A worker can write its own slot page and nothing else, and whatever it writes there
// cannot make the master crash or report values out of range.

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <random>
#include <string>

#include "shm/scoreboard.hpp"
#include "shm/slot_writer.h"

namespace shm = forkpool::shm;

namespace {

using Clock = std::chrono::steady_clock;

// Runs `body` in a forked child that only _exit()s; returns the raw wait status.
template <typename Body>
int run_child(Body&& body) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// The fault must end the child the way it would end a real worker, not be turned into a
// report by a sanitizer's handler.
void default_fault_handlers() {
  ::signal(SIGSEGV, SIG_DFL);
  ::signal(SIGBUS, SIG_DFL);
}

}  // namespace

TEST_CASE("shm hostile worker scribbling its slot cannot mislead the master", "[shm][process]") {
  shm::Scoreboard sb(1, 3);
  REQUIRE_FALSE(sb.make_pages(3));
  for (std::uint32_t i = 0; i < 3; ++i) {
    sb.assign_slot(i, 0, i);
    REQUIRE_FALSE(sb.start_worker(i, 1));
    sb.mark_ready(i);
  }
  const std::int64_t start = shm::monotonic_ns();
  sb.set_pid(0, 1000, start);
  sb.count(0, shm::PoolCounter::Accepted, 77);
  // Slot 1 holds known honest values, written the way a worker would.
  fp_slot_writer honest;
  REQUIRE(fp_slot_writer_attach(&honest, sb.slot_fd(1)) == 0);
  fp_slot_writer_set_ready(&honest);
  fp_slot_writer_mark_busy(&honest, start + 1);
  fp_slot_writer_mark_idle(&honest);
  fp_slot_writer_mark_busy(&honest, start + 2);
  const auto slot1_before = sb.read_worker(1);
  const auto slot2_before = sb.read_worker(2);

  const int hostile_fd = sb.slot_fd(0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    fp_slot_writer w;
    if (fp_slot_writer_attach(&w, hostile_fd) != 0) ::_exit(10);
    auto* words = static_cast<std::uint64_t*>(w.slot);
    const std::size_t n = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) / 8;
    std::mt19937_64 rng(static_cast<std::uint64_t>(::getpid()));
    const auto end = Clock::now() + std::chrono::seconds(1);
    while (Clock::now() < end) {
      for (int k = 0; k < 1000; ++k) {
        // Mostly the first cache line, where the fields are; sometimes anywhere.
        const std::size_t i = (rng() % 4 == 0) ? rng() % n : rng() % 8;
        __atomic_store_n(&words[i], rng() >> (rng() % 64), __ATOMIC_RELAXED);
      }
    }
    ::_exit(0);
  }

  std::uint64_t snapshots = 0;
  std::uint64_t flagged = 0;
  std::uint64_t last_handled = 0;
  std::string bad;
  int status = -1;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    const auto snap = sb.snapshot();
    ++snapshots;
    const auto& w = snap.workers[0];
    if (w.anomalies != 0) ++flagged;
    if (shm::to_string(w.state) == "unknown") bad = "state out of range";
    if (w.state != shm::WorkerState::Idle && w.state != shm::WorkerState::Busy) bad = "state";
    if (w.in_flight > shm::kMaxInFlight) bad = "in_flight " + std::to_string(w.in_flight);
    if (w.busy_since_ns > snap.taken_monotonic_ns) bad = "busy_since in the future";
    if (w.busy_since_ns != 0 && w.busy_since_ns < start) bad = "busy_since before start";
    if (w.connections_handled < last_handled) bad = "connections_handled went backwards";
    last_handled = w.connections_handled;
    if (w.pid != 1000 || w.epoch != 1) bad = "lifecycle of slot 0 changed";
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
  }
  INFO("snapshots " << snapshots << ", flagged " << flagged);
  CHECK(bad == "");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(flagged > 0);

  // Nothing outside the hostile worker's own page moved.
  const auto slot1 = sb.read_worker(1);
  CHECK(slot1.state == slot1_before.state);
  CHECK(slot1.connections_handled == slot1_before.connections_handled);
  CHECK(slot1.busy_since_ns == slot1_before.busy_since_ns);
  CHECK(slot1.anomalies == 0);
  CHECK(sb.read_worker(2).connections_handled == slot2_before.connections_handled);
  CHECK(sb.read_pool(0).accepted == 77);
  fp_slot_writer_detach(&honest);
}

TEST_CASE("shm worker writing past its slot page dies with SIGSEGV", "[shm][process]") {
  shm::Scoreboard sb(1, 2);
  REQUIRE_FALSE(sb.make_pages(2));
  const int fd = sb.slot_fd(0);
  const long page = ::sysconf(_SC_PAGESIZE);

  SECTION("one page after the slot") {
    const int status = run_child([&] {
      default_fault_handlers();
      fp_slot_writer w;
      if (fp_slot_writer_attach(&w, fd) != 0) ::_exit(10);
      auto* past = static_cast<volatile unsigned char*>(w.slot) + page;
      *past = 1;
      ::_exit(11);  // not reached: the guard page faults
    });
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGSEGV);
  }
  SECTION("just before the slot") {
    const int status = run_child([&] {
      default_fault_handlers();
      fp_slot_writer w;
      if (fp_slot_writer_attach(&w, fd) != 0) ::_exit(10);
      *(static_cast<volatile unsigned char*>(w.slot) - 1) = 1;
      ::_exit(11);
    });
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGSEGV);
  }
  SECTION("mapping its fd larger than the page") {
    // The memfd holds exactly one page: beyond it there is nothing to write to.
    const int status = run_child([&] {
      default_fault_handlers();
      void* p = ::mmap(nullptr, static_cast<std::size_t>(page) * 2, PROT_READ | PROT_WRITE,
                       MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) ::_exit(12);
      static_cast<volatile unsigned char*>(p)[page] = 1;
      ::_exit(11);
    });
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGBUS);
  }
  SECTION("growing or shrinking its memfd") {
    const int status = run_child([&] {
      if (::ftruncate(fd, page * 2) == 0) ::_exit(13);
      if (errno != EPERM) ::_exit(14);
      if (::ftruncate(fd, 0) == 0) ::_exit(15);
      if (::fcntl(fd, F_ADD_SEALS, 0) == 0) ::_exit(16);  // the seal set itself is sealed
      ::_exit(0);
    });
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  // Slot 1 never noticed any of it.
  CHECK(sb.read_worker(1).anomalies == 0);
}

TEST_CASE("shm an exec'd worker holds its slot fd and not the region fd", "[shm][process]") {
  shm::Scoreboard sb(1, 1);
  REQUIRE_FALSE(sb.make_pages(1));
  const int region = sb.region_fd();
  const int slot = sb.slot_fd(0);
  constexpr int kWorkerFd = 100;  // what the spawner would announce as FORKPOOL_SCOREBOARD_FD
  const std::string script = "test -e /proc/self/fd/" + std::to_string(kWorkerFd) +
                             " && test ! -e /proc/self/fd/" + std::to_string(region);
  const int status = run_child([&] {
    // dup2 clears close-on-exec on the copy only: the same step the spawner takes.
    if (::dup2(slot, kWorkerFd) < 0) ::_exit(20);
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  });
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
