// SPDX-License-Identifier: Apache-2.0
// The master's own lifecycle with real processes: dying by SIGKILL, graceful and fast
// stops, escalation to SIGKILL, an idle loop with no timers, log reopening and JSON logs.

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

std::string hello_pool(int workers, const std::string& extra = "") {
  return "[pools.web]\ncommand = [\"" + hello_binary().string() +
         "\"]\ndispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = " + std::to_string(workers) +
         "\n" + extra;
}

std::vector<pid_t> worker_pids(MasterProcess& m) {
  std::vector<pid_t> out;
  for (const auto& p : m.all_matches("pid ([0-9]+) started")) out.push_back(std::stoi(p));
  return out;
}

// The syscall a process is blocked in, from /proc/PID/syscall: number and arguments.
std::vector<std::string> blocked_syscall(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
  std::vector<std::string> fields;
  std::string f;
  while (in >> f) fields.push_back(f);
  return fields;
}

bool sleeping_in_nanosleep(pid_t pid) {
  auto s = blocked_syscall(pid);
  return !s.empty() && (s[0] == std::to_string(SYS_nanosleep) || s[0] == std::to_string(SYS_clock_nanosleep));
}

// epoll_wait(2) / epoll_pwait(2); its 4th argument is the timeout, an int (-1: none).
bool in_epoll_wait(const std::vector<std::string>& s) {
  return s.size() > 4 && (s[0] == std::to_string(SYS_epoll_wait) || s[0] == std::to_string(SYS_epoll_pwait));
}
bool infinite(const std::string& timeout) { return timeout == "0xffffffff" || timeout == "0xffffffffffffffff"; }

bool waiting_without_timeout(pid_t pid) {
  auto s = blocked_syscall(pid);
  return in_epoll_wait(s) && infinite(s[4]);
}

bool waiting_with_timeout(pid_t pid) {
  auto s = blocked_syscall(pid);
  return in_epoll_wait(s) && !infinite(s[4]);
}

bool connect_refused(const std::string& addr) {
  auto r = http_get(addr, "/", 2s);
  return !r.has_value();
}

}  // namespace

TEST_CASE("when the master is killed with SIGKILL every worker is gone within a second", "[supervisor][lifecycle]") {
  // Orphaned workers come to this test process, which reaps them: proof they exited.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  TempDir dir;
  write_file(dir / "f.toml", hello_pool(3));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto pids = worker_pids(master);
  REQUIRE(pids.size() == 3);
  REQUIRE(http_get(addr, "/").has_value());

  master.signal(SIGKILL);
  REQUIRE(master.wait_exit(2s).has_value());
  std::set<pid_t> remaining(pids.begin(), pids.end());
  wait_until([&] {
    for (auto it = remaining.begin(); it != remaining.end();) {
      int st;
      it = ::waitpid(*it, &st, WNOHANG) == *it ? remaining.erase(it) : std::next(it);
    }
    return remaining.empty();
  }, 15s);  // SPEC: within a second; the margin is for a loaded machine, not for the product
  CHECK(remaining.empty());
  CHECK(connect_refused(addr));
}

TEST_CASE("SIGTERM lets a request in progress complete, then the master exits 0", "[supervisor][lifecycle]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool(1));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  const pid_t worker = master.wait_worker_started("web", 0);
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());

  auto slow = std::async(std::launch::async, [&] { return http_get(addr, "/sleep?ms=500", 10s); });
  REQUIRE(wait_until([&] { return sleeping_in_nanosleep(worker); }));
  master.signal(SIGTERM);
  const auto response = slow.get();
  REQUIRE(response.has_value());
  CHECK(response->status == 200);
  CHECK(response->body == "slept 500 ms\n");
  const auto status = master.wait_exit();
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(!master.wait_log("worker web\\[0\\] pid [0-9]+ exited with status 0").empty());
  CHECK(master.all_matches("(starts again in)").empty());
  CHECK(connect_refused(addr));
}

TEST_CASE("a worker that ignores the stop signal is killed after graceful_timeout", "[supervisor][lifecycle]") {
  TempDir dir;
  write_file(dir / "f.toml", "[pools.w]\ncommand = [\"" + testworker_binary().string() +
                                 "\", \"--ignore-term\", \"--notify-after-ms\", \"0\"]\nready = \"notify\"\nworkers = 2\ngraceful_timeout = \"300ms\"\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  master.signal(SIGTERM);
  CHECK(!master.wait_log("still running after 300ms; sending SIGKILL").empty());
  const auto status = master.wait_exit();
  REQUIRE(status.has_value());
  CHECK(WEXITSTATUS(*status) == 0);
  // Counted once the master has exited, that is after it reaped both.
  CHECK(master.all_matches("(exited on signal 9)").size() == 2);
}

TEST_CASE("SIGQUIT stops at once, without waiting for graceful_timeout", "[supervisor][lifecycle]") {
  TempDir dir;
  write_file(dir / "f.toml", "[pools.w]\ncommand = [\"" + testworker_binary().string() +
                                 "\", \"--ignore-term\", \"--notify-after-ms\", \"0\"]\nready = \"notify\"\nworkers = 2\ngraceful_timeout = \"1h\"\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  master.signal(SIGQUIT);
  const auto status = master.wait_exit(15s);  // graceful_timeout is 1h: any bound far below it shows SIGQUIT
  REQUIRE(status.has_value());
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(master.all_matches("(exited on signal 9)").size() == 2);
  CHECK(!master.wait_log("fast shutdown").empty());
}

TEST_CASE("an idle master waits with no timeout and only watchdog adds one", "[supervisor][lifecycle]") {
  TempDir dir;
  write_file(dir / "idle.toml", hello_pool(2));
  MasterProcess idle(dir / "idle.toml");
  REQUIRE(!idle.wait_log("every pool has its workers ready").empty());
  CHECK(wait_until([&] { return waiting_without_timeout(idle.pid()); }));

  TempDir dir2;
  write_file(dir2 / "w.toml", "[pools.w]\ncommand = [\"" + testworker_binary().string() +
                                  "\", \"--notify-after-ms\", \"0\", \"--watchdog-ms\", \"100\"]\n"
                                  "workers = 1\nwatchdog = \"10s\"\n");
  MasterProcess watched(dir2 / "w.toml");
  REQUIRE(!watched.wait_log("every pool has its workers ready").empty());
  CHECK(wait_until([&] { return waiting_with_timeout(watched.pid()); }));
}

TEST_CASE("SIGUSR1 reopens the log file after rotation", "[supervisor][logging]") {
  TempDir dir;
  const auto log_file = dir / "master.log";
  write_file(dir / "f.toml", "[supervisor]\nlog_file = \"master.log\"\n\n" + hello_pool(1));
  MasterProcess master(dir / "f.toml");
  auto file_has = [](const std::filesystem::path& p, const std::string& needle) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str().find(needle) != std::string::npos;
  };
  REQUIRE(wait_until([&] { return file_has(log_file, "every pool has its workers ready"); }));
  std::filesystem::rename(log_file, dir / "master.log.1");
  master.signal(SIGUSR1);
  CHECK(wait_until([&] { return file_has(log_file, "[log.reopen] reopened log file"); }));
  CHECK(!file_has(dir / "master.log.1", "reopened log file"));
}

TEST_CASE("log_format = json writes one JSON object a line", "[supervisor][logging]") {
  TempDir dir;
  const auto log_file = dir / "master.log";
  write_file(dir / "f.toml", "[supervisor]\nlog_format = \"json\"\nlog_file = \"master.log\"\n\n" + hello_pool(2));
  MasterProcess master(dir / "f.toml");
  REQUIRE(wait_until([&] {
    std::ifstream in(log_file);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str().find("master.ready") != std::string::npos;
  }));
  std::ifstream in(log_file);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    INFO(line);
    const auto j = nlohmann::json::parse(line);
    CHECK(j.at("time").is_string());
    CHECK(j.at("level").is_string());
    CHECK(j.at("event").is_string());
    CHECK(j.at("message").is_string());
    ++lines;
  }
  CHECK(lines >= 5);
}

TEST_CASE("log_format = json carries an event's facts as fields of their own", "[supervisor][logging]") {
  TempDir dir;
  const auto log_file = dir / "master.log";
  write_file(dir / "f.toml", "[supervisor]\nlog_format = \"json\"\nlog_file = \"master.log\"\n\n" + hello_pool(2));
  MasterProcess master(dir / "f.toml");
  // Every line of the file, parsed; fails the test on a line that is not one JSON object.
  auto lines = [&] {
    std::vector<nlohmann::json> out;
    std::ifstream in(log_file);
    std::string line;
    while (std::getline(in, line)) {
      INFO(line);
      auto j = nlohmann::json::parse(line, nullptr, false);
      REQUIRE(j.is_object());
      out.push_back(std::move(j));
    }
    return out;
  };
  auto find = [&](const std::string& event, pid_t pid) -> std::optional<nlohmann::json> {
    for (auto& j : lines())
      if (j.value("event", "") == event && j.value("pid", 0) == pid) return j;
    return std::nullopt;
  };
  pid_t pid = 0;
  REQUIRE(wait_until([&] {
    for (auto& j : lines())
      if (j.value("event", "") == "worker.spawn" && j.value("worker", -1) == 1) pid = j.value("pid", 0);
    return pid > 0;
  }));
  const auto spawn = find("worker.spawn", pid);
  REQUIRE(spawn.has_value());
  CHECK((*spawn)["pool"] == "web");
  CHECK((*spawn)["generation"] == 1);
  CHECK((*spawn)["level"] == "info");
  CHECK((*spawn)["message"] == "worker web[1] pid " + std::to_string(pid) + " started");
  // Every line starts with time, level and event, whatever its fields.
  std::ifstream first(log_file);
  std::string raw;
  REQUIRE(std::getline(first, raw));
  CHECK(raw.rfind("{\"time\":", 0) == 0);
  CHECK(raw.find("\"level\":") < raw.find("\"event\":"));
  // A worker's line names its subject right after the event, in a fixed order.
  const std::string spawn_line = [&] {
    std::ifstream in(log_file);
    std::string l;
    while (std::getline(in, l))
      if (l.find("\"worker.spawn\"") != std::string::npos) return l;
    return std::string();
  }();
  CHECK(spawn_line.find("\"event\":\"worker.spawn\",\"pool\":\"web\",\"worker\":") != std::string::npos);

  REQUIRE(::kill(pid, SIGKILL) == 0);
  std::optional<nlohmann::json> exit;
  REQUIRE(wait_until([&] { return (exit = find("worker.exit", pid)).has_value(); }));
  INFO(exit->dump());
  CHECK((*exit)["level"] == "warn");
  CHECK((*exit)["pool"] == "web");
  CHECK((*exit)["worker"] == 1);
  CHECK((*exit)["generation"] == 1);
  CHECK((*exit)["reason"] == "crashed");
  CHECK((*exit)["signal"] == SIGKILL);
  CHECK((*exit)["signal_name"] == "SIGKILL");
  CHECK((*exit)["core_dumped"] == false);
  CHECK(!exit->contains("exit_code"));
  CHECK((*exit)["uptime_s"].is_number());
  CHECK_THAT((*exit)["message"].get<std::string>(),
             Catch::StartsWith("worker web[1] pid " + std::to_string(pid) + " exited on signal 9"));
}

TEST_CASE("a listener that cannot be bound stops the master before it starts anything", "[supervisor][lifecycle]") {
  const int taken = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(taken, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(taken, 1) == 0);
  ::getsockname(taken, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);

  TempDir dir;
  write_file(dir / "f.toml", "[pools.web]\ncommand = [\"" + hello_binary().string() +
                                 "\"]\ndispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:" + std::to_string(port) + "\"]\n");
  MasterProcess master(dir / "f.toml");
  const auto status = master.wait_exit();
  ::close(taken);
  REQUIRE(status.has_value());
  CHECK(WEXITSTATUS(*status) == 1);
  // Named as a config error is: file, line, column and key.
  CHECK(!master
             .wait_log("f\\.toml:4:11: pools\\.web\\.listen\\[0\\]: bind tcp://127\\.0\\.0\\.1:" + std::to_string(port) +
                       ": Address already in use")
             .empty());
  CHECK(master.all_matches("(started)").empty());
}
