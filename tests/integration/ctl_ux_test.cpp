// SPDX-License-Identifier: Apache-2.0
// forkpoolctl as an operator uses it (issue 14): it finds the master like the master finds
// its config, commands that change something wait until it is done and say how it went,
// `all` acts on every pool, unknown commands get a suggestion, and its help lists exactly
// the master's commands.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "support/run_command.hpp"
#include "test_common.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;

namespace {

std::string ctl_binary() { return std::string(FORKPOOL_BINARY_DIR) + "/ctl/forkpoolctl"; }

RunResult ctl(const Setup& s, std::vector<std::string> args) {
  std::vector<std::string> argv = {ctl_binary(), "-s", s.socket().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, 60s);
}

// forkpoolctl run by a shell in `dir` with FORKPOOL_SOCKET unset, as an operator would.
RunResult ctl_in(const std::filesystem::path& dir, const std::string& args) {
  return run_command({"/bin/sh", "-c", "cd '" + dir.string() + "' && exec env -u FORKPOOL_SOCKET " + ctl_binary() +
                                           " " + args},
                     60s);
}

std::set<std::uint64_t> pids_of(const json& pool) {
  std::set<std::uint64_t> pids;
  for (const auto& w : pool["workers"]) pids.insert(w["pid"].get<std::uint64_t>());
  return pids;
}

bool running_and_ready(ControlClient& c, const std::string& pool, int n) {
  const json p = pool_status(c, pool);
  return p.is_object() && p["state"] == "running" && p["ready"] == n;
}

}  // namespace

TEST_CASE("forkpoolctl finds the socket through -c and ./forkpool.toml, and lists every place tried when nothing is there",
          "[ctl][ux]") {
  Setup s(supervisor_section() + hello_pool("web", 1));
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  TempDir elsewhere;

  const auto by_config = ctl_in(elsewhere.path(), "-c '" + (s.dir / "f.toml").string() + "' version");
  INFO(by_config.describe());
  CHECK(by_config.exit_code == 0);
  CHECK_THAT(by_config.out, Catch::Contains("forkpool "));

  // The master's own file name in the current folder.
  std::filesystem::copy_file(s.dir / "f.toml", s.dir / "forkpool.toml");
  const auto local = ctl_in(s.dir.path(), "version");
  INFO(local.describe());
  CHECK(local.exit_code == 0);

  const auto none = ctl_in(elsewhere.path(), "status");
  INFO(none.describe());
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.err, Catch::Contains("no control socket found; tried, in order:"));
  CHECK_THAT(none.err, Catch::Contains("-s SOCKET: not given"));
  CHECK_THAT(none.err, Catch::Contains("-c CONFIG: not given"));
  CHECK_THAT(none.err, Catch::Contains("$FORKPOOL_SOCKET: not set"));
  CHECK_THAT(none.err, Catch::Contains("./forkpool.toml: no such file"));
  if (!std::filesystem::exists("/etc/forkpool/forkpool.toml"))
    CHECK_THAT(none.err, Catch::Contains("/etc/forkpool/forkpool.toml: no such file"));
  if (!std::filesystem::exists("/run/forkpool/forkpool.sock"))
    CHECK_THAT(none.err, Catch::Contains("/run/forkpool/forkpool.sock (the packaged default): no such socket"));
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl help lists exactly the master's commands", "[ctl][ux][help]") {
  Setup s(supervisor_section() + hello_pool("web", 1));
  auto c = s.client();
  // The master's command table, as its reply to an unknown command lists it.
  const json reply = c.request({{"cmd", "no-such-command"}});
  REQUIRE(reply["ok"] == false);
  const std::string error = reply["error"].get<std::string>();
  const auto open = error.find("(commands: ");
  REQUIRE(open != std::string::npos);
  std::set<std::string> master;
  {
    std::string list = error.substr(open + 11, error.rfind(')') - open - 11);
    std::regex word("[a-z-]+");
    for (std::sregex_iterator it(list.begin(), list.end(), word), end; it != end; ++it) master.insert(it->str());
  }
  // `scoreboard` is how `top` reads the scoreboard; `help` and `top` are forkpoolctl's own.
  REQUIRE(master.erase("scoreboard") == 1);

  const auto help = run_command({ctl_binary(), "help"}, 20s);
  INFO(help.describe());
  REQUIRE(help.exit_code == 0);
  std::set<std::string> listed;
  const auto section = help.out.find("Subcommands:");
  REQUIRE(section != std::string::npos);
  std::istringstream lines(help.out.substr(section));
  std::string line;
  std::getline(lines, line);
  while (std::getline(lines, line) && !line.empty()) {
    std::smatch m;
    if (std::regex_search(line, m, std::regex("^  ([a-z-]+)"))) listed.insert(m[1]);
  }
  CHECK(listed.erase("help") == 1);
  CHECK(listed.erase("top") == 1);
  CHECK(listed == master);
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl suggests the closest command for a typo and `help COMMAND` works", "[ctl][ux][help]") {
  const auto typo = run_command({ctl_binary(), "-s", "/nonexistent.sock", "restat", "web"}, 20s);
  INFO(typo.describe());
  CHECK(typo.exit_code == 2);
  CHECK_THAT(typo.err, Catch::Contains("unknown command \"restat\"; did you mean \"restart\"?"));
  const auto help = run_command({ctl_binary(), "help", "restart"}, 20s);
  INFO(help.describe());
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("WORKER"));
  const auto bad_help = run_command({ctl_binary(), "help", "stauts"}, 20s);
  CHECK(bad_help.exit_code == 2);
  CHECK_THAT(bad_help.err, Catch::Contains("did you mean \"status\"?"));
}

TEST_CASE("forkpoolctl --timeout that is not a number of seconds above 0 says so plainly", "[ctl][ux]") {
  for (const std::string bad : {"0", "-1", "abc", "inf", "1e400", ""}) {
    const auto r = run_command({ctl_binary(), "-s", "/nonexistent.sock", "--timeout", bad, "status"}, 20s);
    INFO(r.describe());
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("--timeout: expected a number of seconds greater than 0, got '" + bad + "'"));
    CHECK(r.err.find("179769") == std::string::npos);  // not DBL_MAX spelt out
  }
  const auto huge = run_command({ctl_binary(), "-s", "/nonexistent.sock", "--timeout", "1e12", "status"}, 20s);
  INFO(huge.describe());
  CHECK(huge.exit_code == 2);
  CHECK_THAT(huge.err, Catch::Contains("--timeout: expected at most 31536000 seconds (a year), got '1e12'"));
  // A valid one gets as far as looking for the socket.
  const auto ok = run_command({ctl_binary(), "-s", "/nonexistent.sock", "--timeout", "0.5", "status"}, 20s);
  INFO(ok.describe());
  CHECK(ok.err.find("--timeout") == std::string::npos);
  CHECK_THAT(ok.err, Catch::Contains("/nonexistent.sock"));
}

TEST_CASE("forkpoolctl restart waits until every worker is replaced and reports progress as lines", "[ctl][ux][wait]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  auto c = s.client();
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 2); }));
  const auto before = pids_of(pool_status(c, "web"));
  const auto r = ctl(s, {"restart", "web"});
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("restart web: done, 2 workers replaced"));
  CHECK(r.out.find('\r') == std::string::npos);  // not a terminal: plain lines
  // When it returned, the change was complete: new workers, all ready, none of the old.
  const json after = pool_status(c, "web");
  CHECK(after["ready"] == 2);
  for (auto pid : pids_of(after)) CHECK(before.count(pid) == 0);
  CHECK(pids_of(after).size() == 2);

  // One worker.
  const auto one = ctl(s, {"restart", "web", "1"});
  INFO(one.describe());
  CHECK(one.exit_code == 0);
  CHECK_THAT(one.out, Catch::Contains("restart web 1: done, 1 worker replaced"));
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl stop and start without a pool act on every pool and wait", "[ctl][ux][wait]") {
  Setup s(supervisor_section() + hello_pool("web", 1) + hello_pool("api", 2));
  auto c = s.client();
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 1) && running_and_ready(c, "api", 2); }));
  const auto stop = ctl(s, {"stop"});
  INFO(stop.describe());
  CHECK(stop.exit_code == 0);
  CHECK(pool_state(c, "web") == "stopped");
  CHECK(pool_state(c, "api") == "stopped");
  const auto start = ctl(s, {"start", "all"});
  INFO(start.describe());
  CHECK(start.exit_code == 0);
  CHECK(running_and_ready(c, "web", 1));
  CHECK(running_and_ready(c, "api", 2));
  const auto again = ctl(s, {"start", "all"});
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, Catch::Contains("nothing to do"));
  const auto quick = ctl(s, {"--no-wait", "stop", "web"});
  INFO(quick.describe());
  CHECK(quick.exit_code == 0);
  CHECK_THAT(quick.out, Catch::Contains("stop web: ok"));
  CHECK(wait_until([&] { return pool_state(c, "web") == "stopped"; }));
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl start of a pool that fails again exits 1 with the exit line that failed it, which status shows too",
          "[ctl][ux][wait]") {
  Setup s(supervisor_section() +
          testworker_pool("app", 1, ", \"--exit\", \"3\"", "restart_delay = \"20ms\"\nflap_restarts = 2\n"));
  auto c = s.client();
  REQUIRE(wait_until([&] { return pool_state(c, "app") == "failed"; }, 30s));
  const auto start = ctl(s, {"start", "app"});
  INFO(start.describe());
  CHECK(start.exit_code == 1);
  CHECK_THAT(start.err, Catch::Contains("start app: pool app failed: "));
  CHECK_THAT(start.err, Catch::Contains("last exit: worker app[0] pid "));
  CHECK_THAT(start.err, Catch::Contains("exited with status 3"));
  const auto status = ctl(s, {"status"});
  INFO(status.describe());
  CHECK_THAT(status.out, Catch::Contains("  failed    "));
  CHECK_THAT(status.out, Catch::Contains("exited with status 3"));
  // A plain pool: no dispatch, queue or connection rows.
  CHECK_THAT(status.out, Catch::Contains("dispatch none (plain supervision)"));
  CHECK(status.out.find("queue ") == std::string::npos);
  CHECK(status.out.find("accepted") == std::string::npos);
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl start of every pool starts each one and reports each outcome, exit 1 when any failed",
          "[ctl][ux][wait]") {
  const std::string failing = "restart_delay = \"20ms\"\nflap_restarts = 2\n";
  Setup s(supervisor_section() + hello_pool("web", 1) + testworker_pool("app", 1, ", \"--exit\", \"3\"", failing) +
          testworker_pool("jobs", 1, ", \"--exit\", \"4\"", failing));
  auto c = s.client();
  REQUIRE(wait_until([&] { return pool_state(c, "app") == "failed" && pool_state(c, "jobs") == "failed"; }, 30s));
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 1); }));
  REQUIRE(ctl(s, {"stop", "web"}).exit_code == 0);

  const auto start = ctl(s, {"start"});
  INFO(start.describe());
  CHECK(start.exit_code == 1);
  // Each pool was started and its outcome told, not only the first failure's.
  CHECK_THAT(start.out, Catch::Contains("start web: done, 1 worker ready"));
  CHECK_THAT(start.err, Catch::Contains("forkpoolctl: start app: pool app failed: "));
  CHECK_THAT(start.err, Catch::Contains("exited with status 3"));
  CHECK_THAT(start.err, Catch::Contains("forkpoolctl: start jobs: pool jobs failed: "));
  CHECK_THAT(start.err, Catch::Contains("exited with status 4"));
  CHECK_THAT(start.err, Catch::Contains("forkpoolctl: start all: 2 of 3 pools failed"));
  CHECK(running_and_ready(c, "web", 1));
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl says when a change is not done in --timeout and exits 3", "[ctl][ux][wait]") {
  // Its workers never say READY=1, so scaling to 2 never completes.
  Setup slow(supervisor_section() + testworker_pool("web", 1, "", "ready = \"notify\"\nready_timeout = \"60s\"\n"));
  auto c2 = slow.client();
  REQUIRE(wait_until([&] { return pool_status(c2, "web").is_object(); }));
  const auto r = ctl(slow, {"--timeout", "1", "scale", "web", "2"});
  INFO(r.describe());
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.err, Catch::Contains("scale web 2: not done after 1.0s (--timeout); last seen: scale web 2: 2 running, 0 of 2 ready"));
  stop_master(*slow.master);
}

TEST_CASE("scale of a dynamic pool is done where its spare_workers put the target", "[ctl][ux][wait]") {
  // Asked for 1, the pool keeps 2 (spare_workers = 2 idle ones): forkpoolctl once waited
  // for a target of 1 that never came, until --timeout.
  Setup s(supervisor_section() + "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
          "]\nlisten = [\"tcp://127.0.0.1:0\"]\nmin_workers = 1\nmax_workers = 4\nspare_workers = 2\n");
  auto c = s.client();
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 2); }));
  const auto r = ctl(s, {"--timeout", "20", "scale", "web", "1"});
  INFO(r.describe());
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("scale web 1: done, 2 workers ready (the pool's target after its spare_workers"));
  stop_master(*s.master);
}

TEST_CASE("scale down of a dynamic pool is done although the worker it retired was not the highest-numbered",
          "[ctl][ux][wait]") {
  // Scaling down retires the worker idle longest (here worker 0), so the ready workers are
  // numbered 1 and 2: forkpoolctl once counted only those below the target, and waited.
  Setup s(supervisor_section() + "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
          "]\nlisten = [\"tcp://127.0.0.1:0\"]\nmin_workers = 1\nmax_workers = 4\nspare_workers = 0\n"
          "idle_timeout = \"0\"\n");
  auto c = s.client();
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 1); }));
  const auto up = ctl(s, {"--timeout", "20", "scale", "web", "3"});
  INFO(up.describe());
  REQUIRE(up.exit_code == 0);
  const auto down = ctl(s, {"--timeout", "20", "scale", "web", "2"});
  INFO(down.describe());
  CHECK(down.exit_code == 0);
  CHECK_THAT(down.out, Catch::Contains("scale web 2: done, 2 workers ready"));
  stop_master(*s.master);
}

TEST_CASE("restart of a worker in a pool scaled to 0 says the pool has no workers", "[ctl][ux]") {
  Setup s(supervisor_section() + hello_pool("web", 1));
  auto c = s.client();
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 1); }));
  const auto scaled = ctl(s, {"scale", "web", "0"});
  INFO(scaled.describe());
  CHECK(scaled.exit_code == 0);
  CHECK_THAT(scaled.out, Catch::Contains("scale web 0: done"));
  const auto one = ctl(s, {"restart", "web", "1"});
  INFO(one.describe());
  CHECK(one.exit_code == 1);
  CHECK_THAT(one.err, Catch::Contains("pool web has no workers (it is scaled to 0)"));
  const auto all = ctl(s, {"restart", "web"});
  CHECK(all.exit_code == 1);
  CHECK_THAT(all.err, Catch::Contains("pool web has no workers to restart"));
  stop_master(*s.master);
}

TEST_CASE("a master-dispatch worker that never says READY gets no connection and is killed at ready_timeout with a hint",
          "[ctl][ux][ready]") {
  // fp-testworker without --serve is like a program that knows nothing of the protocol.
  Setup s(supervisor_section() +
          testworker_pool("web", 1, "", "listen = [\"tcp://127.0.0.1:0\"]\nready_timeout = \"300ms\"\n"));
  const pid_t first = s.master->wait_worker_started("web", 0);
  REQUIRE(first > 0);
  CHECK(!s.master
             ->wait_log("worker web\\[0\\] pid " + std::to_string(first) +
                        " did not become ready within ready_timeout 300ms \\(it sent no READY on its channel; a "
                        "program that does not speak the forkpool worker protocol belongs in a pool with dispatch = "
                        "\"shared\"\\); killing it")
             .empty());
  auto c = s.client();
  CHECK(counter(pool_status(c, "web"), "dispatched") == 0);
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl shows progress on a terminal as one line that updates in place", "[ctl][ux][wait]") {
  // Each new worker takes 300 ms to say READY=1, so the restart is seen in progress.
  Setup s(supervisor_section() + testworker_pool("web", 2, ", \"--notify-after-ms\", \"300\"",
                                                 "ready = \"notify\"\nready_timeout = \"30s\"\n"));
  auto c = s.client();
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 2); }));
  // script(1) gives forkpoolctl a terminal and copies what it wrote, escapes included.
  const auto r = run_command({"/usr/bin/script", "-qec",
                              ctl_binary() + " -s '" + s.socket().string() + "' restart web", "/dev/null"},
                             60s);
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  // At least one progress state was drawn before the result (each replacement takes 300 ms).
  CHECK(std::regex_search(r.out, std::regex("\r\x1b\\[Krestart web: [01] of 2 replaced, [12] left")));
  CHECK_THAT(r.out, Catch::Contains("\r\x1b[Krestart web: done, 2 workers replaced"));
  // Progress never went to a line of its own: the only line break ends the result.
  CHECK(r.out.find("left\r\n") == std::string::npos);
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl reload waits for replaced workers, also when the reload moves the control socket",
          "[ctl][ux][wait]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  auto c = s.client();
  REQUIRE(wait_until([&] { return running_and_ready(c, "web", 2); }));
  const auto before = pids_of(pool_status(c, "web"));
  // A new socket path, and an env entry that replaces every worker.
  write_file(s.dir / "f.toml", "[supervisor]\ncontrol_socket = \"moved.sock\"\nlog_level = \"debug\"\n\n" +
                                   hello_pool("web", 2, "env = { RELEASE = \"2\" }"));
  // The file names the new path already, so the running master is reached at the old one;
  // the old socket file goes with the reload, but the connection made before stays served.
  const auto r = ctl(s, {"reload"});
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("workers replaced (rolling): env"));
  CHECK_THAT(r.out, Catch::Contains("reload (generation 2): done"));
  ControlClient moved(s.dir / "moved.sock", 10s);
  const json web = pool_status(moved, "web");
  CHECK(web["ready"] == 2);
  for (auto pid : pids_of(web)) CHECK(before.count(pid) == 0);
  stop_master(*s.master);
}
