// SPDX-License-Identifier: Apache-2.0
// A worker's process tree as the master reads it from /proc: real processes, forked here.
// The children never assert; they wait to be killed.

#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "shm/proc_stats.hpp"
#include "supervisor/process/descendants.hpp"
#include "supervisor/process/signal_handlers.hpp"
#include "supervisor/process/worker_usage.hpp"
#include "support/wait_until.hpp"

using forkpool::supervisor::ProcessTable;
using forkpool::supervisor::tree_stats;
using forkpool::test::wait_until;

namespace {

constexpr std::size_t kHeld = 32u << 20;

// A process group of its own: the forked child, and a grandchild that holds kHeld bytes
// of touched memory. Both wait to be killed.
pid_t start_tree() {
  const pid_t child = ::fork();
  if (child != 0) return child;
  ::setpgid(0, 0);
  const pid_t grandchild = ::fork();
  if (grandchild == 0) {
    void* p = ::mmap(nullptr, kHeld, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ::_exit(1);
    std::memset(p, 1, kHeld);
    for (;;) ::pause();
  }
  for (;;) ::pause();
}

// Kills the tree's process group and reaps the child, however the test ends.
struct TreeGuard {
  pid_t child;
  ~TreeGuard() {
    if (child <= 0) return;
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
  }
};

}  // namespace

TEST_CASE("a worker's process tree holds its grandchildren and their memory", "[process][descendants]") {
  const pid_t child = start_tree();
  REQUIRE(child > 0);
  ::setpgid(child, child);  // as the child does: whichever runs first, the group exists
  TreeGuard guard{child};
  std::vector<pid_t> below;
  CHECK(wait_until([&] {
    below = ProcessTable::read().descendants(child);
    if (below.size() != 1) return false;
    const auto s = forkpool::shm::read_proc_stats(below[0]);
    return s && s->rss_bytes >= kHeld;
  }));
  const auto own = forkpool::shm::read_proc_stats(child);
  const auto tree = tree_stats(child, ProcessTable::read());
  REQUIRE(own.has_value());
  REQUIRE(tree.has_value());
  CHECK(own->rss_bytes < kHeld);
  CHECK(tree->rss_bytes >= own->rss_bytes + kHeld);
  // The tree of this test process holds the child and the grandchild as well.
  const auto mine = ProcessTable::read().descendants(::getpid());
  CHECK(std::count(mine.begin(), mine.end(), child) == 1);
  if (!below.empty()) CHECK(std::count(mine.begin(), mine.end(), below[0]) == 1);

  ::kill(-child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  guard.child = 0;
  // A process that is gone has no stats, tree or not.
  CHECK_FALSE(tree_stats(child, ProcessTable::read()).has_value());
}

TEST_CASE("a worker's usage is read through a kept /proc descriptor at most once per max age, and never after its reap",
          "[process][usage]") {
  using forkpool::supervisor::WorkerUsage;
  // A child that spins: its CPU time grows between two real reads.
  const pid_t child = ::fork();
  if (child == 0) {
    volatile unsigned long spins = 0;
    for (;;) spins = spins + 1;
  }
  REQUIRE(child > 0);
  TreeGuard guard{child};

  WorkerUsage usage;
  const std::int64_t t0 = 1'000'000'000;
  const auto before = forkpool::shm::read_proc_stats(child);
  const auto first = usage.read(child, t0);
  const auto after = forkpool::shm::read_proc_stats(child);
  REQUIRE(first);
  REQUIRE(before);
  REQUIRE(after);
  // The figures /proc/PID/stat gives, from statm and the CPU-time clock. The resident set
  // in bytes: the kernel keeps RSS in per-CPU counters that stat may read unsummed, off
  // by up to a batch of pages per CPU, so the check is of the field and the unit (statm's
  // first field, the VM size, or a count of pages would be far off), not of the page.
  // CPU time in microseconds between the two stat reads (stat counts in clock ticks,
  // rounded down, so up to a tick under for user and for system time).
  CHECK(first->rss_bytes > 0);
  CHECK(first->rss_bytes <= 2 * after->rss_bytes);
  CHECK(after->rss_bytes <= 2 * first->rss_bytes);
  CHECK(first->cpu_time_us + 20'000 >= before->cpu_time_us);
  CHECK(first->cpu_time_us <= after->cpu_time_us + 20'000);
  // Within the max age the figures are not read again, however much the child spun.
  REQUIRE(wait_until([&] {
    const auto direct = forkpool::shm::read_proc_stats(child);
    return direct && direct->cpu_time_us > first->cpu_time_us + 20'000;
  }, std::chrono::seconds(10)));
  const auto cached = usage.read(child, t0 + 999'000'000);
  REQUIRE(cached);
  CHECK(cached->cpu_time_us == first->cpu_time_us);
  // Past it, or with a max age of 0, they are.
  const auto later = usage.read(child, t0 + 1'000'000'000);
  REQUIRE(later);
  CHECK(later->cpu_time_us > first->cpu_time_us);
  const auto now = usage.read(child, t0 + 1'000'000'001, std::chrono::nanoseconds(0));
  REQUIRE(now);
  CHECK(now->cpu_time_us >= later->cpu_time_us);

  // Reaped: the kept descriptor reads nothing, even though it was opened for this pid.
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  guard.child = 0;
  CHECK_FALSE(usage.read(child, t0 + 3'000'000'000, std::chrono::nanoseconds(0)));
  usage.forget();
  CHECK_FALSE(usage.read(-1, t0 + 4'000'000'000, std::chrono::nanoseconds(0)));
}

namespace {
volatile sig_atomic_t g_touch = 0;
}  // namespace

TEST_CASE("a worker's resident set is read again when it ran, or after kRssMaxAge when it did not",
          "[process][usage]") {
  using forkpool::supervisor::kRssMaxAge;
  using forkpool::supervisor::WorkerUsage;
  constexpr std::size_t kRegion = 16u << 20;
  // Two regions the child maps but does not touch: the first filled from here while the
  // child sleeps (process_vm_writev faults its pages into the child's memory without the
  // child running), the second by the child itself once told to.
  void* written = ::mmap(nullptr, kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* touched = ::mmap(nullptr, kRegion, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(written != MAP_FAILED);
  REQUIRE(touched != MAP_FAILED);
  struct sigaction touch{};
  touch.sa_handler = [](int) { g_touch = 1; };
  sigemptyset(&touch.sa_mask);
  struct sigaction old_usr1{};
  REQUIRE(::sigaction(SIGUSR1, &touch, &old_usr1) == 0);
  const pid_t child = ::fork();
  if (child == 0) {
    while (!g_touch) ::pause();
    std::memset(touched, 1, kRegion);
    for (;;) ::pause();
  }
  ::sigaction(SIGUSR1, &old_usr1, nullptr);
  ::munmap(written, kRegion);
  ::munmap(touched, kRegion);
  REQUIRE(child > 0);
  TreeGuard guard{child};
  auto sleeping = [&] {
    // /proc/PID/stat: "pid (comm) S ..."; the test binary's name has no ')'.
    FILE* f = std::fopen(("/proc/" + std::to_string(child) + "/stat").c_str(), "r");
    if (f == nullptr) return false;
    char buf[256] = {};
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    const char* close = std::strrchr(buf, ')');
    return n > 0 && close != nullptr && close[1] == ' ' && close[2] == 'S';
  };
  auto direct_rss = [&] {
    const auto d = forkpool::shm::read_proc_stats(child);
    return d ? d->rss_bytes : 0;
  };
  REQUIRE(wait_until(sleeping, std::chrono::seconds(10)));

  WorkerUsage usage;
  const std::int64_t t0 = 1'000'000'000, second = 1'000'000'000;
  const auto first = usage.read(child, t0);
  REQUIRE(first);

  std::vector<char> ones(kRegion, 1);
  iovec local{ones.data(), kRegion}, remote{written, kRegion};
  REQUIRE(::process_vm_writev(child, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(kRegion));
  REQUIRE(direct_rss() >= first->rss_bytes + kRegion / 2);

  // Past the max age, but the child has not run: its CPU time is read again, its
  // resident set is not.
  const auto idle = usage.read(child, t0 + 2 * second);
  REQUIRE(idle);
  CHECK(idle->cpu_time_us == first->cpu_time_us);
  CHECK(idle->rss_bytes == first->rss_bytes);
  // A max age of 0 (the max_memory sampler) reads it whatever the clock says.
  const auto sampled = usage.read(child, t0 + 2 * second, std::chrono::nanoseconds(0));
  REQUIRE(sampled);
  CHECK(sampled->rss_bytes >= first->rss_bytes + kRegion / 2);
  // Past kRssMaxAge after that read it is read again, run or not.
  const std::int64_t bound = std::chrono::nanoseconds(kRssMaxAge).count();
  const auto stale = usage.read(child, t0 + 2 * second + bound);
  REQUIRE(stale);
  CHECK(stale->rss_bytes >= first->rss_bytes + kRegion / 2);

  // The child runs and grows: shown at the next read past the max age, well within
  // kRssMaxAge of the last read of its resident set.
  REQUIRE(::kill(child, SIGUSR1) == 0);
  REQUIRE(wait_until([&] { return direct_rss() >= stale->rss_bytes + kRegion / 2 && sleeping(); },
                     std::chrono::seconds(10)));
  const auto ran = usage.read(child, t0 + 4 * second + bound);
  REQUIRE(ran);
  CHECK(ran->cpu_time_us > stale->cpu_time_us);
  CHECK(ran->rss_bytes >= stale->rss_bytes + kRegion / 2);
}

TEST_CASE("catches_signal reads whether a process has a handler for a signal", "[process][signals]") {
  using forkpool::supervisor::catches_signal;
  struct sigaction handler{}, old_usr1{}, old_usr2{};
  handler.sa_handler = [](int) {};
  sigemptyset(&handler.sa_mask);
  REQUIRE(::sigaction(SIGUSR1, &handler, &old_usr1) == 0);
  struct sigaction dfl{};
  dfl.sa_handler = SIG_DFL;
  REQUIRE(::sigaction(SIGUSR2, &dfl, &old_usr2) == 0);
  CHECK(catches_signal(::getpid(), SIGUSR1) == std::optional<bool>(true));
  CHECK(catches_signal(::getpid(), SIGUSR2) == std::optional<bool>(false));
  ::sigaction(SIGUSR1, &old_usr1, nullptr);
  ::sigaction(SIGUSR2, &old_usr2, nullptr);
  // A process that is gone: nothing to say.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  ::waitpid(child, nullptr, 0);
  CHECK_FALSE(catches_signal(child, SIGTERM).has_value());
}
