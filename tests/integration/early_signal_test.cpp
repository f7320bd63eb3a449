// SPDX-License-Identifier: Apache-2.0
// Signals that reach the master while it is still starting (reading its config, binding
// its sockets) must wait for the loop's handlers, not take their default action: SIGHUP
// and SIGUSR1 would kill the master, SIGTTIN would stop it. The moment is caught exactly:
// the master opening its config file, seen through inotify.

#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "support/control_client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Waits until the file watched by `inotify_fd` is opened; false after `ms`.
bool wait_opened(int inotify_fd, int ms) {
  pollfd p{inotify_fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  alignas(inotify_event) char buf[4096];
  return ::read(inotify_fd, buf, sizeof buf) > 0;
}

// "T" (stopped), "Z", ...: the state letter of /proc/PID/stat.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() ? line[close + 2] : '?';
}

}  // namespace

TEST_CASE("HUP, USR1 and TTIN sent while the master reads its config are handled once it runs",
          "[signals]") {
  TempDir dir;
  write_file(dir / "f.toml",
             "[supervisor]\ncontrol_socket = \"ctl.sock\"\nlog_file = \"master.log\"\n\n"
             "[pools.web]\ncommand = [\"" +
                 hello_binary().string() + "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n");
  const int in = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  REQUIRE(in >= 0);
  REQUIRE(::inotify_add_watch(in, (dir / "f.toml").c_str(), IN_OPEN) >= 0);

  MasterProcess master(dir / "f.toml");
  // The first open of the config file is the master's own, long before its loop runs.
  REQUIRE(wait_opened(in, 10'000));
  master.signal(SIGHUP);
  master.signal(SIGUSR1);
  master.signal(SIGTTIN);
  ::close(in);

  // Still alive, not stopped, and each signal did what it does.
  ControlClient c(dir / "ctl.sock", 10s);
  REQUIRE(c.connected());
  json pool;
  const bool acted = wait_until([&] {
    const json st = c.request({{"cmd", "status"}}, 5s);
    if (!st.is_object() || !st.value("ok", false)) return false;
    pool = st["pools"][0];
    return st.value("generation", 0) == 2 && pool.value("target", 0) == 2;
  });
  INFO(pool.dump());
  CHECK(acted);
  CHECK(!master.wait_exit(0ms).has_value());
  CHECK(process_state(master.pid()) != 'T');
  CHECK(wait_until([&] {
    std::ifstream log(dir / "master.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    return text.find("[log.reopen]") != std::string::npos;
  }));
}

TEST_CASE("signals whose default action would end the master are logged and ignored", "[signals]") {
  TempDir dir;
  write_file(dir / "f.toml",
             "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n"
             "[pools.web]\ncommand = [\"" +
                 hello_binary().string() + "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]", 30s).empty());
  for (int signo : {SIGXFSZ, SIGXCPU, SIGVTALRM, SIGPROF, SIGALRM, SIGIO, SIGPWR, SIGSTKFLT, SIGSYS, SIGRTMIN,
                    SIGRTMIN + 5, SIGRTMAX}) {
    INFO("signal " << signo);
    master.signal(signo);
    REQUIRE(!master.wait_log("\\[master.signal_ignored\\] ignoring signal " + std::to_string(signo) + " ", 10s)
                 .empty());
  }
  // A second one within the minute is not logged again. The signalfd gives the lowest
  // number first, so a higher one not logged yet, once its line is there, shows the second
  // XFSZ was read.
  master.signal(SIGXFSZ);
  master.signal(SIGRTMIN + 1);
  REQUIRE(!master.wait_log("ignoring signal " + std::to_string(SIGRTMIN + 1) + " ", 10s).empty());
  CHECK(master.all_matches("(ignoring signal " + std::to_string(SIGXFSZ) + " )").size() == 1);
  CHECK(!master.wait_exit(0ms).has_value());
  ControlClient c(dir / "ctl.sock", 10s);
  REQUIRE(c.connected());
  CHECK(c.request({{"cmd", "status"}}, 5s).value("ok", false));
}

TEST_CASE("a log file at the size limit (SIGXFSZ) does not end the master", "[signals]") {
  TempDir dir;
  write_file(dir / "f.toml",
             "[supervisor]\ncontrol_socket = \"ctl.sock\"\nlog_file = \"master.log\"\n\n"
             "[pools.web]\ncommand = [\"" +
                 hello_binary().string() + "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n");
  // 1 MiB of log at most, as under systemd's LimitFSIZE= (the limit covers the scoreboard's
  // memory file too, so not much less).
  constexpr std::uintmax_t kLimit = 1 << 20;
  MasterProcess master(dir / "f.toml", {"/usr/bin/prlimit", "--fsize=" + std::to_string(kLimit), "--"});
  ControlClient c(dir / "ctl.sock", 30s);
  REQUIRE(c.connected());
  // Each change of the log level is a line in the log: fill the file.
  int n = 0;
  const bool full = wait_until(
      [&] {
        for (int i = 0; i < 200; ++i)
          c.request({{"cmd", "log-level"}, {"level", ++n % 2 ? "debug" : "info"}}, 5s);
        return std::filesystem::file_size(dir / "master.log") >= kLimit;
      },
      60s);
  REQUIRE(full);
  for (int i = 0; i < 20; ++i) c.request({{"cmd", "log-level"}, {"level", i % 2 ? "debug" : "info"}}, 5s);
  CHECK(!master.wait_exit(100ms).has_value());
  CHECK(c.request({{"cmd", "status"}}, 5s).value("ok", false));
}
