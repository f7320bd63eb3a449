// SPDX-License-Identifier: Apache-2.0
// Eight worker processes hammer their own slots while the parent snapshots continuously:
// no snapshot may show a torn slot, and the totals must be exact at the end.

#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <map>
#include <vector>

#include "shm/scoreboard.hpp"
#include "shm/slot_writer.h"

namespace shm = forkpool::shm;

namespace {

constexpr std::uint32_t kWriters = 8;
// Each writer makes at least kMinConnections busy+idle pairs, then goes on until the
// parent has seen enough while they wrote (on a loaded machine that takes longer), and
// stops at kMaxConnections at the latest. It reports its count through a pipe.
constexpr std::uint64_t kMinConnections = 200'000;
constexpr std::uint64_t kMaxConnections = 20'000'000;

bool told_to_stop(int stop_pipe) {
  char byte;
  return ::read(stop_pipe, &byte, 1) == 0;  // EOF: the parent closed its end
}

// The child never returns into Catch2: it reports through its exit code and the pipe.
[[noreturn]] void run_writer(int fd, int start_pipe, int stop_pipe, int count_pipe) {
  fp_slot_writer w;
  if (fp_slot_writer_attach(&w, fd) != 0) ::_exit(10);
  fp_slot_writer_set_ready(&w);
  // Lowest priority: eight busy writers would otherwise starve the one reader on a
  // two-core machine, and it would see little besides the final state.
  if (::nice(19) == -1 && errno != 0) ::_exit(12);
  // Wait for the parent to be snapshotting already: otherwise, forking being slow under
  // sanitizers, the first writers could finish before the parent looks at all.
  char byte = 0;
  if (::read(start_pipe, &byte, 1) != 0) ::_exit(11);
  // Fake timestamps tie the fields together: while busy with connection k (0-based),
  // busy_since == k + 1 == connections_handled + 1; while idle it is 0.
  std::uint64_t k = 0;
  for (; k < kMaxConnections; ++k) {
    fp_slot_writer_mark_busy(&w, static_cast<std::int64_t>(k + 1));
    fp_slot_writer_mark_idle(&w);
    if (k + 1 >= kMinConnections && (k & 4095) == 0 && told_to_stop(stop_pipe)) {
      ++k;
      break;
    }
  }
  fp_slot_writer_detach(&w);
  const std::uint64_t report[2] = {static_cast<std::uint64_t>(::getpid()), k};
  if (::write(count_pipe, report, sizeof report) != static_cast<ssize_t>(sizeof report)) ::_exit(13);
  ::_exit(0);
}

// Empty when the slot is self-consistent, else what is wrong.
std::string torn(const shm::WorkerSnapshot& s) {
  if ((s.anomalies & ~shm::kAnomalyNoConsistentRead) != 0) {
    return "anomalies " + shm::describe_anomalies(s.anomalies);
  }
  const auto busy_since = static_cast<std::uint64_t>(s.busy_since_ns);
  switch (s.state) {
    case shm::WorkerState::Busy:
      if (s.in_flight == 1 && busy_since == s.connections_handled + 1) return {};
      break;
    case shm::WorkerState::Idle:
      if (s.in_flight == 0 && busy_since == 0) return {};
      break;
    default:
      break;
  }
  return "state " + std::string(shm::to_string(s.state)) + " in_flight " +
         std::to_string(s.in_flight) + " handled " + std::to_string(s.connections_handled) +
         " busy_since " + std::to_string(busy_since);
}

}  // namespace

TEST_CASE("shm concurrent writers never show a torn slot and totals are exact", "[shm][process]") {
  shm::Scoreboard sb(1, kWriters);
  REQUIRE_FALSE(sb.make_pages(kWriters));
  int start[2], stop[2], counts[2];
  REQUIRE(::pipe(start) == 0);
  REQUIRE(::pipe2(stop, O_NONBLOCK) == 0);
  REQUIRE(::pipe(counts) == 0);
  std::vector<pid_t> pids;
  for (std::uint32_t i = 0; i < kWriters; ++i) {
    sb.assign_slot(i, 0, i);
    REQUIRE_FALSE(sb.start_worker(i, 1));
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(start[1]);
      ::close(stop[1]);
      run_writer(sb.slot_fd(i), start[0], stop[0], counts[1]);
    }
    sb.set_pid(i, pid, 1);
    sb.mark_ready(i);
    pids.push_back(pid);
  }

  std::vector<std::uint64_t> last_handled(kWriters, 0);
  ::close(start[0]);
  ::close(stop[0]);
  ::close(counts[1]);
  ::close(start[1]);  // EOF: all writers go
  bool stop_sent = false;

  std::uint64_t snapshots = 0;
  std::uint64_t snapshots_mid_write = 0;
  std::uint64_t fresh_reads_mid_write = 0;  // slot copies that were not a fallback
  std::uint64_t busy_seen = 0;
  std::uint64_t fallbacks = 0;
  std::string first_failure;
  std::size_t running = pids.size();
  std::vector<int> statuses(kWriters, -1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (running > 0 && std::chrono::steady_clock::now() < deadline) {
    const auto snap = sb.snapshot();
    ++snapshots;
    bool mid_write = false;
    for (const auto& w : snap.workers) {
      if (w.connections_handled > 0 && w.connections_handled < kMaxConnections) {
        mid_write = true;
        if ((w.anomalies & shm::kAnomalyNoConsistentRead) == 0) ++fresh_reads_mid_write;
      }
      if (w.anomalies & shm::kAnomalyNoConsistentRead) ++fallbacks;
      if (w.state == shm::WorkerState::Busy) ++busy_seen;
      if (auto why = torn(w); !why.empty() && first_failure.empty()) {
        first_failure = "slot " + std::to_string(w.slot) + ": " + why;
      }
      if (w.connections_handled < last_handled[w.slot] && first_failure.empty()) {
        first_failure = "slot " + std::to_string(w.slot) + ": counter went backwards";
      }
      last_handled[w.slot] = w.connections_handled;
    }
    if (mid_write) ++snapshots_mid_write;
    // Enough looked at while they wrote: let the writers finish.
    if (!stop_sent && snapshots_mid_write > 10 && fresh_reads_mid_write > 100) {
      ::close(stop[1]);
      stop_sent = true;
    }
    for (std::uint32_t i = 0; i < kWriters; ++i) {
      if (statuses[i] != -1) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        statuses[i] = status;
        --running;
      }
    }
  }
  if (!stop_sent) ::close(stop[1]);
  for (std::uint32_t i = 0; i < kWriters; ++i) {
    if (statuses[i] == -1) {
      ::kill(pids[i], SIGKILL);
      ::waitpid(pids[i], &statuses[i], 0);
    }
  }
  std::map<pid_t, std::uint64_t> reported;
  std::uint64_t report[2];
  while (::read(counts[0], report, sizeof report) == static_cast<ssize_t>(sizeof report))
    reported[static_cast<pid_t>(report[0])] = report[1];
  ::close(counts[0]);

  INFO("snapshots " << snapshots << " (" << snapshots_mid_write << " mid-write, "
                    << fresh_reads_mid_write << " fresh slot reads), busy seen " << busy_seen
                    << ", fallbacks " << fallbacks);
  CHECK(first_failure == "");
  for (std::uint32_t i = 0; i < kWriters; ++i) {
    INFO("writer " << i);
    CHECK(WIFEXITED(statuses[i]));
    CHECK(WEXITSTATUS(statuses[i]) == 0);
  }
  // The check above means something only if the parent really looked while they wrote.
  CHECK(snapshots_mid_write > 10);
  CHECK(fresh_reads_mid_write > 100);

  const auto final_snap = sb.snapshot();
  REQUIRE(reported.size() == kWriters);
  std::uint64_t total = 0, expected = 0;
  for (const auto& w : final_snap.workers) {
    INFO("slot " << w.slot);
    CHECK(w.anomalies == 0);
    CHECK(w.state == shm::WorkerState::Idle);
    CHECK(w.connections_handled == reported[pids[w.slot]]);
    CHECK(w.connections_handled >= kMinConnections);
    total += w.connections_handled;
    expected += reported[pids[w.slot]];
  }
  CHECK(total == expected);
}
