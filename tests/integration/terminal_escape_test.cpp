// SPDX-License-Identifier: Apache-2.0
// Text a worker controls (its STATUS= and its captured output) reaches operators'
// terminals through forkpoolctl and the text log. Control characters in it must arrive
// escaped, never raw, so a worker cannot retitle, clear or rewrite an operator's terminal.
// The JSON forms keep the exact text. STATUS= changes are events too.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/control_client.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

extern char** environ;

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// As TOML basic strings (the config file turns the escapes into the raw characters), and
// as they must be shown: ESC \e, BEL \a, CR \r, other C0 and DEL as \xNN, C1 as \uNNNN;
// printable UTF-8 unchanged.
const std::string kStatusToml = R"(\u001b]0;owned\u0007\u001b[2J\rX\u007f\u0001\u009bY é)";
const std::string kStatusRaw = "\x1b]0;owned\x07\x1b[2J\rX\x7f\x01\xc2\x9bY \xc3\xa9";
const std::string kStatusShown = R"(\e]0;owned\a\e[2J\rX\x7f\x01\u009bY é)";
const std::string kOutputToml = R"(\u001b[31mred\u0007\rover\ttab)";
const std::string kOutputShown = R"(\e[31mred\a\rover\ttab)";

std::string forkpoolctl() {
  return (std::filesystem::path(FORKPOOL_BINARY_DIR) / "ctl/forkpoolctl").string();
}

std::string pool_config() {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
         testworker_binary().string() + "\", \"--notify-after-ms\", \"0\", \"--status\", \"" +
         kStatusToml + "\", \"--stdout\", \"" + kOutputToml +
         "\"]\nworkers = 1\nready = \"notify\"\nstdout = \"log\"\n";
}

// Bytes a terminal would act on: C0 controls other than the newline ending each line,
// DEL, and the UTF-8 form of C1 controls.
std::vector<std::string> raw_controls(const std::string& text) {
  std::vector<std::string> found;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    for (std::size_t i = 0; i < line.size(); ++i) {
      const auto c = static_cast<unsigned char>(line[i]);
      const bool c1 = c == 0xc2 && i + 1 < line.size() &&
                      static_cast<unsigned char>(line[i + 1]) >= 0x80 &&
                      static_cast<unsigned char>(line[i + 1]) <= 0x9f;
      if (c < 0x20 || c == 0x7f || c1) {
        found.push_back(line);
        break;
      }
    }
  }
  return found;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `forkpoolctl events` in the background, its output in a file; killed at the end.
class EventsWatcher {
 public:
  EventsWatcher(const std::filesystem::path& socket, const std::filesystem::path& out) {
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const std::string bin = forkpoolctl(), s = socket.string();
    std::vector<char*> args = {const_cast<char*>(bin.c_str()), const_cast<char*>("-s"),
                               const_cast<char*>(s.c_str()), const_cast<char*>("events"), nullptr};
    if (::posix_spawn(&pid_, bin.c_str(), &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    ::posix_spawn_file_actions_destroy(&actions);
  }
  ~EventsWatcher() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  EventsWatcher(const EventsWatcher&) = delete;
  EventsWatcher& operator=(const EventsWatcher&) = delete;
  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

}  // namespace

TEST_CASE("control characters from a worker reach forkpoolctl status and the text log escaped",
          "[escape]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  REQUIRE(!master.wait_log("\\[worker.output\\] web\\[0\\] stdout: ").empty());

  // The JSON reply keeps the exact text: escaping is for display only.
  ControlClient c(dir / "ctl.sock");
  const json st = c.request({{"cmd", "status"}});
  REQUIRE(st.value("ok", false));
  CHECK(st["pools"][0]["workers"][0]["status"] == kStatusRaw);

  const auto r = run_command({forkpoolctl(), "-s", (dir / "ctl.sock").string(), "status"}, 20s);
  INFO(r.describe());
  REQUIRE(r.exited);
  CHECK(r.exit_code == 0);
  CHECK(raw_controls(r.out).empty());
  CHECK_THAT(r.out, Catch::Contains(kStatusShown));

  const std::string log = master.log();
  CHECK(raw_controls(log).empty());
  CHECK_THAT(log, Catch::Contains("[worker.output] web[0] stdout: " + kOutputShown));
}

TEST_CASE("a worker's STATUS= change is an event, shown escaped by forkpoolctl events",
          "[escape][events]") {
  TempDir dir;
  write_file(dir / "f.toml", pool_config());
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());
  ControlClient events(dir / "ctl.sock");
  REQUIRE(events.request({{"cmd", "events"}}).value("ok", false));
  EventsWatcher watcher(dir / "ctl.sock", dir / "events.txt");
  REQUIRE(watcher.started());
  ControlClient c(dir / "ctl.sock");

  // Each restart starts a worker that sends its STATUS=: an event. forkpoolctl events
  // prints nothing until then, so restart until it has shown one (it subscribes soon).
  std::optional<json> status_event;
  bool shown = false;
  for (int attempt = 0; attempt < 10 && !shown; ++attempt) {
    REQUIRE(c.request({{"cmd", "restart"}, {"pool", "web"}, {"worker", 0}}).value("ok", false));
    status_event.reset();
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!status_event && std::chrono::steady_clock::now() < until) {
      auto e = events.read_json(1s);
      if (e && e->value("event", "") == "worker.status") status_event = e;
    }
    REQUIRE(status_event.has_value());
    shown = wait_until(
        [&] { return slurp(dir / "events.txt").find("worker.status") != std::string::npos; }, 2s);
  }
  INFO(status_event->dump());
  CHECK((*status_event)["pool"] == "web");
  CHECK((*status_event)["worker"] == 0);
  CHECK((*status_event)["status"] == kStatusRaw);

  REQUIRE(shown);
  const std::string printed = slurp(dir / "events.txt");
  INFO(printed);
  CHECK(raw_controls(printed).empty());
  CHECK_THAT(printed, Catch::Contains(kStatusShown));
}
