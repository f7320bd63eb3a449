// SPDX-License-Identifier: Apache-2.0
// The access log of master dispatch (issue 14): one line per connection, from what the
// master knows, in text and JSON, reopened on SIGUSR1.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/control_client.hpp"
#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string config(const std::string& supervisor, const std::string& pool) {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n" + supervisor +
         "\n[pools.web]\ncommand = [\"" + hello_binary().string() +
         "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\n" + pool;
}

json web_status(const TempDir& dir) {
  ControlClient c(dir / "ctl.sock");
  json r = c.request({{"cmd", "status"}});
  return r.is_object() && r.value("ok", false) ? r["pools"][0] : json();
}

std::vector<std::string> lines_of(const std::filesystem::path& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string f;
  while (in >> f) out.push_back(f);
  return out;
}

// A TCP connection to `address` that sends nothing: the master accepts and queues it.
int connect_only(const std::string& address) {
  const auto colon = address.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

}  // namespace

TEST_CASE(
    "access log: one text line per connection with worker, pid, peer, queue wait and time held",
    "[dispatch][access_log]") {
  TempDir dir;
  write_file(dir / "f.toml", config("access_log = \"access.log\"\n", "workers = 2\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto file = dir / "access.log";
  constexpr std::size_t kRequests = 20;
  for (std::size_t i = 0; i < kRequests; ++i) {
    const auto r = http_get(addr, "/");
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
  }
  REQUIRE(wait_until([&] { return lines_of(file).size() == kRequests; }));

  const json pool = web_status(dir);
  std::set<std::string> pids;
  for (const auto& w : pool["workers"]) pids.insert(std::to_string(w["pid"].get<long>()));
  static const std::regex time_re(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");
  static const std::regex seconds_re(R"(^\d+\.\d{6}$)");
  static const std::regex peer_re(R"(^127\.0\.0\.1:\d+$)");
  std::set<std::string> ids;
  for (const auto& line : lines_of(file)) {
    INFO(line);
    const auto f = fields_of(line);
    REQUIRE(f.size() == 9);
    CHECK(std::regex_match(f[0], time_re));
    CHECK(f[1] == "web");
    CHECK((f[2] == "0" || f[2] == "1"));
    CHECK(pids.count(f[3]) == 1);
    CHECK(std::regex_match(f[4], peer_re));
    ids.insert(f[5]);
    CHECK(std::regex_match(f[6], seconds_re));
    CHECK(std::regex_match(f[7], seconds_re));
    CHECK(f[8] == "done");
  }
  CHECK(ids.size() == kRequests);
  CHECK(pool["counters"]["completed"] == kRequests);

  // Rotation: rename, SIGUSR1, and the next line goes to a new file.
  std::filesystem::rename(file, dir / "access.log.1");
  master.signal(SIGUSR1);
  REQUIRE(!master.wait_log("\\[access_log.reopen\\] reopened access log").empty());
  REQUIRE(http_get(addr, "/").has_value());
  REQUIRE(wait_until([&] { return lines_of(file).size() == 1; }));
  CHECK(fields_of(lines_of(file)[0]).back() == "done");
  CHECK(lines_of(dir / "access.log.1").size() == kRequests);
}

TEST_CASE("access log in JSON names connections closed in the queue and lost with their worker",
          "[dispatch][access_log]") {
  TempDir dir;
  write_file(dir / "f.toml", config("access_log = \"access.json\"\naccess_log_format = \"json\"\n",
                                    "workers = 1\nmax_inflight = 1\nqueue_timeout = \"300ms\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const auto file = dir / "access.json";
  auto records = [&] {
    std::vector<json> out;
    for (const auto& line : lines_of(file)) {
      INFO(line);
      auto j = json::parse(line, nullptr, false);
      REQUIRE(j.is_object());
      out.push_back(std::move(j));
    }
    return out;
  };
  auto with_outcome = [&](const std::string& outcome) {
    std::vector<json> out;
    for (auto& r : records())
      if (r.value("outcome", "") == outcome) out.push_back(r);
    return out;
  };

  // The one worker holds a slow request; a second connection waits in the queue until
  // queue_timeout closes it.
  auto slow =
      std::async(std::launch::async, [addr] { return http_get(addr, "/sleep?ms=20000", 30s); });
  REQUIRE(wait_until([&] { return web_status(dir).value("busy", 0) == 1; }));
  const int queued = connect_only(addr);
  REQUIRE(wait_until([&] { return with_outcome("queue_timeout").size() == 1; }));
  ::close(queued);
  const json timed_out = with_outcome("queue_timeout")[0];
  INFO(timed_out.dump());
  CHECK(timed_out["pool"] == "web");
  CHECK(timed_out["worker"].is_null());
  CHECK(timed_out["pid"].is_null());
  CHECK(timed_out["held_s"].is_null());
  CHECK(timed_out["queue_wait_s"].get<double>() >= 0.3);
  CHECK(timed_out["peer"].get<std::string>().rfind("127.0.0.1:", 0) == 0);

  // The worker dies holding the slow one: lost, with the time it held it.
  const pid_t pid = web_status(dir)["workers"][0]["pid"].get<pid_t>();
  REQUIRE(::kill(pid, SIGKILL) == 0);
  REQUIRE(wait_until([&] { return with_outcome("lost").size() == 1; }));
  const json lost = with_outcome("lost")[0];
  INFO(lost.dump());
  CHECK(lost["worker"] == 0);
  CHECK(lost["pid"] == pid);
  CHECK(lost["held_s"].get<double>() > 0);
  CHECK(lost["conn"].get<std::uint64_t>() < timed_out["conn"].get<std::uint64_t>());
  slow.wait();

  // The replacement serves: done.
  REQUIRE(wait_until([&] { return web_status(dir).value("ready", 0) == 1; }));
  REQUIRE(http_get(addr, "/").has_value());
  REQUIRE(wait_until([&] { return with_outcome("done").size() == 1; }));
  const json done = with_outcome("done")[0];
  CHECK(done["worker"] == 0);
  CHECK(done["pid"].get<pid_t>() != pid);
  CHECK(done["held_s"].is_number());
  const json counters = web_status(dir)["counters"];
  CHECK(records().size() == counters["accepted"].get<std::size_t>());
}

TEST_CASE(
    "a reload turns the access log on, and one that names a folder that is not there is refused",
    "[dispatch][access_log]") {
  TempDir dir;
  write_file(dir / "f.toml", config("", "workers = 1\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  REQUIRE(http_get(addr, "/").has_value());
  // Its DONE may reach the master after the answer reached us: wait for it, so it is not
  // logged by the access log the reload turns on.
  REQUIRE(wait_until([&] { return web_status(dir)["counters"]["completed"] == 1; }));
  CHECK(!std::filesystem::exists(dir / "access.log"));

  write_file(dir / "f.toml", config("access_log = \"access.log\"\n", "workers = 1\n"));
  master.signal(SIGHUP);
  REQUIRE(!master.wait_log("\\[config.reload\\] configuration generation 2").empty());
  REQUIRE(http_get(addr, "/").has_value());
  REQUIRE(wait_until([&] { return lines_of(dir / "access.log").size() == 1; }));
  CHECK(fields_of(lines_of(dir / "access.log")[0])[8] == "done");

  write_file(dir / "f.toml", config("access_log = \"nowhere/access.log\"\n", "workers = 1\n"));
  master.signal(SIGHUP);
  REQUIRE(!master.wait_log("\\[config.reload_failed\\]").empty());
  CHECK(
      !master.wait_log("f.toml:3:14: supervisor.access_log: the folder of the access log").empty());
  // The running access log goes on.
  REQUIRE(http_get(addr, "/").has_value());
  REQUIRE(wait_until([&] { return lines_of(dir / "access.log").size() == 2; }));
}
