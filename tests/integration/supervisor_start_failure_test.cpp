// SPDX-License-Identifier: Apache-2.0
// Issue 10, defect 2: a pool whose program cannot be started, or whose workers die before
// they are ready, must fail instead of retrying for ever, whatever the backoff delays;
// the master's readiness must not wait for it; spawns that never ran are counted apart
// from crashes, and the failing slot stays visible.

#include <sys/stat.h>

#include "integration/test_common.hpp"
#include "support/http_client.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;
namespace fs = std::filesystem;

namespace {

// A program the master can find and check at start, as deployed, that is then broken.
std::string script_pool(const std::string& name, const fs::path& script) {
  return "[pools." + name + "]\ncommand = [" + quoted(script.string()) +
         "]\nworkers = 1\nrestart_delay = \"20ms\"\nrestart_delay_max = \"40ms\"\n\n";
}

void check_failed_start(ControlClient& c, const std::string& pool, const std::string& error) {
  INFO("pool " << pool);
  REQUIRE(wait_until([&] { return pool_state(c, pool) == "failed"; }, 20s));
  const json p = pool_status(c, pool);
  INFO(p.dump());
  CHECK(counter(p, "spawn_failed") == 3);
  CHECK(counter(p, "crashed") == 0);
  // The slot whose start failed is still in the table, with the reason.
  REQUIRE(p["workers"].size() == 1);
  const json& w = p["workers"][0];
  CHECK(w["worker"] == 0);
  CHECK(w["state"] == "failed");
  CHECK(w["pid"] == 0);
  REQUIRE(w["last_error"].is_string());
  CHECK_THAT(w["last_error"].get<std::string>(), Catch::Contains(error));
}

}  // namespace

TEST_CASE("a program that cannot be executed fails its pool after three tries, and readiness does not wait for it",
          "[supervisor][start_failure]") {
  TempDir scripts;
  // Each passes the start-up check (an executable file) and fails at execve.
  const fs::path bad_interpreter = scripts / "bad-interpreter";
  write_file(bad_interpreter, "#!/nonexistent/interpreter\n", 0755);
  const fs::path not_a_program = scripts / "not-a-program";
  write_file(not_a_program, "this is neither ELF nor a script\n", 0755);
  const fs::path deleted = scripts / "deleted";
  const fs::path denied = scripts / "denied";
  const std::string run_worker = "#!/bin/sh\nexec " + quoted(testworker_binary().string()) + "\n";
  write_file(deleted, run_worker, 0755);
  write_file(denied, run_worker, 0755);

  Setup s(supervisor_section() + hello_pool("web", 1) + script_pool("interp", bad_interpreter) +
          script_pool("noexec", not_a_program) + script_pool("deleted", deleted) + script_pool("denied", denied));
  // Readiness comes although two pools never get a worker: it does not wait for failed pools.
  REQUIRE(!s.master->wait_log("\\[master.ready\\] start-up finished with failed pool\\(s\\): interp, noexec").empty());
  ControlClient c = s.client();
  REQUIRE(c.connected());
  check_failed_start(c, "interp", "execve " + bad_interpreter.string() + ": No such file or directory");
  check_failed_start(c, "noexec", "execve " + not_a_program.string() + ": Exec format error");
  CHECK(!s.master->wait_log("pool interp failed: its program could not be started 3 times in a row").empty());

  // A deploy that removes the program, or its permission, under running workers.
  REQUIRE(wait_until([&] { return pool_state(c, "deleted") == "running" && pool_state(c, "denied") == "running"; }));
  REQUIRE(fs::remove(deleted));
  REQUIRE(::chmod(denied.c_str(), 0644) == 0);
  for (const char* pool : {"deleted", "denied"}) {
    const json r = c.request({{"cmd", "kill"}, {"pool", pool}, {"worker", 0}, {"signal", "KILL"}});
    REQUIRE(r.value("ok", false));
  }
  check_failed_start(c, "deleted", "No such file or directory");
  check_failed_start(c, "denied", "Permission denied");

  // The healthy pool was never held up.
  const std::string web = s.master->wait_listen_address("web");
  const auto r = http_get(web, "/");
  REQUIRE(r.has_value());
  CHECK(r->status == 200);

  // `start` tries again (and fails again the same way: nothing was fixed).
  REQUIRE(c.request({{"cmd", "start"}, {"pool", "interp"}}).is_object());
  REQUIRE(wait_until([&] { return counter(pool_status(c, "interp"), "spawn_failed") == 6; }, 20s));
  CHECK(wait_until([&] { return pool_state(c, "interp") == "failed"; }));

  // Counted apart from crashes in every view.
  const json metrics = c.request({{"cmd", "metrics"}});
  REQUIRE(metrics.is_object());
  const std::string text = metrics.value("text", "");
  CHECK(text.find("forkpool_spawn_failed_total{pool=\"noexec\"} 3\n") != std::string::npos);
  CHECK(text.find("forkpool_workers_crashed_total{pool=\"noexec\"} 0\n") != std::string::npos);
  stop_master(*s.master);
}

TEST_CASE("workers that die before they are ready fail the pool however long the backoff grows",
          "[supervisor][start_failure]") {
  // flap_window is far shorter than the delays, so the window alone never sees two
  // crashes: only counting them in a row can tell this pool is broken. With ready =
  // "notify" the master is not ready before the pool has settled, as under systemd.
  Setup s(supervisor_section() +
          testworker_pool("early", 1, ", \"--exit\", \"1\"",
                          "ready = \"notify\"\nflap_restarts = 3\nflap_window = \"10ms\"\nrestart_delay = \"50ms\"\n"
                          "restart_delay_max = \"200ms\"\n"));
  ControlClient c = s.client();
  REQUIRE(c.connected());
  REQUIRE(wait_until([&] { return pool_state(c, "early") == "failed"; }, 30s));
  const json p = pool_status(c, "early");
  CHECK(counter(p, "crashed") == 4);
  CHECK(counter(p, "spawn_failed") == 0);
  CHECK(!s.master->wait_log("pool early failed: worker 0 did not start 4 times in a row").empty());
  CHECK(!s.master->wait_log("\\[master.ready\\] start-up finished with failed pool\\(s\\): early").empty());
  stop_master(*s.master);
}

TEST_CASE("a limit the kernel refuses fails the pool with the limit named", "[supervisor][start_failure]") {
  // Above fs.nr_open (1048576 by default): setrlimit refuses it even for root.
  Setup s(supervisor_section() + "[pools.limited]\ncommand = [" + quoted(testworker_binary().string()) +
          "]\nready = \"exec\"\nworkers = 1\nrestart_delay = \"20ms\"\nrestart_delay_max = \"40ms\"\n"
          "rlimits = { nofile = 999999999 }\n\n");
  ControlClient c = s.client();
  REQUIRE(c.connected());
  // Before, only "setrlimit: Operation not permitted": which limit, of how many?
  check_failed_start(c, "limited", "setrlimit nofile 999999999: Operation not permitted");
  stop_master(*s.master);
}
