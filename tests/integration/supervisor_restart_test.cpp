// SPDX-License-Identifier: Apache-2.0
// Crash recovery of the real master: respawn in the same slot, exponential backoff,
// flapping, EX_CONFIG, resizing with TTIN/TTOU, and worker output into the log.

#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "support/control_client.hpp"
#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

std::string pool_config(const std::string& pool_body) {
  return "[supervisor]\nlog_level = \"debug\"\n\n[pools.web]\n" + pool_body;
}

std::string tw(const std::string& args = "") {
  return "command = [\"" + testworker_binary().string() + "\"" + args + "]\n";
}

}  // namespace

TEST_CASE("a worker killed with SIGKILL is replaced in its slot and serves", "[supervisor][restart]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config("command = [\"" + hello_binary().string() +
                                         "\"]\ndispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:0\"]\n"
                                         "workers = 1\nrestart_delay = \"100ms\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!addr.empty());
  const pid_t old_pid = master.wait_worker_started("web", 0);
  REQUIRE(old_pid > 0);
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());

  ::kill(old_pid, SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t new_pid = master.wait_worker_started_after("web", 0, old_pid);
  REQUIRE(new_pid > 0);
  // restart_delay is 100ms: "promptly" against the 30 s cap of a broken backoff.
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  CHECK(!master.wait_log("worker web\\[0\\] pid " + std::to_string(old_pid) + " exited on signal 9").empty());
  CHECK(!master.wait_log("worker web\\[0\\] starts again in").empty());

  // The one worker of the pool is the replacement, so it answers every request.
  bool served = wait_until([&] {
    auto r = http_get(addr, "/");
    return r && r->status == 200 && r->headers["x-worker-pid"] == std::to_string(new_pid) &&
           r->headers["x-worker"] == "web-0";
  }, 10s);
  CHECK(served);
}

TEST_CASE("a worker that always fails backs off exponentially until the pool is failed", "[supervisor][restart]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config(tw(", \"--exit\", \"1\"") +
                                         "workers = 1\nrestart_delay = \"40ms\"\nrestart_delay_max = \"10s\"\n"
                                         "flap_restarts = 4\nflap_window = \"1m\"\n"));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("pool web failed: 5 unplanned exits within flap_window").empty());
  const auto delays = master.all_matches("worker web\\[0\\] starts again in ([0-9]+)ms");
  REQUIRE(delays.size() == 4);
  // 40, 80, 160, 320 ms each ±20 %: every delay is longer than the one before.
  for (std::size_t i = 1; i < delays.size(); ++i) CHECK(std::stoi(delays[i]) > std::stoi(delays[i - 1]));
  CHECK(std::stoi(delays[0]) >= 32);
  CHECK(std::stoi(delays[0]) <= 48);
  CHECK(master.all_matches("worker web\\[0\\] pid [0-9]+ started").size() == 5);
  CHECK(!master.wait_log("pool web is failed").empty());
}

TEST_CASE("exit 78 (EX_CONFIG) at start marks the pool failed at once", "[supervisor][restart]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config(tw(", \"--exit\", \"78\"") + "workers = 3\nrestart_delay = \"10ms\"\n"));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("pool web failed: worker [0-9] exited with status 78 \\(EX_CONFIG\\)").empty());
  CHECK(master.all_matches("(starts again in)").empty());
  // The workers already started may exit too, but nothing is started after the failure.
  // A pool starts its workers in batches (Pool::start_batch: 2, then more on a later loop
  // turn), so a worker of a later batch may never have been started.
  const std::size_t started = master.all_matches("pid [0-9]+ (started)").size();
  CHECK(started >= 1);
  CHECK(started <= 3);
  for (std::size_t i = 0; i < started; ++i)
    CHECK(!master.wait_log("worker web\\[" + std::to_string(i) + "\\] pid [0-9]+ exited").empty());
  CHECK(master.all_matches("pid [0-9]+ (started)").size() == started);
  // With ready = "exec" they counted as ready from the start, but an EX_CONFIG exit in
  // the first second is one "before it was ready": none was ever logged as ready.
  CHECK(master.all_matches("(is ready)").empty());
  CHECK(master.all_matches("(\\[worker.ready\\])").empty());
}

TEST_CASE("a worker with ready = exec is logged ready once its first second is over", "[supervisor][restart]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config(tw() + "workers = 1\n"));
  MasterProcess master(dir / "f.toml");
  const pid_t pid = master.wait_worker_started("web", 0);
  const auto spawned = master.wait_log("([0-9:.]+)Z info  \\[worker.spawn\\] worker web\\[0\\] pid " + std::to_string(pid));
  const auto ready = master.wait_log("([0-9:.]+)Z info  \\[worker.ready\\] worker web\\[0\\] pid " + std::to_string(pid) +
                                     " is ready");
  REQUIRE(spawned.size() > 1);
  REQUIRE(ready.size() > 1);
  // HH:MM:SS.mmm of the same day (the test runs for seconds): the ready line is at least
  // a second after the start.
  auto ms = [](const std::string& t) {
    return std::stol(t.substr(0, 2)) * 3'600'000 + std::stol(t.substr(3, 2)) * 60'000 +
           std::stol(t.substr(6, 2)) * 1000 + std::stol(t.substr(9, 3));
  };
  INFO(spawned[1].str() << " -> " << ready[1].str());
  const long gap = (ms(ready[1].str()) - ms(spawned[1].str()) + 86'400'000) % 86'400'000;
  CHECK(gap >= 990);  // libuv's loop clock may run a millisecond behind the wall clock
}

TEST_CASE("SIGTTIN and SIGTTOU add and remove a worker", "[supervisor][scale]") {
  TempDir dir;
  // ready = "notify": the test worker says READY only once its signal handlers are set,
  // so the SIGTERM that SIGTTOU brings cannot arrive before them.
  write_file(dir / "f.toml", pool_config(tw(", \"--notify-after-ms\", \"0\"") + "workers = 2\nready = \"notify\"\n"));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  master.signal(SIGTTIN);
  REQUIRE(!master.wait_log("pool web scales from 2 to 3 workers").empty());
  const pid_t third = master.wait_worker_started("web", 2);
  REQUIRE(third > 0);
  REQUIRE(!master.wait_log("worker web\\[2\\] pid " + std::to_string(third) + " is ready").empty());
  master.signal(SIGTTOU);
  REQUIRE(!master.wait_log("pool web scales from 3 to 2 workers").empty());
  CHECK(!master.wait_log("worker web\\[2\\] pid " + std::to_string(third) + " exited with status 0").empty());
  CHECK(wait_until([&] { return !process_alive(third); }));
  CHECK(master.all_matches("(starts again in)").empty());
}

TEST_CASE("a worker's output lines in the JSON log carry its pool, worker, pid, generation and stream",
          "[supervisor][output][logging]") {
  TempDir dir;
  write_file(dir / "f.toml", "[supervisor]\nlog_format = \"json\"\nlog_file = \"master.log\"\n\n[pools.web]\n" +
                                 tw(", \"--stdout\", \"hello from {worker}\", \"--stderr\", \"oops\"") +
                                 "workers = 1\nstdout = \"log\"\nstderr = \"log\"\n");
  MasterProcess master(dir / "f.toml");
  std::optional<nlohmann::json> out, err;
  pid_t pid = 0;  // from the worker.spawn line
  REQUIRE(wait_until([&] {
    std::ifstream in(dir / "master.log");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.value("event", "") == "worker.spawn") pid = j.value("pid", 0);
      if (!j.is_object() || j.value("event", "") != "worker.output") continue;
      (j.value("stream", "") == "stdout" ? out : err) = j;
    }
    return out && err && pid > 0;
  }));
  for (const auto& j : {*out, *err}) {
    INFO(j.dump());
    CHECK(j["pool"] == "web");
    CHECK(j["worker"] == 0);
    CHECK(j["pid"] == pid);
    CHECK(j["generation"] == 1);
  }
  CHECK((*out)["message"] == "web[0] stdout: hello from 0");
  CHECK((*err)["message"] == "web[0] stderr: oops");
}

TEST_CASE("stdout = \"log\" puts each line of the worker into the master's log", "[supervisor][output]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config(tw(", \"--stdout\", \"hello from {worker}\", \"--stderr\", \"oops\"") +
                                         "workers = 1\nstdout = \"log\"\nstderr = \"" + (dir / "err.txt").string() +
                                         "\"\n"));
  MasterProcess master(dir / "f.toml");
  CHECK(!master.wait_log("\\[worker.output\\] web\\[0\\] stdout: hello from 0").empty());
  CHECK(wait_until([&] {
    std::ifstream in(dir / "err.txt");
    std::string line;
    return std::getline(in, line) && line == "oops";
  }));
}

TEST_CASE("a worker flooding its stdout into the log does not stall the master", "[supervisor][output]") {
  TempDir dir;
  // `yes` writes as fast as the pipe takes it. The lines are read (and, below the log
  // level, dropped): the master must still get back to its loop and answer.
  write_file(dir / "f.toml", "[supervisor]\nlog_level = \"warn\"\ncontrol_socket = \"ctl.sock\"\n\n"
                             "[pools.flood]\ncommand = [\"/usr/bin/yes\"]\nworkers = 1\nstdout = \"log\"\n");
  MasterProcess master(dir / "f.toml");
  for (int i = 0; i < 3; ++i) {
    ControlClient c(dir / "ctl.sock");
    const auto reply = c.request({{"cmd", "status"}}, 5s);
    REQUIRE(reply.is_object());
    CHECK(reply["ok"] == true);
    CHECK(reply["pools"][0]["workers"][0]["state"] == "idle");
  }
  master.signal(SIGTERM);
  const auto status = master.wait_exit();
  REQUIRE(status.has_value());
  CHECK(WEXITSTATUS(*status) == 0);
}
