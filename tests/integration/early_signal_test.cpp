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
