// SPDX-License-Identifier: Apache-2.0
// Unit tests of the master's pure policies: no processes, no loop.

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <map>
#include <random>

#include "supervisor/process/exit_status.hpp"
#include "supervisor/pool/respawn_policy.hpp"
#include "supervisor/process/spawn_plan.hpp"
#include "supervisor/process/stop_plan.hpp"
#include "supervisor/dispatch/idle_workers.hpp"
#include "supervisor/dispatch/worker_choice.hpp"

using namespace forkpool::supervisor;
using namespace std::chrono_literals;
namespace cfg = forkpool::config;

TEST_CASE("least-busy picks the fewest in flight and breaks ties by the most recently idle", "[policy]") {
  WorkerChoice choice(cfg::Balance::LeastBusy);
  std::vector<Candidate> c = {{true, 2, 10}, {true, 1, 5}, {true, 1, 9}, {false, 0, 99}};
  CHECK(choice.pick(c) == std::optional<std::size_t>(2));
  c[2].in_flight = 3;
  CHECK(choice.pick(c) == std::optional<std::size_t>(1));
  for (auto& x : c) x.accepts_work = false;
  CHECK(!choice.pick(c).has_value());
  CHECK(!choice.pick({}).has_value());
}

TEST_CASE("round-robin takes accepting workers in turn and skips the others", "[policy]") {
  WorkerChoice choice(cfg::Balance::RoundRobin);
  std::vector<Candidate> c = {{true, 0, 0}, {false, 0, 0}, {true, 5, 0}};
  CHECK(choice.pick(c) == std::optional<std::size_t>(0));
  CHECK(choice.pick(c) == std::optional<std::size_t>(2));
  CHECK(choice.pick(c) == std::optional<std::size_t>(0));
}

namespace {

// A worker as least-busy dispatch sees it, for IdleWorkers.
struct FakeWorker {
  bool accepting = true;  // ready, channel open
  std::size_t in_flight = 0;
  std::uint64_t idle_order = 0;
};

}  // namespace

TEST_CASE("the idle stack gives what least-busy over every worker gives, whenever a worker is idle", "[policy]") {
  // Random events against a pool of 12; after each, taking from the stack must give the
  // worker WorkerChoice picks among all of them, whenever that one is idle.
  std::mt19937 rng(20261203);
  std::vector<FakeWorker> w(12);
  std::uint64_t clock = 0;
  IdleWorkers<FakeWorker> idle;
  auto still_idle = [](const FakeWorker* x, std::uint64_t order) {
    return x->accepting && x->in_flight == 0 && x->idle_order == order;
  };
  auto rebuild = [&] {
    std::vector<IdleWorkers<FakeWorker>::Entry> e;
    for (auto& x : w)
      if (still_idle(&x, x.idle_order)) e.push_back({&x, x.idle_order});
    idle.reset(std::move(e));
  };
  for (auto& x : w) x.idle_order = ++clock;
  rebuild();
  WorkerChoice choice(cfg::Balance::LeastBusy);
  int picked_idle = 0;
  for (int step = 0; step < 20000; ++step) {
    FakeWorker& x = w[rng() % w.size()];
    const unsigned event = rng() % 20;
    if (event < 9) {  // one of its connections finished
      if (x.in_flight > 0 && --x.in_flight == 0) {
        x.idle_order = ++clock;
        idle.push(&x, x.idle_order, 2 * w.size() + 4, still_idle);
      }
    } else if (event == 9) {  // its channel filled up, or took records again (the owner rebuilds then)
      x.accepting = !x.accepting;
      if (x.accepting) rebuild();
    } else {  // one connection to dispatch
      {
        std::vector<Candidate> all;
        for (auto& y : w) all.push_back({y.accepting && y.in_flight < 2, y.in_flight, y.idle_order});  // max_inflight 2
        const auto want = choice.pick(all);
        FakeWorker* got = idle.take(still_idle);
        if (want && w[*want].in_flight == 0) {
          REQUIRE(got == &w[*want]);
          ++picked_idle;
        } else {
          REQUIRE(got == nullptr);
        }
        if (want) ++w[*want].in_flight;
      }
    }
    REQUIRE(idle.size() <= 2 * w.size() + 4 + 1);
  }
  CHECK(picked_idle > 500);
}

TEST_CASE("the idle stack stays bounded when workers go idle and nothing is taken", "[policy]") {
  // Round-robin dispatch, or a pool where DONEs outnumber dispatches for a while: pushes
  // only. Found by a probe: the stack grew by an entry per request.
  std::vector<FakeWorker> w(8);
  std::uint64_t clock = 0;
  IdleWorkers<FakeWorker> idle;
  auto still_idle = [](const FakeWorker* x, std::uint64_t order) {
    return x->accepting && x->in_flight == 0 && x->idle_order == order;
  };
  const std::size_t limit = 2 * w.size() + 4;
  for (int i = 0; i < 100000; ++i) {
    FakeWorker& x = w[static_cast<std::size_t>(i) % w.size()];
    x.idle_order = ++clock;  // it took a connection and finished it
    idle.push(&x, x.idle_order, limit, still_idle);
    REQUIRE(idle.size() <= limit + 1);
  }
  // What is left is every worker, most recently idle on top.
  for (std::size_t i = w.size(); i-- > 0;) CHECK(idle.take(still_idle) == &w[(100000 - w.size() + i) % w.size()]);
  CHECK(idle.take(still_idle) == nullptr);
}

TEST_CASE("backoff doubles from the first delay up to the maximum with 20 percent jitter", "[policy]") {
  std::mt19937_64 rng(42);
  Backoff b(100ms, 1000ms);
  const double expected[] = {100, 200, 400, 800, 1000, 1000};
  for (double e : expected) {
    const auto d = b.next(rng).count();
    CHECK(d >= static_cast<long>(e * 0.8));
    CHECK(d <= static_cast<long>(e * 1.2) + 1);
  }
  b.reset();
  CHECK(b.next(rng).count() <= 121);
  Backoff zero(0ms, 0ms);
  CHECK(zero.next(rng).count() == 0);
}

TEST_CASE("the first crash in a row of a worker that had started is restarted at once, then the delays apply",
          "[policy]") {
  std::mt19937_64 rng(42);
  Backoff b(100ms, 1000ms);
  CHECK(b.next(rng, true).count() == 0);
  // The second crash in a row waits restart_delay, then the doubling goes on, whether or
  // not those workers had started.
  const double expected[] = {100, 200, 400};
  for (double e : expected) {
    const auto d = b.next(rng, true).count();
    CHECK(d >= static_cast<long>(e * 0.8));
    CHECK(d <= static_cast<long>(e * 1.2) + 1);
  }
  // A worker that never started gets no free restart, even as the first crash.
  b.reset();
  CHECK(b.next(rng, false).count() >= 80);
  // After a healthy run (reset) the next first crash is free again.
  b.reset();
  CHECK(b.next(rng, true).count() == 0);
}

TEST_CASE("a worker never started when it was not ready or died within its first second", "[policy]") {
  CHECK(never_started(false, 0ms));
  CHECK(never_started(false, 30s));  // notify: killed by ready_timeout
  CHECK(never_started(true, 999ms));  // exec: ready at exec, dead at once
  CHECK(!never_started(true, 1s));
  CHECK(!never_started(true, 10min));
}

TEST_CASE("starts that came to nothing are counted in a row, whatever the time between them", "[policy]") {
  StartStreak s;
  CHECK(s.record(true) == 1);
  CHECK(s.record(true) == 2);
  CHECK(s.record(false) == 0);  // one worker that started ends the streak
  CHECK(s.record(true) == 1);
  CHECK(s.length() == 1);
  s.reset();
  CHECK(s.length() == 0);
  // No clock at all: the backoff can stretch the streak over any time.
  for (int i = 0; i < 11; ++i) s.record(true);
  CHECK(s.length() == 11);
  CHECK(kSpawnFailuresInARow == 3);
}

TEST_CASE("flapping means more crashes than the limit within the window", "[policy]") {
  FlapDetector f(3, 10s);
  const auto t = Clock::now();
  CHECK(!f.record(t));
  CHECK(!f.record(t + 1s));
  CHECK(!f.record(t + 2s));
  CHECK(f.record(t + 3s));
  FlapDetector g(2, 10s);
  CHECK(!g.record(t));
  CHECK(!g.record(t + 20s));  // the first crash left the window
  CHECK(!g.record(t + 21s));
  CHECK(g.record(t + 22s));
}

TEST_CASE("exits are classified once: requested, clean, crashed or fatal", "[policy]") {
  const int status1 = W_EXITCODE(1, 0);
  const int status0 = W_EXITCODE(0, 0);
  const int status78 = W_EXITCODE(78, 0);
  const int killed = SIGKILL;  // WIFSIGNALED with WTERMSIG 9
  CHECK(classify_exit({status1, true, true, 5s, true}) == ExitReason::Requested);
  CHECK(classify_exit({status0, false, true, 5s, true}) == ExitReason::Clean);
  CHECK(classify_exit({status1, false, true, 5s, true}) == ExitReason::Crashed);
  CHECK(classify_exit({killed, false, true, 5s, true}) == ExitReason::Crashed);
  CHECK(classify_exit({status78, false, true, 500ms, true}) == ExitReason::Fatal);
  CHECK(classify_exit({status78, false, true, 2s, true}) == ExitReason::Crashed);
  CHECK(classify_exit({status78, false, false, 5s, false}) == ExitReason::Fatal);
  CHECK(classify_exit({status78, false, true, 100ms, false}) == ExitReason::Crashed);
}

TEST_CASE("exit lines follow one format", "[policy]") {
  CHECK(describe_exit("web", 3, 1234, SIGKILL, 12300ms) == "worker web[3] pid 1234 exited on signal 9 (after 12.3s)");
  CHECK(describe_exit("web", 0, 7, W_EXITCODE(1, 0), 850ms) == "worker web[0] pid 7 exited with status 1 (after 850ms)");
  CHECK(format_uptime(192s) == "3m12s");
  CHECK(format_uptime(7200s) == "2h00m");
}

TEST_CASE("stop plans are data: graceful, immediate and signal-then-kill", "[policy]") {
  cfg::PoolConfig p;
  p.dispatch = cfg::Dispatch::Shared;
  p.stop_signal = SIGINT;
  p.graceful_timeout = 7s;
  const auto g = graceful_stop(p);
  REQUIRE(g.size() == 2);
  CHECK(g[0].signal == SIGINT);
  CHECK(g[0].after == 0ms);
  CHECK(!g[0].whole_group);
  CHECK(g[1].signal == SIGKILL);
  CHECK(g[1].after == 7s);
  CHECK(g[1].whole_group);
  // Master dispatch with listeners: end of work first, the signal a second later.
  p.dispatch = cfg::Dispatch::Master;
  p.listen.push_back(cfg::ListenAddress{});
  const auto m = graceful_stop(p);
  CHECK(m[0].signal == SIGINT);
  CHECK(m[0].after == kEndOfWorkFirst);
  CHECK(m[1].after == 7s);
  CHECK(immediate_kill().size() == 1);
  CHECK(signal_then_kill(SIGKILL).size() == 1);
  CHECK(signal_then_kill(SIGTERM)[1].after == kSignalThenKill);
}

TEST_CASE("a spawn plan numbers fds, substitutes placeholders and filters inherited variables", "[policy]") {
  ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  ::setenv("FORKPOOL_POOL", "parent", 1);
  ::setenv("SOME_VAR", "kept", 1);
  cfg::PoolConfig p;
  p.name = "web";
  p.command = {"/bin/echo", "--id={pool}-{worker}", "${pool}-{pool}"};
  p.env = {{"GREETING", "hi {worker}"}, {"LITERAL", "${worker}"}};
  WorkerContext w;
  w.worker = 3;
  w.generation = 2;
  w.stdin_fd = 10;
  w.stdout_fd = 11;
  w.stderr_fd = 12;
  w.channel_fd = 13;
  w.scoreboard_fd = 14;
  w.listener_fds = {20, 21};
  w.listener_texts = {"tcp://127.0.0.1:1", "tcp://127.0.0.1:2"};
  const SpawnPlan plan = build_spawn_plan(p, w);
  CHECK(plan.executable == "/bin/echo");
  CHECK(std::string(plan.argv[1]) == "--id=web-3");
  // "${pool}" came from "$${pool}" in the file: a literal for a shell.
  CHECK(std::string(plan.argv[2]) == "${pool}-web");
  CHECK(plan.argv.back() == nullptr);
  std::vector<std::pair<int, int>> moves;
  for (auto m : plan.fds) moves.emplace_back(m.from, m.to);
  CHECK(moves == std::vector<std::pair<int, int>>{{10, 0}, {11, 1}, {12, 2}, {20, 3}, {21, 4}, {13, 5}, {14, 6}});
  std::map<std::string, std::string> env;
  for (const auto& kv : plan.env_storage) env[kv.substr(0, kv.find('='))] = kv.substr(kv.find('=') + 1);
  CHECK(env.count("NOTIFY_SOCKET") == 0);
  CHECK(env["FORKPOOL_POOL"] == "web");
  CHECK(env["FORKPOOL_WORKER"] == "3");
  CHECK(env["FORKPOOL_GENERATION"] == "2");
  CHECK(env["FORKPOOL_CHANNEL_FD"] == "5");
  CHECK(env["FORKPOOL_SCOREBOARD_FD"] == "6");
  CHECK(env["FORKPOOL_LISTENERS"] == "tcp://127.0.0.1:1 tcp://127.0.0.1:2");
  CHECK(env["LISTEN_FDS"] == "2");
  CHECK(env["LISTEN_FDNAMES"] == "web-0:web-1");
  CHECK(env["GREETING"] == "hi 3");
  CHECK(env["LITERAL"] == "${worker}");
  CHECK(env["SOME_VAR"] == "kept");
  CHECK(plan.listen_pid_digits != nullptr);
  p.clear_env = true;
  const SpawnPlan bare = build_spawn_plan(p, w);
  for (const auto& kv : bare.env_storage) CHECK(kv.rfind("SOME_VAR=", 0) == std::string::npos);
}
