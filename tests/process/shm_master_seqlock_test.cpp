// SPDX-License-Identifier: Apache-2.0
// The master's side of the scoreboard under a concurrent reader in another process: a
// slot record the master is rewriting is never seen half old, half new. (The worker-side
// pages have their own test, shm_concurrency_test.cpp.)

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>

#include "shm/scoreboard.hpp"

namespace shm = forkpool::shm;

namespace {

// The reader reads until told to stop; "enough" is this many reads that found a value
// the master had written since the previous read (so the two really ran side by side).
constexpr std::uint64_t kEnoughMoving = 5'000;
constexpr std::uint64_t kMaxWrites = 20'000'000'000;

struct Counts {
  std::uint64_t reads = 0;
  std::uint64_t moving = 0;  // reads that saw a newer value than the read before
  std::uint64_t torn = 0;    // reads where the two fields the master writes together differ
};

[[noreturn]] void run_reader(shm::Scoreboard& sb, int enough_pipe, int stop_pipe, int result_pipe) {
  Counts c;
  std::uint64_t last = 0;
  bool said_enough = false;
  for (;;) {
    const shm::WorkerSnapshot w = sb.read_worker(0);
    ++c.reads;
    // set_usage(slot, k, k): both fields come from one write under the record's seqlock.
    // A read that never settled while the writer hammered says so, and is not counted.
    const bool settled = (w.anomalies & shm::kAnomalyNoConsistentRead) == 0;
    if (settled && w.rss_bytes != w.cpu_time_us) ++c.torn;
    if (w.rss_bytes != last) ++c.moving;
    last = w.rss_bytes;
    if (!said_enough && c.moving >= kEnoughMoving) {
      said_enough = ::write(enough_pipe, "!", 1) == 1;
    }
    if ((c.reads & 1023) == 0) {
      char byte;
      if (::read(stop_pipe, &byte, 1) == 0) break;  // EOF: the writer is done
    }
  }
  if (::write(result_pipe, &c, sizeof c) != static_cast<ssize_t>(sizeof c)) ::_exit(2);
  ::_exit(0);
}

}  // namespace

TEST_CASE("shm a reader in another process never sees a master-written record half updated",
          "[shm][seqlock][process]") {
  shm::Scoreboard sb(1, 1);
  REQUIRE_FALSE(sb.make_pages(1));
  sb.assign_slot(0, 0, 0);
  REQUIRE_FALSE(sb.start_worker(0, 1));
  int enough[2], stop[2], result[2];
  REQUIRE(::pipe2(enough, O_NONBLOCK) == 0);
  REQUIRE(::pipe2(stop, O_NONBLOCK) == 0);
  REQUIRE(::pipe(result) == 0);

  const pid_t reader = ::fork();
  REQUIRE(reader >= 0);
  if (reader == 0) {
    ::close(enough[0]);
    ::close(stop[1]);
    ::close(result[0]);
    run_reader(sb, enough[1], stop[0], result[1]);
  }
  ::close(enough[1]);
  ::close(stop[0]);
  ::close(result[1]);

  // The master writes until the reader has seen enough of it (a loaded machine takes
  // longer), bounded by a count, never by a clock.
  std::uint64_t k = 1;
  for (; k < kMaxWrites; ++k) {
    sb.set_usage(0, k, k);
    if ((k & 4095) == 0) {
      char byte;
      if (::read(enough[0], &byte, 1) == 1) break;
    }
  }
  ::close(stop[1]);
  Counts c;
  REQUIRE(::read(result[0], &c, sizeof c) == static_cast<ssize_t>(sizeof c));
  int status = 0;
  REQUIRE(::waitpid(reader, &status, 0) == reader);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  INFO("writes " << k << ", reads " << c.reads << ", moving " << c.moving);
  CHECK(c.moving >= kEnoughMoving);
  CHECK(c.torn == 0);
  ::close(enough[0]);
  ::close(result[0]);
}
