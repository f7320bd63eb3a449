// SPDX-License-Identifier: Apache-2.0
// Backoff and flapping rules that only show over a worker's history: the doubling starts
// over after a healthy run, and replacements that keep failing make the pool fail.

#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "support/control_client.hpp"
#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

// Every "starts again in X" delay logged for worker web[0], in milliseconds.
std::vector<double> respawn_delays_ms(const MasterProcess& master) {
  std::vector<double> out;
  for (const std::string& text : master.all_matches(R"(worker web\[0\] starts again in ([0-9.]+m?s))")) {
    const double value = std::stod(text);
    out.push_back(text.ends_with("ms") ? value : value * 1000.0);
  }
  return out;
}

}  // namespace

TEST_CASE("a healthy run of 10 s starts the backoff doubling over", "[supervisor][backoff]") {
  TempDir dir;
  // Runs 1 to 3 crash at once, run 4 stays up 11 s before it crashes, run 5 stays.
  write_file(dir / "worker.sh",
             "#!/bin/sh\n"
             "n=$(cat \"$0.count\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$0.count\"\n"
             "case $n in 1|2|3) exit 1;; 4) sleep 11; exit 1;; *) exec sleep 600;; esac\n",
             0755);
  write_file(dir / "f.toml", "[pools.web]\ncommand = [\"" + (dir / "worker.sh").string() +
                                 "\"]\nworkers = 1\nrestart_delay = \"400ms\"\nrestart_delay_max = \"1m\"\n"
                                 "flap_restarts = 100\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(wait_until([&] { return respawn_delays_ms(master).size() >= 4; }, 40s));
  const auto delays = respawn_delays_ms(master);
  INFO(master.log());
  // 400 ms doubling, with +-20 % jitter: about 400, 800, 1600 ms...
  CHECK(delays[0] < 500);
  CHECK(delays[1] > 600);
  CHECK(delays[2] > 1200);
  // ...and after the 11 s run it starts over at about 400 ms, not 3200 ms.
  CHECK(delays[3] < 500);
}

TEST_CASE("replacements that keep crashing make their pool fail while the current worker keeps serving",
          "[supervisor][backoff][flap]") {
  TempDir dir;
  auto config = [&](const std::string& command) {
    return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" + command +
           "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\nrestart_delay = \"50ms\"\n"
           "flap_restarts = 2\nflap_window = \"1m\"\nready = \"notify\"\n";
  };
  write_file(dir / "f.toml", config(hello_binary().string()));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const pid_t serving = master.wait_worker_started("web", 0);

  // A deploy of a program that exits at once: its replacements crash, one after another,
  // before they are ready (ready = "notify"; with "exec" a program that execs is ready
  // at once and takes over before it crashes).
  write_file(dir / "f.toml", config("/bin/false"));
  ControlClient c(dir / "ctl.sock");
  REQUIRE(c.request({{"cmd", "reload"}}).value("ok", false));
  CHECK(!master.wait_log("pool web failed: 3 unplanned exits within flap_window", 30s).empty());
  // No more replacements after that, and the worker that was serving still does.
  const auto crashes = master.all_matches(R"(worker web\[0\] pid ([0-9]+) exited with status 1)").size();
  CHECK(crashes == 3);
  const auto r = http_get(addr, "/", 10s);
  REQUIRE(r.has_value());
  CHECK(r->headers.at("x-worker-pid") == std::to_string(serving));
}

namespace {

// The serving worker web[0] once it has been up `seconds` (from status).
pid_t serving_worker_up(ControlClient& c, double seconds) {
  pid_t pid = 0;
  wait_until([&] {
    const nlohmann::json s = c.request({{"cmd", "status"}});
    if (!s.contains("pools")) return false;
    for (const auto& w : s["pools"][0]["workers"])
      if (w.value("role", "") == "serving" && w.value("state", "") != "starting" &&
          w.value("uptime_s", 0.0) >= seconds) {
        pid = w.value("pid", 0);
        return true;
      }
    return false;
  }, 20s);
  return pid;
}

}  // namespace

TEST_CASE("a worker that was serving is replaced at once when it dies, and the second crash in a row waits",
          "[supervisor][backoff]") {
  TempDir dir;
  write_file(dir / "f.toml", "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
                                 hello_binary().string() +
                                 "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\nrestart_delay = \"1500ms\"\n");
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  ControlClient c(dir / "ctl.sock");

  // Up and ready past its first second: a healthy worker. Its crash costs no delay.
  const pid_t first = serving_worker_up(c, 1.1);
  REQUIRE(first > 0);
  REQUIRE(::kill(first, SIGKILL) == 0);
  REQUIRE(wait_until([&] { return respawn_delays_ms(master).size() == 1; }));
  CHECK(respawn_delays_ms(master)[0] == 0);
  const pid_t second = master.wait_worker_started_after("web", 0, first);
  REQUIRE(second > 0);
  REQUIRE(wait_until([&] {
    const auto r = http_get(addr, "/", 5s);
    return r && r->status == 200;
  }));

  // Its replacement dies too, before a healthy run of 10 s: now restart_delay applies.
  REQUIRE(serving_worker_up(c, 1.1) == second);
  REQUIRE(::kill(second, SIGKILL) == 0);
  REQUIRE(wait_until([&] { return respawn_delays_ms(master).size() == 2; }));
  CHECK(respawn_delays_ms(master)[1] >= 1200);  // 1.5 s, +-20 %
  CHECK(respawn_delays_ms(master)[1] <= 1800);
}
