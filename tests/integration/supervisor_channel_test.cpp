// SPDX-License-Identifier: Apache-2.0
// Issue 10, defects 11 and 8 (the master's part): a worker that closed its channel, or
// that keeps sending malformed records, is taken out of dispatch and replaced; a worker
// stopped with SIGSTOP still gets its stop signal at shutdown.

#include <signal.h>

#include "integration/test_common.hpp"
#include "support/http_client.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;

namespace {

std::string dispatched_testworker(const std::string& args) {
  return supervisor_section() + testworker_pool("web", 1, args,
                                                "listen = [\"tcp://127.0.0.1:0\"]\nrestart_delay = \"20ms\"\n");
}

// The state letter of /proc/PID/stat ('T' while stopped by a signal).
char process_state(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
}

}  // namespace

TEST_CASE("a worker that closed its channel is stopped and replaced instead of staying idle for ever",
          "[supervisor][channel]") {
  Setup s(dispatched_testworker(", \"--close-channel\""));
  const pid_t first = s.master->wait_worker_started("web", 0);
  REQUIRE(first > 0);
  CHECK(!s.master->wait_log("\\[worker.broken\\] worker web\\[0\\] pid " + std::to_string(first) +
                                " closed its channel and still runs 5.0s later, so it can get no more work; "
                                "stopping it",
                            30s)
             .empty());
  CHECK(!s.master->wait_log("worker web\\[0\\] pid " + std::to_string(first) + " exited").empty());
  CHECK(s.master->wait_worker_started_after("web", 0, first) > 0);
  stop_master(*s.master);
}

TEST_CASE("a worker that closes its channel on its way out is not taken for broken", "[supervisor][channel]") {
  // As a program does that stops on a signal someone else sent it: it closes its channel,
  // finishes, and exits 0 within kChannelClosedGrace. That is an ordinary exit.
  Setup s(dispatched_testworker(", \"--close-channel\", \"--exit-after-ms\", \"1000\""));
  const pid_t first = s.master->wait_worker_started("web", 0);
  REQUIRE(first > 0);
  CHECK(!s.master->wait_log("worker web\\[0\\] pid " + std::to_string(first) + " exited with status 0", 30s)
             .empty());
  CHECK(s.master->wait_worker_started_after("web", 0, first) > 0);
  CHECK(s.master->all_matches("(\\[worker.broken\\][^\n]*)").empty());
  stop_master(*s.master);
}

TEST_CASE("a worker that keeps sending malformed records is replaced", "[supervisor][channel]") {
  // An empty record before each DONE: it serves, but breaks the protocol on every
  // connection. A burst is tolerated (rate-limited warnings); ten seconds of it are not.
  Setup s(supervisor_section() +
          testworker_pool("web", 1, ", \"--channel-ready\", \"--serve\", \"--junk-before-done\"",
                          "listen = [\"tcp://127.0.0.1:0\"]\nready = \"notify\"\nrestart_delay = \"20ms\"\n"));
  const std::string addr = s.master->wait_listen_address("web");
  const pid_t first = s.master->wait_worker_started("web", 0);
  REQUIRE(first > 0);
  const std::string broken = "\\[worker.broken\\] worker web\\[0\\] pid " + std::to_string(first) +
                             " kept sending malformed channel records \\(16 or more over 10.0s\\); stopping it";
  // Traffic until the master gives up on it: each request brings one more bad record.
  CHECK(wait_until([&] {
    http_get(addr, "/", 5s);
    return !s.master->all_matches("(" + broken + ")").empty();
  }, 60s));
  CHECK(s.master->wait_worker_started_after("web", 0, first) > 0);
  stop_master(*s.master);
}

TEST_CASE("a worker stopped as broken counts towards flapping however long it ran", "[supervisor][channel]") {
  // Finding a worker broken takes 10 s or more, and it then exits cleanly when told to:
  // that exit was taken for a healthy worker's (no flap, backoff reset), so a program
  // broken this way was restarted for ever. With flap_restarts = 1 the second fails the pool.
  Setup s(supervisor_section() +
          testworker_pool("web", 1, ", \"--channel-ready\", \"--serve\", \"--junk-before-done\"",
                          "listen = [\"tcp://127.0.0.1:0\"]\nready = \"notify\"\nrestart_delay = \"20ms\"\n"
                          "flap_restarts = 1\nflap_window = \"10m\"\n"));
  const std::string addr = s.master->wait_listen_address("web");
  auto c = s.client();
  CHECK(wait_until([&] {
    http_get(addr, "/", 5s);
    return pool_state(c, "web") == "failed";
  }, 90s));
  CHECK(s.master->all_matches("(\\[worker.broken\\] worker web\\[0\\])").size() == 2);
  CHECK(!s.master->wait_log("2 unplanned exits within flap_window").empty());
  stop_master(*s.master);
}

TEST_CASE("a worker stopped with SIGSTOP is woken to act on its stop signal at shutdown", "[supervisor][channel]") {
  // Only a SIGCONT lets it see the SIGTERM: without one it would sit until the minute's
  // SIGKILL, long after the deadline below. READY=1 comes once its handlers are set, so
  // the SIGTERM finds them.
  Setup s(supervisor_section("shutdown_timeout = \"2m\"") +
          testworker_pool("web", 1, ", \"--notify-after-ms\", \"0\"",
                          "graceful_timeout = \"1m\"\nready = \"notify\"\n"));
  const pid_t worker = s.master->wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  REQUIRE(!s.master->wait_log("\\[master.ready\\]").empty());
  REQUIRE(::kill(worker, SIGSTOP) == 0);
  REQUIRE(wait_until([&] { return process_state(worker) == 'T'; }));
  s.master->signal(SIGTERM);
  const auto status = s.master->wait_exit(20s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(!s.master->wait_log("worker web\\[0\\] pid " + std::to_string(worker) + " exited with status 0").empty());
  CHECK(s.master->all_matches("(stop_escalated)").empty());
}
