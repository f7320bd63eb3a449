// SPDX-License-Identifier: Apache-2.0
// forkpoolctl against the real master: tables, --json, exit statuses, and `top` in a
// real terminal (tmux): one row per worker, `q` quits, the terminal is restored.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/held_request.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/tmux.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

std::string ctl_binary() { return std::string(FORKPOOL_BINARY_DIR) + "/ctl/forkpoolctl"; }

RunResult ctl(const TempDir& dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {ctl_binary(), "-s", (dir / "ctl.sock").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, 20s);
}

std::string config(int workers) {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" + hello_binary().string() +
         "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = " + std::to_string(workers) + "\n";
}

}  // namespace

TEST_CASE("forkpoolctl status prints the pool and a row per worker and --json passes the reply through", "[ctl]") {
  TempDir dir;
  write_file(dir / "f.toml", config(3));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto table = ctl(dir, {"status"});
  INFO(table.describe() << table.out << table.err);
  REQUIRE(table.exited);
  CHECK(table.exit_code == 0);
  CHECK(table.out.find("pool web  running  dispatch master") != std::string::npos);
  for (const auto& pid : master.all_matches("pid ([0-9]+) started")) CHECK(table.out.find(pid) != std::string::npos);

  const auto json = ctl(dir, {"--json", "status"});
  REQUIRE(json.exit_code == 0);
  const auto reply = nlohmann::json::parse(json.out);
  CHECK(reply["ok"] == true);
  CHECK(reply["pools"][0]["workers"].size() == 3);
}

TEST_CASE("forkpoolctl top --once prints one frame with the pool and a row per worker", "[ctl][top]") {
  TempDir dir;
  write_file(dir / "f.toml", config(3));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto frame = ctl(dir, {"top", "--once"});
  INFO(frame.describe());
  REQUIRE(frame.exited);
  CHECK(frame.exit_code == 0);
  CHECK(frame.out.find("forkpool top  master pid " + std::to_string(master.pid())) != std::string::npos);
  CHECK(frame.out.find("pools 1  workers 3") != std::string::npos);
  CHECK(frame.out.find("web") != std::string::npos);
  const auto pids = master.all_matches("pid ([0-9]+) started");
  REQUIRE(pids.size() == 3);
  for (const auto& pid : pids) CHECK(frame.out.find(pid) != std::string::npos);
  // One frame, not a screen being redrawn: no cursor movement, no clearing.
  CHECK(frame.out.find("\x1b[H") == std::string::npos);
  CHECK(frame.out.find("\x1b[2J") == std::string::npos);
}

TEST_CASE("top shows a worker killed holding a connection as exited with nothing in flight", "[ctl][top]") {
  // The connection died with the worker (counted lost): the row the worker leaves, shown
  // until its slot is used again (here: the pool is stopped), holds none.
  TempDir dir;
  write_file(dir / "f.toml", config(1) + "max_inflight = 1\ngraceful_timeout = \"1s\"\n");
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto pids = master.all_matches("pid ([0-9]+) started");
  REQUIRE(pids.size() == 1);
  HeldRequest held(addr);
  // Busy with it: its row says 1 in flight.
  auto row_of = [&](const std::string& frame) {
    std::istringstream lines(frame);
    for (std::string line; std::getline(lines, line);)
      if (line.find(" " + pids[0] + " ") != std::string::npos) return line;
    return std::string();
  };
  auto fields = [](const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string w; in >> w;) f.push_back(w);
    return f;
  };
  REQUIRE(wait_until([&] {
    const auto f = fields(row_of(ctl(dir, {"top", "--once"}).out));
    return f.size() > 4 && f[3] == "busy" && f[4] == "1";
  }));
  // Stopped: it does not finish the request within graceful_timeout, and is killed.
  REQUIRE(ctl(dir, {"stop", "web"}).exit_code == 0);
  REQUIRE(!master.wait_log("pid " + pids[0] + " exited on signal 9").empty());
  std::vector<std::string> f;
  REQUIRE(wait_until([&] {
    f = fields(row_of(ctl(dir, {"top", "--once"}).out));
    return f.size() > 4 && f[3] == "exited";
  }));
  INFO(row_of(ctl(dir, {"top", "--once"}).out));
  CHECK(f[4] == "0");
}

TEST_CASE("forkpoolctl exit statuses say what went wrong", "[ctl]") {
  TempDir dir;
  write_file(dir / "f.toml", config(1));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto bad = ctl(dir, {"scale", "web", "999"});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("can have 0 to") != std::string::npos);
  const auto usage = ctl(dir, {"scale", "web"});
  CHECK(usage.exit_code == 2);
  const auto missing = run_command({ctl_binary(), "-s", (dir / "nope.sock").string(), "status"}, 10s);
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find("is the master running?") != std::string::npos);
  const auto ok = ctl(dir, {"scale", "web", "2"});
  CHECK(ok.exit_code == 0);
  CHECK(!master.wait_log("pool web scales from 1 to 2 workers").empty());
}

TEST_CASE("forkpoolctl scale stops at the configured size + max(4, size / 4)", "[ctl]") {
  TempDir dir;
  write_file(dir / "f.toml", config(2));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  // The scoreboard has room for far more, but the ceiling is the pool's, as documented.
  const auto over = ctl(dir, {"scale", "web", "99"});
  INFO(over.describe());
  CHECK(over.exit_code == 1);
  CHECK(over.err.find("pool web can have 0 to 6 workers") != std::string::npos);
  CHECK(master.all_matches("(pool web scales from)").empty());
  const auto top = ctl(dir, {"scale", "web", "6"});
  INFO(top.describe());
  CHECK(top.exit_code == 0);
  CHECK(!master.wait_log("pool web scales from 2 to 6 workers").empty());
  const auto seven = ctl(dir, {"scale", "web", "7"});
  CHECK(seven.exit_code == 1);
  CHECK(seven.err.find("can have 0 to 6 workers") != std::string::npos);
}

TEST_CASE("forkpoolctl top shows a row per worker in tmux and q restores the terminal", "[ctl][top]") {
  TempDir dir;
  write_file(dir / "f.toml", config(3));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto pids = master.all_matches("pid ([0-9]+) started");
  REQUIRE(pids.size() == 3);

  Tmux tmux;
  const std::string command = ctl_binary() + " -s " + (dir / "ctl.sock").string() +
                              " top; echo TOP-EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo)$' "
                              "| tr '\\n' ' '; echo; sleep 30";
  REQUIRE(tmux.start(command).exit_code == 0);
  std::string screen;
  const bool shown = wait_until([&] {
    screen = tmux.screen();
    if (screen.find("forkpool top") == std::string::npos) return false;
    for (const auto& pid : pids)
      if (screen.find(pid) == std::string::npos) return false;
    return true;
  });
  INFO(screen);
  CHECK(shown);
  tmux.keys("q");
  const bool quit = wait_until([&] {
    screen = tmux.screen();
    return screen.find("TOP-EXIT=0") != std::string::npos && screen.find("icanon echo") != std::string::npos;
  });
  INFO(screen);
  CHECK(quit);
  // The alternate screen is gone: the frame is no longer on the terminal.
  CHECK(screen.find("forkpool top") == std::string::npos);
}

TEST_CASE("forkpoolctl stop reports a master that exits before the stop is done instead of waiting it out",
          "[ctl]") {
  TempDir dir;
  // A worker that ignores TERM: its stop waits out graceful_timeout, and the master's
  // shutdown (shutdown_timeout) ends first.
  write_file(dir / "f.toml",
             "[supervisor]\ncontrol_socket = \"ctl.sock\"\nshutdown_timeout = \"1s\"\n\n[pools.stubborn]\n"
             "command = [\"/bin/sh\", \"-c\", \"trap '' TERM; while :; do sleep 0.1; done\"]\nready = \"exec\"\n"
             "graceful_timeout = \"60s\"\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  auto stop = std::async(std::launch::async, [&] {
    return run_command({ctl_binary(), "-s", (dir / "ctl.sock").string(), "--timeout", "60", "stop", "stubborn"}, 90s);
  });
  REQUIRE(!master.wait_log("pool stubborn is stopping").empty());
  master.signal(SIGTERM);
  REQUIRE(master.wait_exit(20s).has_value());
  const RunResult r = stop.get();
  INFO(r.describe() << r.out << r.err);
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("stop stubborn: not done, the master is gone (cannot connect to") != std::string::npos);
  CHECK(r.err.find("not done after") == std::string::npos);  // it did not wait out --timeout
}
