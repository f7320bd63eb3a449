// SPDX-License-Identifier: Apache-2.0
// The master as a systemd Type=notify service: READY=1 once every worker is ready,
// STATUS= summaries, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM. The
// test plays systemd's part with a datagram socket of its own.

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "support/fake_systemd.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

bool contains(const std::vector<std::string>& v, const std::string& needle) {
  for (const auto& s : v)
    if (s.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("under systemd the master reports READY STATUS WATCHDOG and STOPPING", "[supervisor][systemd]") {
  TempDir dir;
  FakeSystemd systemd(dir / "notify");
  REQUIRE(systemd.bound());
  write_file(dir / "f.toml", "[pools.web]\ncommand = [\"" + testworker_binary().string() +
                                 "\", \"--notify-after-ms\", \"100\"]\nready = \"notify\"\nworkers = 2\n\n"
                                 "[pools.later]\ncommand = [\"" + testworker_binary().string() +
                                 "\"]\nready = \"exec\"\nworkers = 1\n");
  MasterProcess master(dir / "f.toml", {}, {systemd.env(), "WATCHDOG_USEC=400000"});

  const auto before_ready = systemd.until("READY=1");
  INFO(before_ready.back());
  REQUIRE(before_ready.back() == "READY=1");
  // Both workers were ready before the master said so.
  INFO(master.log());
  CHECK(!master.all_matches("worker web\\[0\\] pid [0-9]+ (is ready)").empty());
  CHECK(!master.all_matches("worker web\\[1\\] pid [0-9]+ (is ready)").empty());
  // The summary follows the workers, and reads "2/2 ready" by the time READY=1 is sent.
  CHECK(contains(before_ready, "STATUS=web: 0/2 ready (starting)"));
  // A pool the start-up has not reached yet is starting too, not "stopped".
  CHECK(!contains(before_ready, "(stopped)"));
  CHECK(contains(before_ready, "STATUS=web: 2/2 ready"));
  // WATCHDOG_USEC=400ms: pings at half of it.
  CHECK(systemd.until("WATCHDOG=1").back() == "WATCHDOG=1");
  CHECK(systemd.until("WATCHDOG=1").back() == "WATCHDOG=1");

  master.signal(SIGTERM);
  CHECK(systemd.until("STOPPING=1").back() == "STOPPING=1");
  const auto status = master.wait_exit();
  REQUIRE(status.has_value());
  CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("a reload during start-up does not make the master ready before its workers are",
          "[supervisor][systemd][reload]") {
  // The reload moves the pools to the next generation; what they reported meanwhile was
  // looked at in the old one, which had none left: every pool counted as settled.
  TempDir dir;
  FakeSystemd systemd(dir / "notify");
  REQUIRE(systemd.bound());
  const auto pool = [](int workers) {
    return "[pools.web]\ncommand = [\"" + testworker_binary().string() +
           "\", \"--notify-after-ms\", \"1500\"]\nready = \"notify\"\nworkers = " + std::to_string(workers) + "\n";
  };
  write_file(dir / "f.toml", pool(2));
  MasterProcess master(dir / "f.toml", {}, {systemd.env()});
  REQUIRE(!master.wait_log("worker web\\[1\\] pid [0-9]+ started").empty());
  write_file(dir / "f.toml", pool(3));  // in place: one more worker, started by the commit
  master.signal(SIGHUP);
  REQUIRE(!master.wait_log("configuration generation 2").empty());
  const auto ready = systemd.until("READY=1", std::chrono::seconds(30));
  REQUIRE(ready.back() == "READY=1");
  // By then every worker said it was ready (1.5 s after its start), and the log agrees.
  const std::string log = master.log();
  INFO(log);
  const auto ready_at = log.find("[master.ready]");
  REQUIRE(ready_at != std::string::npos);
  for (int w = 0; w < 3; ++w) {
    const auto worker_ready = master.all_matches("(worker web\\[" + std::to_string(w) + "\\] pid [0-9]+ is ready)");
    REQUIRE(worker_ready.size() == 1);
    CHECK(log.find(worker_ready[0]) < ready_at);
  }
  master.signal(SIGTERM);
  CHECK(master.wait_exit().has_value());
}

TEST_CASE("without WATCHDOG_USEC the master sends no watchdog pings", "[supervisor][systemd]") {
  TempDir dir;
  FakeSystemd systemd(dir / "notify");
  REQUIRE(systemd.bound());
  write_file(dir / "f.toml", "[pools.web]\ncommand = [\"" + testworker_binary().string() + "\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml", {}, {systemd.env()});
  REQUIRE(systemd.until("READY=1").back() == "READY=1");
  master.signal(SIGTERM);
  const auto rest = systemd.until("STOPPING=1");
  CHECK(rest.back() == "STOPPING=1");
  CHECK(!contains(rest, "WATCHDOG=1"));
}
