// SPDX-License-Identifier: Apache-2.0
// The checks of a binary upgrade (`--upgrade-info`, then `--check`) run while the master's
// loop goes on (docs/upgrade.md, "Lifecycle"): a new binary that is slow or hangs holds up
// neither connections nor the control socket nor a shutdown, and the client that asked
// gets its answer when the checks are done.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <thread>

#include "upgrade_support.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reload_support;
using namespace forkpool::test::upgrade_support;

namespace {

// A new build whose checks wait for the test: each run with --upgrade-info or --check
// appends its pid to `runs`, then reads one line from the FIFO `gate`; "fail" makes it
// exit 1, anything else runs the real forkpool (a copy of the build) with the same
// arguments, as does every other run (the new image itself).
void install_gated_build(const UpgradeMaster& m) {
  const auto dir = m.dir.path();
  std::filesystem::copy_file(forkpool_binary(), dir / "bin" / "forkpool.real");
  REQUIRE(::mkfifo((dir / "gate").c_str(), 0600) == 0);
  m.install_script("#!/bin/sh\ncase \"$1\" in\n  --upgrade-info|--check)\n    echo $$ >> " +
                   (dir / "runs").string() + "\n    read line < " + (dir / "gate").string() +
                   "\n    if [ \"$line\" = fail ]; then echo 'slow build gave up' >&2; exit 1; fi;;\nesac\nexec " +
                   (dir / "bin" / "forkpool.real").string() + " \"$@\"\n");
}

// The pids of the gated build's runs so far, oldest first.
std::vector<pid_t> runs(const UpgradeMaster& m) {
  std::vector<pid_t> out;
  std::ifstream in(m.dir / "runs");
  for (pid_t p; in >> p;) out.push_back(p);
  return out;
}

// The gated build has been started `n` times (the n-th run waits at the gate).
bool runs_reach(const UpgradeMaster& m, std::size_t n) {
  return wait_until([&] { return runs(m).size() == n; }, 20s);
}

// A master of one hello worker, ready, with the gated build installed as its new binary.
struct GatedMaster : UpgradeMaster {
  GatedMaster() : UpgradeMaster(supervisor_section() + hello_pool("web", 1)) {
    REQUIRE(ready());
    install_gated_build(*this);
  }
};

// Lets the run waiting at the gate go on with `line` ("go" or "fail"). Wait for the next
// run (runs()) before opening the gate again: a run still closing the FIFO would take
// the line meant for the next.
bool open_gate(const UpgradeMaster& m, const std::string& line) {
  int fd = -1;
  // ENXIO until a run has opened the FIFO for reading.
  if (!wait_until([&] { return (fd = ::open((m.dir / "gate").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0; },
                  20s))
    return false;
  const std::string text = line + "\n";
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool gone(pid_t pid) {
  const auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  return stat.empty() || stat.find(") Z ") != std::string::npos;
}

}  // namespace

TEST_CASE("while a new binary is slow to pass its checks the master serves, answers and refuses a second upgrade",
          "[upgrade][preflight]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const std::set<pid_t> workers = all_pids(pool_in(m.status(), "web"));
  install_gated_build(m);

  auto first = std::async(std::launch::async, [&] { return m.ctl({"upgrade"}); });
  REQUIRE(runs_reach(m, 1));
  // `--upgrade-info` waits at the gate, and the loop goes on: before, the master waited
  // for it (up to 10 s) and this status came only then.
  ControlClient c(m.socket(), 5s);
  const json status = c.request({{"cmd", "status"}}, 5s);
  CHECK(status.is_object());
  CHECK(status.value("ok", false));
  CHECK(hello_answers(addr));
  const RunResult second = m.ctl({"upgrade"});
  INFO(second.err);
  CHECK(second.exit_code == 1);
  CHECK(second.err.find("another upgrade (control socket) is checking its new binary") != std::string::npos);

  REQUIRE(open_gate(m, "fail"));
  const RunResult r = first.get();
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--upgrade-info exited with status 1: slow build gave up") != std::string::npos);
  CHECK(m.upgrades() == 0);

  // A request sent right behind the upgrade is answered after it, in order.
  ControlClient pipelined(m.socket(), 5s);
  REQUIRE(pipelined.send_raw("{\"cmd\":\"upgrade\"}\n{\"cmd\":\"status\"}\n"));
  REQUIRE(runs_reach(m, 2));
  REQUIRE(open_gate(m, "fail"));
  const auto refused = pipelined.read_json(20s);
  REQUIRE(refused.has_value());
  CHECK(refused->value("error", "").find("slow build gave up") != std::string::npos);
  const auto then = pipelined.read_json(5s);
  REQUIRE(then.has_value());
  CHECK(then->contains("pools"));

  // The same build passing both checks: the answer comes once both have run.
  auto again = std::async(std::launch::async, [&] { return m.ctl({"upgrade"}); });
  REQUIRE(runs_reach(m, 3));
  REQUIRE(open_gate(m, "go"));
  REQUIRE(runs_reach(m, 4));  // the --check run
  CHECK(again.wait_for(0s) != std::future_status::ready);
  REQUIRE(open_gate(m, "go"));
  const RunResult ok = again.get();
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("upgraded: forkpool") != std::string::npos);
  const json after = m.status();
  CHECK(after["master"]["pid"] == m.process->pid());
  CHECK(after["master"]["upgrades"] == 1);
  CHECK(all_pids(pool_in(after, "web")) == workers);
  CHECK(hello_answers(addr));
}

TEST_CASE("a new binary that never finishes its check is killed, with what it started, and the upgrade refused",
          "[upgrade][preflight]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const auto pid_file = m.dir / "sleep.pid";
  m.install_script("#!/bin/sh\nsleep 600 &\necho $! > " + pid_file.string() + "\nwait\n");

  auto r = std::async(std::launch::async, [&] { return m.ctl({"upgrade"}); });
  REQUIRE(wait_until([&] { return !read_text(pid_file).empty(); }, 20s));
  const pid_t sleeper = std::stoi(read_text(pid_file));
  CHECK(hello_answers(addr));
  const RunResult result = r.get();
  INFO(result.out << result.err);
  CHECK(result.exit_code == 1);
  CHECK(result.err.find("--upgrade-info did not finish within 10 s") != std::string::npos);
  // Its process group went with it: the sleep it started holds no pipe of the master's.
  CHECK(wait_until([&] { return gone(sleeper); }, 10s));
  CHECK(m.upgrades() == 0);
  CHECK(hello_answers(addr));
}

TEST_CASE("TERM while a new binary is checked stops the master at once and refuses the upgrade",
          "[upgrade][preflight][signals]") {
  GatedMaster m;
  auto r = std::async(std::launch::async, [&] { return m.ctl({"upgrade"}); });
  REQUIRE(runs_reach(m, 1));
  m.process->signal(SIGTERM);
  const auto code = m.process->wait_exit(8s);  // before, it waited out the run's 10 s first
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const RunResult result = r.get();
  INFO(result.out << result.err);
  CHECK(result.exit_code == 1);
  CHECK(result.err.find("upgrade refused, nothing changed: the master is shutting down") != std::string::npos);
  CHECK(wait_until([&] { return gone(runs(m).front()); }, 10s));
}

TEST_CASE("a reload while the new binary is checked refuses the upgrade, and a client gone meanwhile costs nothing",
          "[upgrade][preflight][reload]") {
  GatedMaster m;
  const std::string addr = m.process->wait_listen_address("web");
  EventStream events(m.socket());
  REQUIRE(events.subscribed());
  {
    // Asks and leaves at once: the reply owed to it goes nowhere.
    ControlClient c(m.socket(), 5s);
    REQUIRE(c.send_raw("{\"cmd\":\"upgrade\"}\n"));
    REQUIRE(runs_reach(m, 1));
  }
  replace_file(m.config_path(), supervisor_section() + hello_pool("web", 2));
  REQUIRE(m.ctl({"reload"}).exit_code == 0);
  REQUIRE(open_gate(m, "go"));
  REQUIRE(runs_reach(m, 2));  // the --check run
  REQUIRE(open_gate(m, "go"));
  const auto e = events.wait_for("master.upgrade_failed");
  REQUIRE(e.has_value());
  INFO(e->dump());
  CHECK(e->dump().find("the configuration was reloaded while the new binary was checked") != std::string::npos);
  const json s = m.status();
  CHECK(s["master"]["upgrades"] == 0);
  CHECK(pool_in(s, "web")["workers"].size() == 2);
  CHECK(hello_answers(addr));
}

TEST_CASE("a request half sent behind a deferred upgrade gets its full deadline after the answer",
          "[upgrade][preflight][control]") {
  GatedMaster m;
  ControlClient c(m.socket(), 5s);
  REQUIRE(c.send_raw("{\"cmd\":\"upgrade\"}\n{\"cmd\":\"sta"));
  REQUIRE(runs_reach(m, 1));
  // Longer than a request may take to arrive (5 s): the clock of the half-sent one must
  // not have run while the master owed the upgrade's answer. Before, it had, and the
  // client was closed with "incomplete request line; timed out" right after the answer.
  std::this_thread::sleep_for(6s);
  REQUIRE(open_gate(m, "fail"));
  const auto refused = c.read_json(20s);
  REQUIRE(refused.has_value());
  CHECK(refused->value("error", "").find("slow build gave up") != std::string::npos);
  REQUIRE(c.send_raw("tus\"}\n"));
  const auto status = c.read_json(5s);
  REQUIRE(status.has_value());
  CHECK(status->contains("pools"));
}

TEST_CASE("requests queued behind an upgrade that a shutdown refuses run after the shutdown began",
          "[upgrade][preflight][signals]") {
  GatedMaster m;
  ControlClient c(m.socket(), 5s);
  REQUIRE(c.send_raw("{\"cmd\":\"upgrade\"}\n{\"cmd\":\"scale\",\"pool\":\"web\",\"workers\":3}\n"));
  REQUIRE(runs_reach(m, 1));
  m.process->signal(SIGTERM);
  const auto refused = c.read_json(10s);
  REQUIRE(refused.has_value());
  CHECK(refused->value("error", "").find("the master is shutting down") != std::string::npos);
  const auto scaled = c.read_json(10s);
  REQUIRE(scaled.has_value());
  REQUIRE(m.process->wait_exit(20s).has_value());
  // Before, the queued scale ran inside the shutdown, before the pools were stopped, and
  // started two workers that were killed a moment later.
  CHECK(m.process->all_matches("(worker web\\[[12]\\] pid [0-9]+ started)").empty());
}
