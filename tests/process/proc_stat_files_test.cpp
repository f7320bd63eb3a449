// SPDX-License-Identifier: Apache-2.0
// forkpoolctl top's kept /proc/PID/stat descriptors (ctl/proc_stat_files), read against
// real processes forked here. The children never assert; they spin until killed.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "ctl/proc_stat_files.hpp"
#include "support/wait_until.hpp"

using forkpool::ctl::ProcStatFiles;
using forkpool::test::wait_until;

namespace {

pid_t spinning_child() {
  const pid_t child = ::fork();
  if (child == 0) {
    volatile unsigned long spins = 0;
    for (;;) spins = spins + 1;
  }
  return child;
}

void kill_and_reap(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

struct Reaper {
  pid_t a = -1, b = -1;
  ~Reaper() {
    kill_and_reap(a);
    kill_and_reap(b);
  }
};

}  // namespace

TEST_CASE("top keeps a worker's stat file open, reads it afresh every frame, and drops it once the worker is gone",
          "[process][ctl][top]") {
  Reaper children;
  children.a = spinning_child();
  REQUIRE(children.a > 0);
  const pid_t first_pid = children.a;
  ProcStatFiles files(1);

  const auto first = files.read(0, first_pid);
  REQUIRE(first);
  CHECK(first->rss_bytes > 0);
  CHECK(files.kept() == 1);
  // The kept descriptor gives current figures, not the ones of its first read.
  REQUIRE(wait_until([&] {
    const auto now = files.read(0, first_pid);
    return now && now->cpu_time_us > first->cpu_time_us + 50'000;
  }, std::chrono::seconds(10)));
  CHECK(files.kept() == 1);

  // Beyond max_open a row is still read, its file opened and closed again.
  children.b = spinning_child();
  REQUIRE(children.b > 0);
  CHECK(files.read(1, children.b).has_value());
  CHECK(files.kept() == 1);

  // Reaped: nothing, and its descriptor is closed.
  kill_and_reap(children.a);
  CHECK_FALSE(files.read(0, first_pid).has_value());
  CHECK(files.kept() == 0);
  // Another worker in the slot is read and kept.
  CHECK(files.read(0, children.b).has_value());
  CHECK(files.kept() == 1);
  CHECK_FALSE(files.read(0, 0).has_value());
}
