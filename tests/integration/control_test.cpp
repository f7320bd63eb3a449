// SPDX-License-Identifier: Apache-2.0
// The control socket end to end against the real master: every command, the event
// stream, scale and restart under load, the metrics HTTP listener, peer checks and
// misbehaving clients.

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/control_client.hpp"
#include "support/held_request.hpp"
#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"
#include "support/skip.hpp"

extern char** environ;

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string supervisor_section(const std::string& extra = "") {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n" + extra + "\n";
}

std::string hello_pool(const std::string& name, int workers, const std::string& extra = "") {
  return "[pools." + name + "]\ncommand = [\"" + hello_binary().string() +
         "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = " + std::to_string(workers) + "\n" + extra + "\n";
}

std::string testworker_pool(const std::string& name, int workers, const std::string& args,
                            const std::string& extra = "") {
  return "[pools." + name + "]\ncommand = [\"" + testworker_binary().string() + "\"" + args +
         "]\nworkers = " + std::to_string(workers) + "\n" + extra + "\n";
}

// One master with a control socket in its own folder.
struct Setup {
  TempDir dir;
  std::unique_ptr<MasterProcess> master;

  explicit Setup(const std::string& config) {
    write_file(dir / "f.toml", config);
    master = std::make_unique<MasterProcess>(dir / "f.toml");
  }
  std::filesystem::path socket() const { return dir / "ctl.sock"; }
  ControlClient client() const { return ControlClient(socket(), 10s); }
  bool ready() { return !master->wait_log("\\[master.ready\\]").empty(); }
};

json status_of(ControlClient& c, const std::string& pool = "") {
  json r = {{"cmd", "status"}};
  if (!pool.empty()) r["pool"] = pool;
  return c.request(r);
}

// The pool's object in a status reply (null when it is not there).
json pool_in(const json& status, const std::string& name) {
  if (!status.is_object() || !status.contains("pools")) return nullptr;
  for (const auto& p : status["pools"])
    if (p.value("name", "") == name) return p;
  return nullptr;
}

json pool_status(ControlClient& c, const std::string& name) { return pool_in(status_of(c, name), name); }

std::string error_of(const json& reply) {
  if (!reply.is_object() || reply.value("ok", true) || !reply.contains("error") || !reply["error"].is_string())
    return "<not an error reply: " + reply.dump() + ">";
  return reply["error"].get<std::string>();
}

bool is_ok(const json& reply) { return reply.is_object() && reply.value("ok", false); }

// Serving workers of a pool as slot number -> pid.
std::map<unsigned, pid_t> serving_pids(const json& pool) {
  std::map<unsigned, pid_t> out;
  if (!pool.is_object()) return out;
  for (const auto& w : pool["workers"])
    if (w["role"] == "serving") out[w["worker"].get<unsigned>()] = w["pid"].get<pid_t>();
  return out;
}

// Settled: the target reached, every worker serving and ready, none starting or retiring.
bool settled(const json& pool, int target) {
  if (!pool.is_object() || pool["target"] != target || pool["live"] != target || pool["ready"] != target) return false;
  for (const auto& w : pool["workers"])
    if (w["role"] != "serving" || w["state"] == "starting" || w["state"] == "stopping") return false;
  return static_cast<int>(pool["workers"].size()) == target;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// Log lines at error or critical level, sanitizer reports, and warnings whose event is
// not in `allowed_warnings`; `allowed_errors` lists events expected at error level.
std::vector<std::string> unexpected_log_lines(const std::string& log, const std::set<std::string>& allowed_warnings,
                                              const std::set<std::string>& allowed_errors = {}) {
  static const std::regex level_re(R"(^\S+ (warning|error|critical)\s+\[([^\]]+)\])");
  std::vector<std::string> out;
  const auto all = lines_of(log);
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::string& line = all[i];
    // Reported with the lines before it, which usually say what led to it.
    const std::string context = (i >= 2 ? all[i - 2] + "\n" : "") + (i >= 1 ? all[i - 1] + "\n" : "");
    if (line.find("Sanitizer") != std::string::npos || line.find("runtime error:") != std::string::npos) {
      out.push_back(context + line);
      continue;
    }
    std::smatch m;
    if (!std::regex_search(line, m, level_re)) continue;
    const std::string level = m[1].str(), event = m[2].str();
    if (level == "warning" && allowed_warnings.count(event) != 0) continue;
    if (level != "warning" && allowed_errors.count(event) != 0) continue;
    out.push_back(context + line);
  }
  return out;
}

// A background program with stdout and stderr in a file; killed and reaped if it outlives
// the test.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::filesystem::path& out) {
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, argv[0].c_str(), &actions, nullptr, args.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) pid_ = -1;
  }
  ~Background() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  bool running() {
    poll();
    return pid_ > 0 && !status_;
  }
  std::optional<int> wait(std::chrono::milliseconds deadline) {
    wait_until([&] { return !running(); }, deadline);
    return status_;
  }

 private:
  void poll() {
    int st = 0;
    if (pid_ > 0 && !status_ && ::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
  }
  pid_t pid_ = -1;
  std::optional<int> status_;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Sends raw bytes to a TCP address and returns the HTTP status of the reply (0 if none).
int raw_http_status(const std::string& address, const std::string& request) {
  const auto colon = address.rfind(':');
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
  std::string raw;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (raw.size() < 12 || !raw.starts_with("HTTP/1.")) return 0;
  return std::stoi(raw.substr(9, 3));
}

// Prometheus samples "name{labels} value" -> value.
std::map<std::string, double> prometheus_samples(const std::string& text) {
  std::map<std::string, double> out;
  for (const auto& line : lines_of(text)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

// Reads events until one named `name` (matching `also`) arrives; collects all of them.
std::optional<json> wait_event(ControlClient& c, std::vector<json>& seen, const std::string& name,
                               const std::function<bool(const json&)>& also = nullptr,
                               std::chrono::milliseconds deadline = 10s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    auto e = c.read_json(left);
    if (!e) return std::nullopt;
    seen.push_back(*e);
    if (e->value("event", "") == name && (!also || also(*e))) return e;
  }
  return std::nullopt;
}

std::size_t index_of(const std::vector<json>& events, const std::string& name,
                     const std::function<bool(const json&)>& also = nullptr) {
  for (std::size_t i = 0; i < events.size(); ++i)
    if (events[i].value("event", "") == name && (!also || also(events[i]))) return i;
  return events.size();
}

// Index of the first log line containing `needle` (lines.size() if none).
std::size_t line_index(const std::vector<std::string>& lines, const std::string& needle) {
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i].find(needle) != std::string::npos) return i;
  return lines.size();
}

const std::set<std::string> kNoWarnings;

}  // namespace

TEST_CASE("control version replies with version and protocol numbers", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 1));
  REQUIRE(s.ready());
  auto c = s.client();
  REQUIRE(c.connected());
  const json v = c.request({{"cmd", "version"}});
  REQUIRE(is_ok(v));
  CHECK(v["version"].is_string());
  CHECK(!v["version"].get<std::string>().empty());
  CHECK(v["protocol"] == 1);
  CHECK(v["control"] == 1);
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

TEST_CASE("control status shows all pools or one and names the pools for an unknown one", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 2) +
          testworker_pool("bg", 1, ", \"--notify-after-ms\", \"0\", \"--status\", \"warming up\"", "ready = \"notify\""));
  REQUIRE(s.ready());
  auto c = s.client();
  const json all = status_of(c);
  REQUIRE(is_ok(all));
  REQUIRE(all["pools"].size() == 2);
  CHECK(pool_in(all, "web").is_object());
  CHECK(pool_in(all, "bg").is_object());
  CHECK(all["master"]["pid"] == s.master->pid());
  CHECK(all["master"]["state"] == "running");
  CHECK(all["master"]["config"] == (s.dir / "f.toml").string());
  CHECK(all["master"]["uptime_s"].get<double>() > 0);

  const json one = status_of(c, "bg");
  REQUIRE(is_ok(one));
  REQUIRE(one["pools"].size() == 1);
  CHECK(one["pools"][0]["name"] == "bg");

  const std::string err = error_of(status_of(c, "nope"));
  CHECK_THAT(err, Catch::Contains("\"nope\"") && Catch::Contains("web") && Catch::Contains("bg"));
  CHECK_THAT(error_of(c.request({{"cmd", "status"}, {"pool", 5}})), Catch::Contains("pool"));
}

TEST_CASE("control status reports pool counters and every worker field", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 2) +
          testworker_pool("bg", 1, ", \"--notify-after-ms\", \"0\", \"--status\", \"warming up\"", "ready = \"notify\""));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  constexpr int kRequests = 50;
  for (int i = 0; i < kRequests; ++i) REQUIRE(http_get(addr, "/").has_value());
  auto c = s.client();
  // DONE reaches the master just after the reply reaches the client.
  REQUIRE(wait_until([&] { return pool_status(c, "web")["counters"]["completed"] == kRequests; }));
  const json web = pool_status(c, "web");
  INFO(web.dump(2));
  CHECK(web["state"] == "running");
  CHECK(web["dispatch"] == "master");
  CHECK(web["balance"] == "least-busy");
  CHECK(web["listeners"] == json::array({"tcp://" + addr}));
  CHECK(web["target"] == 2);
  CHECK(web["live"] == 2);
  CHECK(web["ready"] == 2);
  CHECK(web["busy"] == 0);
  CHECK(web["idle"] == 2);
  CHECK(web["queue"]["length"] == 0);
  CHECK(web["queue"]["peak"].is_number_unsigned());
  CHECK(web["queue"]["limit"] == 1024);
  const json& n = web["counters"];
  CHECK(n["accepted"] == kRequests);
  CHECK(n["dispatched"] == kRequests);
  CHECK(n["completed"] == kRequests);
  CHECK(n["in_flight"] == 0);
  CHECK(n["lost"] == 0);
  CHECK(n["closed"] == 0);
  CHECK(n["queue_timeouts"] == 0);
  CHECK(n["spawned"] == 2);
  CHECK(n["crashed"] == 0);
  CHECK(n["killed"] == 0);
  CHECK(n["recycled"] == 0);
  CHECK(n["spawn_failed"] == 0);
  for (const char* k : {"parked", "resumed", "keepalive_timeouts", "keepalive_closed", "parked_closed", "parked_now",
                        "protocol_errors"})
    CHECK(n[k] == 0);
  CHECK(n.size() == 19);
  CHECK(web["keepalive"] == "worker");
  const json& d = web["duration_ms"];
  CHECK(d["count"] == kRequests);
  CHECK(d["p50"].get<double>() > 0);
  CHECK(d["p50"].get<double>() <= d["p90"].get<double>());
  CHECK(d["p90"].get<double>() <= d["p99"].get<double>());
  CHECK(d["max"].get<double>() > 0);
  for (const char* k : {"count", "p50", "p90", "p99", "max"}) CHECK(web["queue_wait_ms"][k].is_number());

  const auto started = s.master->all_matches("worker web\\[[0-9]+\\] pid ([0-9]+) started");
  std::set<pid_t> logged;
  for (const auto& p : started) logged.insert(std::stoi(p));
  REQUIRE(web["workers"].size() == 2);
  std::uint64_t handled = 0;
  std::set<unsigned> numbers;
  for (const auto& w : web["workers"]) {
    INFO(w.dump());
    numbers.insert(w["worker"].get<unsigned>());
    CHECK(w["slot"].is_number_unsigned());
    CHECK(logged.count(w["pid"].get<pid_t>()) == 1);
    CHECK(process_alive(w["pid"].get<pid_t>()));
    CHECK(w["state"] == "idle");
    CHECK(w["role"] == "serving");
    CHECK(w["generation"] == 1);
    CHECK(w["uptime_s"].get<double>() > 0);
    handled += w["handled"].get<std::uint64_t>();
    CHECK(w["in_flight"] == 0);
    CHECK(w["current_ms"] == 0);
    CHECK(w["restarts"] == 0);
    CHECK(w["last_exit"].is_null());
    CHECK(w["rss_bytes"].get<std::uint64_t>() > 0);
    // Read from /proc/PID/stat: a worker that served requests has used some CPU.
    CHECK(w["cpu_s"].is_number());
    CHECK(w["cpu_s"].get<double>() < w["uptime_s"].get<double>() + 1.0);
    CHECK(w["status"].is_null());
  }
  CHECK(numbers == std::set<unsigned>{0, 1});
  CHECK(handled == kRequests);

  const json bg = pool_status(c, "bg");
  INFO(bg.dump(2));
  CHECK(bg["dispatch"] == "master");
  CHECK(bg["listeners"].empty());
  REQUIRE(bg["workers"].size() == 1);
  CHECK(bg["workers"][0]["status"] == "warming up");
  CHECK(bg["workers"][0]["pid"] == s.master->wait_worker_started("bg", 0));
  CHECK(bg["workers"][0]["rss_bytes"].get<std::uint64_t>() > 0);
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

TEST_CASE("control events stream a killed worker's exit then its respawn then a scale", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  REQUIRE(s.ready());
  auto events = s.client();
  const json sub = events.request({{"cmd", "events"}});
  REQUIRE(is_ok(sub));
  CHECK(sub["streaming"] == true);
  auto c = s.client();
  const pid_t old = s.master->wait_worker_started("web", 0);

  REQUIRE(is_ok(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}, {"signal", "KILL"}})));
  std::vector<json> seen;
  auto for_worker0 = [](const json& e) { return e.value("worker", -1) == 0; };
  const auto spawn = wait_event(events, seen, "worker.spawn", for_worker0);
  REQUIRE(spawn.has_value());
  REQUIRE(is_ok(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 3}})));
  REQUIRE(wait_event(events, seen, "worker.ready", [](const json& e) { return e.value("worker", -1) == 2; }));

  std::string all;
  for (const auto& e : seen) all += e.dump() + "\n";
  INFO(all);
  const auto exit_at = index_of(seen, "worker.exit");
  const auto spawn_at = index_of(seen, "worker.spawn", for_worker0);
  const auto scale_at = index_of(seen, "pool.scale");
  REQUIRE(exit_at < seen.size());
  REQUIRE(scale_at < seen.size());
  CHECK(exit_at < spawn_at);
  CHECK(spawn_at < scale_at);
  const json& exit = seen[exit_at];
  CHECK(exit["pool"] == "web");
  CHECK(exit["worker"] == 0);
  CHECK(exit["pid"] == old);
  // An exit an operator asked for with `kill` is no crash: it is replaced at once,
  // without backoff and without counting towards flapping.
  CHECK(exit["reason"] == "requested");
  CHECK(exit["status"] == "exited on signal 9");
  CHECK(exit["signal"] == 9);
  CHECK(exit["signal_name"] == "SIGKILL");
  CHECK(exit["core_dumped"] == false);
  CHECK(exit["generation"] == 1);
  CHECK(exit["uptime_s"].is_number());
  CHECK(exit["time"].is_string());
  // The subject is in pool/worker/pid; the message does not say it again.
  CHECK_THAT(exit["message"].get<std::string>(), Catch::StartsWith("exited on signal 9 (after "));
  for (const auto& e : seen) {
    INFO(e.dump());
    const std::string message = e.value("message", "");
    CHECK(message.rfind("worker ", 0) != 0);
    CHECK(message.rfind("pool ", 0) != 0);
    if (e.contains("pid")) CHECK(message.find("pid " + std::to_string(e["pid"].get<long>())) == std::string::npos);
  }
  CHECK(index_of(seen, "worker.respawn_scheduled") == seen.size());
  CHECK((*spawn)["pool"] == "web");
  CHECK((*spawn)["pid"].get<pid_t>() != old);
  CHECK((*spawn)["pid"] == s.master->wait_worker_started_after("web", 0, old));
  const json& scale = seen[scale_at];
  CHECK(scale["pool"] == "web");
  CHECK(scale["from"] == 2);
  CHECK(scale["to"] == 3);
  CHECK(index_of(seen, "worker.spawn", [](const json& e) { return e.value("worker", -1) == 2; }) > scale_at);
  // A subscriber's requests are still answered, between the events.
  REQUIRE(events.send_raw("{\"cmd\":\"version\"}\n"));
  std::optional<json> v;
  while ((v = events.read_json(5s)) && !v->contains("ok")) {
  }
  REQUIRE(v.has_value());
  CHECK(is_ok(*v));
  CHECK((*v)["protocol"] == 1);
}

TEST_CASE("control scale grows and shrinks a pool and refuses sizes beyond capacity", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  REQUIRE(s.ready());
  auto c = s.client();
  const json up = c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 4}});
  REQUIRE(is_ok(up));
  CHECK(up["from"] == 2);
  CHECK(up["to"] == 4);
  CHECK(!s.master->wait_log("pool web scales from 2 to 4 workers").empty());
  CHECK(wait_until([&] { return settled(pool_status(c, "web"), 4); }));
  CHECK(s.master->wait_worker_started("web", 3) > 0);

  const json down = c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 1}});
  REQUIRE(is_ok(down));
  CHECK(down["from"] == 4);
  CHECK(down["to"] == 1);
  CHECK(!s.master->wait_log("pool web scales from 4 to 1 workers").empty());
  CHECK(wait_until([&] { return settled(pool_status(c, "web"), 1); }));
  CHECK(s.master->all_matches("worker web\\[[1-3]\\] pid [0-9]+ (exited)").size() == 3);

  const std::string too_big = error_of(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 1000}}));
  CHECK_THAT(too_big, Catch::Contains("can have 0 to"));
  CHECK_THAT(error_of(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", -1}})), Catch::Contains("can have 0 to"));
  CHECK_THAT(error_of(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", "3"}})),
             Catch::Contains("whole number"));
  CHECK_THAT(error_of(c.request({{"cmd", "scale"}, {"pool", "web"}})), Catch::Contains("workers"));
  CHECK_THAT(error_of(c.request({{"cmd", "scale"}, {"pool", "nope"}, {"workers", 2}})), Catch::Contains("nope"));
  CHECK(pool_status(c, "web")["target"] == 1);
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

// Regressions: forkpool-hello once aborted when a client connected and closed without a
// request (as ab does with its spare connections); a worker stopped by a scale-down
// moments after its exec died by SIGTERM before installing its handler (the signal now
// follows end of work by a second); and DONE messages still in a reaped worker's channel
// were counted as lost.
TEST_CASE("control scale and restart under load lose no request", "[control][load]") {
  Setup s(supervisor_section() + hello_pool("web", 4));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  auto c = s.client();
  // Load until interrupted (ab prints its results on SIGINT), so every change below is
  // made under load.
  Background ab({"/usr/bin/ab", "-q", "-c", "32", "-t", "120", "-n", "50000000", "http://" + addr + "/"},
                s.dir / "ab.out");
  REQUIRE(ab.started());
  // Wait for the load to be under way before changing anything.
  REQUIRE(wait_until([&] { return pool_status(c, "web")["counters"]["completed"].get<std::uint64_t>() >= 200; }));

  for (int size : {8, 2, 4}) {
    INFO("scale to " << size);
    REQUIRE(is_ok(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", size}})));
    CHECK(wait_until([&] { return settled(pool_status(c, "web"), size); }, 20s));
  }
  const auto before = serving_pids(pool_status(c, "web"));
  REQUIRE(before.size() == 4);
  REQUIRE(ab.running());
  const json restart = c.request({{"cmd", "restart"}, {"pool", "web"}});
  REQUIRE(is_ok(restart));
  CHECK(restart["restarting"] == "all");
  int least_ready = 4;
  const bool replaced = wait_until([&] {
    const json p = pool_status(c, "web");
    least_ready = std::min(least_ready, p["ready"].get<int>());
    if (!settled(p, 4)) return false;
    for (const auto& [worker, pid] : serving_pids(p))
      if (before.at(worker) == pid) return false;
    return true;
  }, 30s);
  CHECK(replaced);
  CHECK(least_ready == 4);

  REQUIRE(ab.running());  // the load lasted through the restart
  ::kill(ab.pid(), SIGINT);
  const auto status = ab.wait(60s);
  REQUIRE(status.has_value());
  const std::string out = slurp(s.dir / "ab.out");
  INFO(out);
  CHECK_THAT(out, Catch::Contains("Complete requests:"));
  CHECK_THAT(out, Catch::Contains("Failed requests:        0"));
  CHECK_THAT(out, !Catch::Contains("apr_"));

  // Every old worker stopped only after its replacement was ready: the "replaces" line is
  // written when the replacement is ready and takes over (with ready = "exec" the
  // worker.ready line itself waits for the worker's first second).
  const auto log_lines = lines_of(s.master->log());
  const std::regex replaces_re(R"(worker web\[([0-9]+)\] pid ([0-9]+) replaces pid ([0-9]+) \(restart\))");
  std::set<pid_t> replaced_old;
  for (const auto& line : log_lines) {
    std::smatch m;
    if (!std::regex_search(line, m, replaces_re)) continue;
    const std::string fresh = m[2].str(), old = m[3].str();
    replaced_old.insert(std::stoi(old));
    INFO(line);
    const auto ready_at = line_index(log_lines, "pid " + fresh + " replaces pid " + old);
    const auto exit_at = line_index(log_lines, "pid " + old + " exited");
    CHECK(ready_at < log_lines.size());
    CHECK(ready_at < exit_at);
  }
  std::set<pid_t> expected;
  for (const auto& [worker, pid] : before) expected.insert(pid);
  CHECK(replaced_old == expected);
  const json counters = pool_status(c, "web")["counters"];
  CHECK(counters["lost"] == 0);
  CHECK(counters["closed"] == 0);
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

TEST_CASE("control restart of one worker replaces only that worker", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 3));
  REQUIRE(s.ready());
  auto c = s.client();
  const auto before = serving_pids(pool_status(c, "web"));
  REQUIRE(before.size() == 3);
  const json r = c.request({{"cmd", "restart"}, {"pool", "web"}, {"worker", 1}});
  REQUIRE(is_ok(r));
  CHECK(r["restarting"] == 1);
  const auto m = s.master->wait_log("worker web\\[1\\] pid ([0-9]+) replaces pid " + std::to_string(before.at(1)));
  REQUIRE(!m.empty());
  std::map<unsigned, pid_t> after;
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    after = serving_pids(p);
    return settled(p, 3) && after.at(1) != before.at(1);
  }));
  CHECK(after.at(0) == before.at(0));
  CHECK(after.at(1) == std::stoi(m[1].str()));
  CHECK(after.at(2) == before.at(2));
  CHECK(wait_until([&] { return !process_alive(before.at(1)); }));
  CHECK(s.master->all_matches("(replaces pid)").size() == 1);
  CHECK_THAT(error_of(c.request({{"cmd", "restart"}, {"pool", "web"}, {"worker", 3}})),
             Catch::Contains("has workers 0 to 2"));
  CHECK_THAT(error_of(c.request({{"cmd", "restart"}, {"pool", "web"}, {"worker", "1"}})),
             Catch::Contains("whole number"));
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

TEST_CASE("control stop drains a pool and start brings it back", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  auto c = s.client();
  auto events = s.client();
  REQUIRE(is_ok(events.request({{"cmd", "events"}})));
  const auto before = serving_pids(pool_status(c, "web"));
  REQUIRE(before.size() == 2);

  const json stop = c.request({{"cmd", "stop"}, {"pool", "web"}});
  REQUIRE(is_ok(stop));
  CHECK((stop["state"] == "stopping" || stop["state"] == "stopped"));
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    return p["state"] == "stopped" && p["live"] == 0 && p["workers"].empty();
  }));
  for (const auto& [worker, pid] : before) CHECK(wait_until([&] { return !process_alive(pid); }));
  std::vector<json> seen;
  CHECK(wait_event(events, seen, "pool.state", [](const json& e) { return e["state"] == "stopped"; }));
  CHECK(index_of(seen, "pool.state", [](const json& e) { return e["state"] == "stopping"; }) < seen.size());

  // A connection made now waits in the backlog, unanswered, until the pool starts again.
  auto pending = std::async(std::launch::async, [&] { return http_get(addr, "/", 20s); });
  CHECK(pending.wait_for(300ms) == std::future_status::timeout);
  CHECK_THAT(error_of(c.request({{"cmd", "restart"}, {"pool", "web"}})), Catch::Contains("start it instead"));
  CHECK(is_ok(c.request({{"cmd", "stop"}, {"pool", "web"}})));  // stopping a stopped pool is harmless

  const json start = c.request({{"cmd", "start"}, {"pool", "web"}});
  REQUIRE(is_ok(start));
  CHECK((start["state"] == "starting" || start["state"] == "running"));
  CHECK(wait_until([&] { return settled(pool_status(c, "web"), 2) && pool_status(c, "web")["state"] == "running"; }));
  REQUIRE(pending.wait_for(10s) == std::future_status::ready);
  const auto answer = pending.get();
  REQUIRE(answer.has_value());
  CHECK(answer->status == 200);
  const auto fresh = http_get(addr, "/");
  REQUIRE(fresh.has_value());
  CHECK(fresh->status == 200);
  for (const auto& [worker, pid] : serving_pids(pool_status(c, "web"))) CHECK(pid != before.at(worker));
  CHECK_THAT(error_of(c.request({{"cmd", "start"}, {"pool", "web"}})), Catch::Contains("already running"));
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

TEST_CASE("control start clears a failed pool and it fails again", "[control]") {
  Setup s(supervisor_section("metrics_listen = \"127.0.0.1:0\"") + hello_pool("web", 1) +
          testworker_pool("bad", 1, ", \"--exit\", \"78\""));
  const auto metrics = s.master->wait_log("\\[metrics.listen\\] metrics on http://([^/]+)/metrics");
  REQUIRE(metrics.size() > 1);
  const std::string maddr = metrics[1].str();
  REQUIRE(s.ready());
  auto c = s.client();
  REQUIRE(wait_until([&] { return pool_status(c, "bad")["state"] == "failed"; }));
  // A failed pool has no ready worker: unhealthy.
  auto health = http_get(maddr, "/healthz");
  REQUIRE(health.has_value());
  CHECK(health->status == 503);
  CHECK_THAT(health->body, Catch::Contains("bad"));

  auto events = s.client();
  REQUIRE(is_ok(events.request({{"cmd", "events"}})));
  const json start = c.request({{"cmd", "start"}, {"pool", "bad"}});
  REQUIRE(is_ok(start));
  CHECK((start["state"] == "starting" || start["state"] == "running"));
  std::vector<json> seen;
  REQUIRE(wait_event(events, seen, "pool.state", [](const json& e) { return e["state"] == "failed"; }));
  std::string all;
  for (const auto& e : seen) all += e.dump() + "\n";
  INFO(all);
  const auto starting = index_of(seen, "pool.state", [](const json& e) { return e["state"] == "starting"; });
  const auto spawned = index_of(seen, "worker.spawn");
  const auto exited = index_of(seen, "worker.exit");
  const auto failed = index_of(seen, "pool.failed");
  CHECK(starting < spawned);
  CHECK(spawned < exited);
  CHECK(exited < failed);
  CHECK(failed < seen.size());
  if (exited < seen.size()) CHECK(seen[exited]["reason"] == "fatal");
  CHECK(pool_status(c, "bad")["state"] == "failed");
  CHECK(s.master->all_matches("(pool bad failed)").size() == 2);

  // A stopped pool is not expected to have workers: healthy again.
  REQUIRE(is_ok(c.request({{"cmd", "stop"}, {"pool", "bad"}})));
  CHECK(wait_until([&] { return pool_status(c, "bad")["state"] == "stopped"; }));
  health = http_get(maddr, "/healthz");
  REQUIRE(health.has_value());
  CHECK(health->status == 200);
  CHECK(unexpected_log_lines(s.master->log(), {"master.ready", "worker.exit"}, {"pool.failed", "worker.exit"}) == std::vector<std::string>{});
}

TEST_CASE("a pool failed by a reload to a broken command is unhealthy while its old workers serve, and start tries again",
          "[control]") {
  Setup s(supervisor_section("metrics_listen = \"127.0.0.1:0\"") + hello_pool("web", 2));
  const auto metrics = s.master->wait_log("\\[metrics.listen\\] metrics on http://([^/]+)/metrics");
  REQUIRE(metrics.size() > 1);
  const std::string maddr = metrics[1].str();
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  auto c = s.client();
  auto health = http_get(maddr, "/healthz");
  REQUIRE(health.has_value());
  CHECK(health->status == 200);

  // The deploy's new command exits 78 (EX_CONFIG): the pool fails, and the workers it had
  // stay and serve.
  write_file(s.dir / "f.toml", supervisor_section("metrics_listen = \"127.0.0.1:0\"") +
                                   testworker_pool("web", 2, ", \"--exit\", \"78\"",
                                                   "listen = [\"tcp://127.0.0.1:0\"]"));
  c.request({{"cmd", "reload"}});
  REQUIRE(wait_until([&] { return pool_status(c, "web")["state"] == "failed"; }));
  CHECK(pool_status(c, "web").value("ready", 0) >= 1);
  const auto served = http_get(addr, "/");
  REQUIRE(served.has_value());
  CHECK(served->status == 200);
  health = http_get(maddr, "/healthz");
  REQUIRE(health.has_value());
  CHECK(health->status == 503);
  CHECK_THAT(health->body, Catch::Contains("failed pool(s)") && Catch::Contains("web"));

  // start tries the deploy again (the broken command, still in the file): it fails again,
  // and the old workers go on serving.
  REQUIRE(s.master->all_matches("(pool web failed)").size() == 1);
  const json start = c.request({{"cmd", "start"}, {"pool", "web"}});
  CHECK(is_ok(start));
  CHECK(wait_until([&] { return s.master->all_matches("(pool web failed)").size() == 2; }));
  CHECK(wait_until([&] { return pool_status(c, "web")["state"] == "failed"; }));
  const auto still = http_get(addr, "/");
  REQUIRE(still.has_value());
  CHECK(still->status == 200);
}

TEST_CASE("a reload whose program cannot start shows the retries of its replacements in events", "[control]") {
  // The old workers are ready and go on serving, so nothing else says so until the pool
  // fails (about 80 s of retries): the retries are events, as any respawn is.
  Setup s(supervisor_section() + hello_pool("web", 1));
  REQUIRE(s.ready());
  auto events = s.client();
  REQUIRE(is_ok(events.request({{"cmd", "events"}})));
  auto c = s.client();
  write_file(s.dir / "f.toml",
             supervisor_section() + testworker_pool("web", 1, ", \"--exit\", \"1\"", "listen = [\"tcp://127.0.0.1:0\"]"));
  REQUIRE(is_ok(c.request({{"cmd", "reload"}})));
  std::vector<json> seen;
  const auto retry = wait_event(events, seen, "worker.respawn_scheduled",
                                [](const json& e) { return e.value("replacement", false); });
  REQUIRE(retry.has_value());
  CHECK((*retry)["pool"] == "web");
  CHECK((*retry)["worker"] == 0);
  CHECK((*retry)["delay_ms"].get<long>() > 0);
  CHECK_THAT((*retry)["message"].get<std::string>(), Catch::StartsWith("(a replacement) starts again in "));
}

TEST_CASE("control kill signals one worker which is then replaced", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  REQUIRE(s.ready());
  auto c = s.client();
  const pid_t w0 = s.master->wait_worker_started("web", 0);
  const pid_t w1 = s.master->wait_worker_started("web", 1);

  const json k = c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}, {"signal", "KILL"}});
  REQUIRE(is_ok(k));
  CHECK(k["signal"] == "KILL");
  CHECK(k["worker"] == 0);
  CHECK(!s.master->wait_log("worker web\\[0\\] pid " + std::to_string(w0) + " exited on signal 9").empty());
  const pid_t w0b = s.master->wait_worker_started_after("web", 0, w0);
  CHECK(w0b > 0);

  REQUIRE(is_ok(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 1}, {"signal", 10}})));
  CHECK(!s.master->wait_log("worker web\\[1\\] pid " + std::to_string(w1) + " exited on signal 10").empty());
  CHECK(s.master->wait_worker_started_after("web", 1, w1) > 0);

  // Without a signal: TERM, which the hello worker takes as "finish and exit 0".
  REQUIRE(is_ok(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}})));
  CHECK(!s.master->wait_log("worker web\\[0\\] pid " + std::to_string(w0b) + " exited with status 0").empty());
  CHECK(s.master->wait_worker_started_after("web", 0, w0b) > 0);

  CHECK(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const json web = pool_status(c, "web");
  for (const auto& w : web["workers"]) {
    INFO(w.dump());
    if (w["worker"] == 1) {
      CHECK(w["restarts"] == 1);
      CHECK(w["last_exit"] == "exited on signal 10");
    } else {
      CHECK(w["restarts"] == 2);
      CHECK(w["last_exit"] == "exited with status 0");
    }
  }
  // Exits caused by `kill` with a signal meant to end the worker (KILL, TERM) are asked
  // for; USR1 is not meant to, so the worker dying of it is a crash.
  CHECK(web["counters"]["crashed"] == 1);

  CHECK_THAT(error_of(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}, {"signal", "NOPE"}})),
             Catch::Contains("unknown signal \"NOPE\""));
  CHECK_THAT(error_of(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}, {"signal", "TREM"}})),
             Catch::Contains("unknown signal \"TREM\"; did you mean \"TERM\"?"));
  CHECK_THAT(error_of(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}, {"signal", json::object()}})),
             Catch::Contains("unknown signal"));
  CHECK_THAT(error_of(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 2}, {"signal", "KILL"}})),
             Catch::Contains("has workers 0 to 1"));
  CHECK_THAT(error_of(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", -1}})),
             Catch::Contains("has workers 0 to 1"));
  CHECK_THAT(error_of(c.request({{"cmd", "kill"}, {"pool", "web"}})), Catch::Contains("worker"));
  CHECK(unexpected_log_lines(s.master->log(), {"worker.exit"}) == std::vector<std::string>{});
}

TEST_CASE("control log-level changes the level at run time", "[control]") {
  // A connection that waits longer than queue_timeout is closed by the master, which
  // logs that at debug level only.
  Setup s(supervisor_section() + hello_pool("web", 1, "queue_timeout = \"200ms\""));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  auto c = s.client();
  auto time_out_one = [&](std::uint64_t expected_timeouts) {
    HeldRequest slow(addr);  // the only worker stays busy, however long this takes
    REQUIRE(wait_until([&] { return pool_status(c, "web")["busy"] == 1; }));
    const auto queued = http_get(addr, "/", 10s);
    CHECK(!queued.has_value());
    CHECK(wait_until([&] { return pool_status(c, "web")["counters"]["queue_timeouts"] == expected_timeouts; }));
    const auto done = slow.release();
    REQUIRE(done.has_value());
    CHECK(done->status == 200);
  };
  time_out_one(1);
  CHECK(s.master->all_matches("(\\[queue.timeout\\])").empty());

  const json r = c.request({{"cmd", "log-level"}, {"level", "debug"}});
  REQUIRE(is_ok(r));
  CHECK(r["level"] == "debug");
  CHECK(r["previous"] == "info");
  CHECK(!s.master->wait_log("log level changed from info to debug").empty());
  time_out_one(2);
  CHECK(!s.master->wait_log("debug\\s+\\[queue.timeout\\] pool web: closing connection").empty());

  CHECK_THAT(error_of(c.request({{"cmd", "log-level"}, {"level", "loud"}})),
             Catch::Contains("expected one of trace, debug, info"));
  CHECK_THAT(error_of(c.request({{"cmd", "log-level"}})), Catch::Contains("level"));
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

TEST_CASE("control metrics and the metrics HTTP listener agree with status", "[control][metrics]") {
  Setup s(supervisor_section("metrics_listen = \"127.0.0.1:0\"") + hello_pool("web", 2));
  const std::string addr = s.master->wait_listen_address("web");
  const auto m = s.master->wait_log("\\[metrics.listen\\] metrics on http://([^/]+)/metrics");
  REQUIRE(m.size() > 1);
  const std::string maddr = m[1].str();
  REQUIRE(s.ready());
  auto c = s.client();

  const json text = c.request({{"cmd", "metrics"}});
  REQUIRE(is_ok(text));
  CHECK_THAT(text["text"].get<std::string>(),
             Catch::Contains("# TYPE forkpool_connections_accepted_total counter") &&
                 Catch::Contains("forkpool_workers_target{pool=\"web\"} 2"));

  constexpr int kRequests = 300;
  for (int i = 0; i < kRequests; ++i) REQUIRE(http_get(addr, "/").has_value());
  REQUIRE(wait_until([&] { return pool_status(c, "web")["counters"]["completed"] == kRequests; }));

  const auto metrics = http_get(maddr, "/metrics");
  REQUIRE(metrics.has_value());
  CHECK(metrics->status == 200);
  REQUIRE(metrics->headers.count("content-type") == 1);
  CHECK_THAT(metrics->headers.at("content-type"), Catch::StartsWith("text/plain"));
  write_file(s.dir / "metrics.txt", metrics->body);
  const auto check = run_command({"/bin/sh", "-c", "exec /usr/bin/promtool check metrics < \"$0\"",
                                  (s.dir / "metrics.txt").string()},
                                 20s);
  INFO(check.describe());
  CHECK(check.exited);
  CHECK(check.exit_code == 0);
  CHECK(check.err.empty());

  const json counters = pool_status(c, "web")["counters"];
  const auto samples = prometheus_samples(metrics->body);
  const std::map<std::string, std::string> names = {
      {"accepted", "forkpool_connections_accepted_total"},  {"dispatched", "forkpool_connections_dispatched_total"},
      {"completed", "forkpool_connections_completed_total"}, {"lost", "forkpool_connections_lost_total"},
      {"closed", "forkpool_connections_closed_total"},      {"queue_timeouts", "forkpool_queue_timeouts_total"},
      {"spawned", "forkpool_workers_spawned_total"},         {"crashed", "forkpool_workers_crashed_total"},
      {"killed", "forkpool_workers_killed_total"},           {"recycled", "forkpool_workers_recycled_total"},
      {"in_flight", "forkpool_connections_in_flight"}};
  for (const auto& [key, metric] : names) {
    const std::string sample = metric + "{pool=\"web\"}";
    INFO(sample);
    REQUIRE(samples.count(sample) == 1);
    CHECK(samples.at(sample) == counters[key].get<double>());
  }
  CHECK(samples.at("forkpool_connections_completed_total{pool=\"web\"}") == kRequests);

  const auto healthz = http_get(maddr, "/healthz");
  REQUIRE(healthz.has_value());
  CHECK(healthz->status == 200);
  const auto status = http_get(maddr, "/status");
  REQUIRE(status.has_value());
  CHECK(status->status == 200);
  const json sj = json::parse(status->body, nullptr, false);
  REQUIRE(!sj.is_discarded());
  CHECK(sj["ok"] == true);
  CHECK(pool_in(sj, "web")["counters"]["completed"] == kRequests);
  const int post = raw_http_status(maddr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  CHECK(post >= 400);
  CHECK(post < 500);
  const auto nope = http_get(maddr, "/nope");
  REQUIRE(nope.has_value());
  CHECK(nope->status == 404);
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

TEST_CASE("metrics keep one series per worker slot across restarts and put pids only in forkpool_worker_info",
          "[control][metrics]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  auto c = s.client();
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) REQUIRE(http_get(addr, "/").has_value());
  REQUIRE(wait_until([&] { return pool_status(c, "web")["counters"]["completed"] == kRequests; }));

  auto metrics_text = [&] {
    const json r = c.request({{"cmd", "metrics"}});
    REQUIRE(is_ok(r));
    return r["text"].get<std::string>();
  };
  auto pids_of = [&] { return serving_pids(pool_status(c, "web")); };
  const auto before = pids_of();
  REQUIRE(before.size() == 2);
  std::string text = metrics_text();
  auto samples = prometheus_samples(text);
  for (const auto& [worker, pid] : before) {
    const std::string w = std::to_string(worker);
    CHECK(samples.count("forkpool_worker_info{pool=\"web\",worker=\"" + w + "\",pid=\"" + std::to_string(pid) +
                        "\",role=\"serving\",generation=\"1\"}") == 1);
    CHECK(samples.at("forkpool_worker_restarts_total{pool=\"web\",worker=\"" + w + "\"}") == 0);
  }
  for (const auto& [key, value] : samples) {
    INFO(key);
    if (key.rfind("forkpool_worker_info{", 0) != 0) CHECK(key.find("pid=") == std::string::npos);
  }
  // The documented buckets, in order, and every connection counted once.
  const std::vector<std::string> bounds = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
                                           "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",     "2.5",
                                           "5",      "10",      "25",     "60",    "+Inf"};
  std::vector<std::string> seen_bounds;
  static const std::regex bucket_re(R"re(^forkpool_connection_duration_seconds_bucket\{pool="web",le="([^"]+)"\} )re");
  for (const auto& line : lines_of(text)) {
    std::smatch m;
    if (std::regex_search(line, m, bucket_re)) seen_bounds.push_back(m[1].str());
  }
  CHECK(seen_bounds == bounds);
  CHECK(samples.at(R"(forkpool_connection_duration_seconds_bucket{pool="web",le="+Inf"})") == kRequests);
  CHECK(samples.at(R"(forkpool_connection_duration_seconds_count{pool="web"})") == kRequests);
  CHECK(samples.at(R"(forkpool_queue_wait_seconds_count{pool="web"})") == kRequests);
  const json version = c.request({{"cmd", "version"}});
  CHECK(samples.at("forkpool_build_info{version=\"" + version["version"].get<std::string>() + "\"}") == 1);
  CHECK_THAT(text, Catch::Contains("# HELP forkpool_workers_recycled_total") && Catch::Contains("max_requests") &&
                       Catch::Contains("max_memory") && Catch::Contains("forkpoolctl restart") &&
                       Catch::Contains("a reload"));

  // A new process in slot 0: the same series goes on, the info series names the new pid.
  REQUIRE(is_ok(c.request({{"cmd", "kill"}, {"pool", "web"}, {"worker", 0}, {"signal", "KILL"}})));
  const pid_t fresh = s.master->wait_worker_started_after("web", 0, before.at(0));
  REQUIRE(wait_until([&] {
    const auto now = pids_of();
    return now.size() == 2 && now.at(0) == fresh;
  }));
  text = metrics_text();
  samples = prometheus_samples(text);
  CHECK(samples.at(R"(forkpool_worker_restarts_total{pool="web",worker="0"})") == 1);
  CHECK(samples.at(R"(forkpool_worker_restarts_total{pool="web",worker="1"})") == 0);
  CHECK(samples.count("forkpool_worker_info{pool=\"web\",worker=\"0\",pid=\"" + std::to_string(fresh) +
                      "\",role=\"serving\",generation=\"1\"}") == 1);
  CHECK(text.find("pid=\"" + std::to_string(before.at(0)) + "\"") == std::string::npos);
  std::size_t restarts_series = 0;
  for (const auto& [key, value] : samples)
    if (key.rfind("forkpool_worker_restarts_total{", 0) == 0) ++restarts_series;
  CHECK(restarts_series == 2);

  // A rolling restart: each replacement is one more process for its worker number, in
  // whatever scoreboard slot it got, so the counters only grow.
  const auto before_restart = pids_of();
  REQUIRE(is_ok(c.request({{"cmd", "restart"}, {"pool", "web"}})));
  REQUIRE(wait_until([&] {
    const json web = pool_status(c, "web");
    if (!settled(web, 2)) return false;
    for (const auto& [worker, pid] : serving_pids(web))
      if (pid == before_restart.at(worker)) return false;
    return true;
  }, 20s));
  text = metrics_text();
  samples = prometheus_samples(text);
  CHECK(samples.at(R"(forkpool_worker_restarts_total{pool="web",worker="0"})") == 2);
  CHECK(samples.at(R"(forkpool_worker_restarts_total{pool="web",worker="1"})") == 1);

  write_file(s.dir / "metrics.txt", text);
  const auto check = run_command({"/bin/sh", "-c", "exec /usr/bin/promtool check metrics < \"$0\"",
                                  (s.dir / "metrics.txt").string()},
                                 20s);
  INFO(check.describe());
  CHECK(check.exited);
  CHECK(check.exit_code == 0);
  CHECK(check.err.empty());
}

TEST_CASE("a shared or plain pool's worker RSS is the sum over its process tree", "[control][metrics]") {
  // The worker is a shell that starts a child holding 64 MiB and waits for it, as
  // gunicorn's master does with its workers: the shell alone is far smaller.
  const std::string child = "import time; b = b'x' * (64 << 20); time.sleep(600)";
  Setup s(supervisor_section() + "[pools.tree]\ncommand = [\"/bin/sh\", \"-c\", \"/usr/bin/python3 -c \\\"" + child +
          "\\\" & wait\"]\nworkers = 1\n");
  REQUIRE(s.ready());
  auto c = s.client();
  constexpr std::uint64_t kChild = 64ull << 20;
  std::uint64_t rss = 0;
  CHECK(wait_until([&] {
    const json p = pool_status(c, "tree");
    if (!p.is_object() || p["workers"].empty()) return false;
    rss = p["workers"][0].value("rss_bytes", std::uint64_t{0});
    return rss >= kChild;
  }, 20s));
  INFO("rss " << rss);
  const json r = c.request({{"cmd", "metrics"}});
  REQUIRE(is_ok(r));
  const auto samples = prometheus_samples(r["text"].get<std::string>());
  CHECK(samples.at(R"(forkpool_worker_rss_bytes{pool="tree",worker="0"})") >= static_cast<double>(kChild));
}

TEST_CASE("control shutdown replies and the master exits 0", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  REQUIRE(s.ready());
  auto c = s.client();
  const json r = c.request({{"cmd", "shutdown"}});
  REQUIRE(is_ok(r));
  CHECK(r["stopping"] == true);
  const auto status = s.master->wait_exit(15s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(c.is_closed(5s));
  CHECK(!std::filesystem::exists(s.socket()));
  CHECK(unexpected_log_lines(s.master->log(), kNoWarnings) == std::vector<std::string>{});
}

// Issue 10 defect 4: a draining worker used to close its idle keep-alive connections at
// once, racing with the client's next request, which then met a reset (ab -k aborted with
// "Connection reset by peer" within ten restarts). It now answers that request, with
// Connection: close, and the client reconnects to another worker.
TEST_CASE("control rolling restarts lose no keep-alive request", "[control][load]") {
  Setup s(supervisor_section() + hello_pool("web", 4));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  auto c = s.client();
  // Keep-alive clients until interrupted (ab prints its results on SIGINT).
  Background ab({"/usr/bin/ab", "-k", "-q", "-c", "4", "-t", "120", "-n", "50000000", "http://" + addr + "/"},
                s.dir / "ab.out");
  REQUIRE(ab.started());
  // Keep-alive connections complete only when they close: wait for all four to be held.
  REQUIRE(wait_until([&] { return pool_status(c, "web")["counters"]["in_flight"].get<std::uint64_t>() == 4; }));
  for (int round = 0; round < 10; ++round) {
    INFO("restart " << round);
    const auto before = serving_pids(pool_status(c, "web"));
    REQUIRE(is_ok(c.request({{"cmd", "restart"}, {"pool", "web"}})));
    REQUIRE(wait_until([&] {
      const json p = pool_status(c, "web");
      if (!settled(p, 4)) return false;
      for (const auto& [worker, pid] : serving_pids(p))
        if (before.at(worker) == pid) return false;
      return true;
    }, 30s));
    REQUIRE(ab.running());  // the load covered this restart
  }
  ::kill(ab.pid(), SIGINT);
  const auto status = ab.wait(30s);
  REQUIRE(status.has_value());
  const std::string out = slurp(s.dir / "ab.out");
  INFO(out);
  CHECK_THAT(out, !Catch::Contains("reset by peer") && !Catch::Contains("apr_"));
  CHECK_THAT(out, Catch::Contains("Failed requests:        0"));
  CHECK_THAT(out, Catch::Contains("Keep-Alive requests:"));
  CHECK(pool_status(c, "web")["counters"]["lost"] == 0);
}

TEST_CASE("control unknown command suggests the closest one", "[control]") {
  Setup s(supervisor_section() + hello_pool("web", 1));
  REQUIRE(s.ready());
  auto c = s.client();
  const std::string err = error_of(c.request({{"cmd", "stauts"}}));
  CHECK_THAT(err, Catch::Contains("unknown command \"stauts\"") && Catch::Contains("did you mean \"status\"?"));
  CHECK(is_ok(c.request({{"cmd", "status"}})));
}

TEST_CASE("control status answers quickly while every worker is busy", "[control][load]") {
  constexpr int kWorkers = 4;
  Setup s(supervisor_section() + hello_pool("web", kWorkers));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(s.ready());
  auto c = s.client();
  std::vector<std::unique_ptr<HeldRequest>> slow;  // held until released, whatever the load
  for (int i = 0; i < kWorkers; ++i) slow.push_back(std::make_unique<HeldRequest>(addr));
  REQUIRE(wait_until([&] { return pool_status(c, "web")["busy"] == kWorkers; }));
  // Answered while every worker is held (how fast is bench/'s business, not a test's).
  json last;
  for (int i = 0; i < 3; ++i) {
    last = status_of(c);
    REQUIRE(is_ok(last));
  }
  const json web = pool_in(last, "web");
  INFO(web.dump(2));
  CHECK(web["idle"] == 0);
  CHECK(web["counters"]["in_flight"] == kWorkers);
  for (const auto& w : web["workers"]) {
    CHECK(w["state"] == "busy");
    CHECK(w["in_flight"] == 1);
    CHECK(w["current_ms"].get<double>() >= 0);
  }
  // The age of the held connection grows while it is held (waited for, not assumed: the
  // clock need not have moved between the dispatch and the first status).
  CHECK(wait_until([&] {
    const json now = pool_status(c, "web");
    for (const auto& w : now["workers"])
      if (!(w["current_ms"].get<double>() > 0)) return false;
    return true;
  }));
  for (auto& held : slow) {
    const auto r = held->release();
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
  }
}

TEST_CASE("control survives garbage and abusive clients", "[control][garbage]") {
  Setup s(supervisor_section() + hello_pool("web", 2));
  REQUIRE(s.ready());

  auto c = s.client();
  {
    std::mt19937 rng(12345);
    std::string junk;
    for (int i = 0; i < 4096; ++i) {
      char ch = static_cast<char>(rng() & 0xff);
      junk += ch == '\n' ? 'x' : ch;
    }
    REQUIRE(c.send_raw(junk));
    REQUIRE(c.send_raw("\n"));
    CHECK_THAT(error_of(*c.read_json()), Catch::Contains("malformed request"));
  }
  CHECK_THAT(error_of(c.request(json::array({"status"}))), Catch::Contains("malformed request"));
  CHECK_THAT(error_of(c.request(json::object())), Catch::Contains("malformed request"));
  CHECK_THAT(error_of(c.request({{"cmd", 5}})), Catch::Contains("malformed request"));
  CHECK_THAT(error_of(c.request({{"cmd", nullptr}})), Catch::Contains("malformed request"));
  CHECK_THAT(error_of(c.request("status")), Catch::Contains("malformed request"));
  CHECK_THAT(error_of(c.request({{"cmd", "scale"}, {"pool", json::array()}, {"workers", 2}})),
             Catch::Contains("pool"));
  CHECK_THAT(error_of(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 2.5}})),
             Catch::Contains("whole number"));
  CHECK_THAT(error_of(c.request({{"cmd", "log-level"}, {"level", 3}})), Catch::Contains("level"));
  CHECK_THAT(error_of(c.request({{"cmd", "restart"}, {"pool", "web"}, {"worker", true}})),
             Catch::Contains("whole number"));
  CHECK(is_ok(c.request({{"cmd", "version"}})));  // the same connection still works

  {  // A 1 MiB line: an error, then the connection is closed.
    auto big = s.client();
    std::string line = "{\"cmd\":\"status\",\"x\":\"" + std::string(1 << 20, 'a') + "\"}\n";
    // The master closes mid-way, so the write may fail; what matters is the reply.
    big.send_raw(line, 10s);
    const auto reply = big.read_json(5s);
    REQUIRE(reply.has_value());
    CHECK_THAT(error_of(*reply), Catch::Contains("longer than 65536 bytes"));
    CHECK(big.is_closed(5s));
  }

  {  // 200 silent clients at once: each one past 64 closes the client idle the longest
    // (`c` first), which is told why.
    std::vector<ControlClient> many;
    for (int i = 0; i < 200; ++i) {
      many.emplace_back(s.socket(), 10s);
      REQUIRE(many.back().connected());
    }
    // Accepted after all of them: once it is answered, the master has placed every one.
    auto probe = s.client();
    REQUIRE(is_ok(probe.request({{"cmd", "version"}})));
    int served = 0, evicted = 0;
    for (auto& m : many) {
      // An evicted client may find the socket closed before it writes; its error line is
      // still there to read.
      m.send_raw("{\"cmd\":\"version\"}\n", 5s);
      const auto r = m.read_json(10s);
      if (!r) continue;
      if (is_ok(*r)) {
        ++served;
      } else if (error_of(*r).find("to make room for another client") != std::string::npos) {
        ++evicted;
        CHECK(m.is_closed(5s));
      }
    }
    // `probe` holds one of the 64 places; `c` and the 137 oldest of `many` made room.
    CHECK(served == 63);
    CHECK(evicted == 137);
    CHECK(c.is_closed(5s));
    CHECK(s.master->all_matches("(\\[control.too_many_clients\\])").empty());
  }
  {  // Once they are gone, a newcomer is served.
    auto after = s.client();
    REQUIRE(wait_until([&] { return is_ok(after.request({{"cmd", "version"}}, 2s)); }, 10s));
  }

  // Half a line, then silence: closed after the stall timeout; it runs meanwhile.
  auto half = s.client();
  REQUIRE(half.send_raw("{\"cmd\": \"sta"));
  const auto half_sent = std::chrono::steady_clock::now();

  {  // A client that sends requests and never reads its replies is closed, not buffered for ever.
    auto greedy = s.client();
    const std::string req = "{\"cmd\":\"status\"}\n";
    std::string chunk;
    for (int i = 0; i < 256; ++i) chunk += req;
    std::size_t written = 0;
    bool closed_on_write = false;
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (written < (8u << 20) && std::chrono::steady_clock::now() < until) {
      const long n = greedy.send_some(chunk);
      if (n < 0) {
        closed_on_write = true;
        break;
      }
      written += static_cast<std::size_t>(n);
      if (n == 0) {
        // The master has not read the last batch yet; wait for room, reading nothing.
        pollfd pfd{greedy.fd(), POLLOUT, 0};
        ::poll(&pfd, 1, 50);
      }
    }
    INFO("wrote " << written << " bytes of requests");
    CHECK((closed_on_write || greedy.is_closed(10s)));
    CHECK(!s.master->wait_log("\\[control.slow_client\\]").empty());
  }

  // The half line is closed after about 5 s with an error. The greedy client above may
  // have taken a while under load: the deadline is loose (a reply at all is the point).
  const auto reply = half.read_json(30s);
  const auto waited = std::chrono::steady_clock::now() - half_sent;
  REQUIRE(reply.has_value());
  CHECK_THAT(error_of(*reply), Catch::Contains("incomplete request line"));
  CHECK(half.is_closed(2s));
  // Closed by the 5 s stall timeout: not before it, and not never (the read's deadline;
  // with sanitizers and oversubscribed parallel tests the loop may be late, so no tighter
  // upper bound is asserted).
  CHECK(waited > 4s);

  auto good = s.client();
  const json st = status_of(good);
  REQUIRE(is_ok(st));
  CHECK(settled(pool_in(st, "web"), 2));
  CHECK(st["master"]["state"] == "running");
  CHECK(unexpected_log_lines(s.master->log(), {"control.slow_client"}) == std::vector<std::string>{});
}

TEST_CASE("control refuses a client of another user", "[control][peer]") {
  if (::geteuid() != 0 || ::getgrnam("nogroup") == nullptr) {
    skip_test("needs root and a group nogroup to run a client as nobody");
  }
  const std::string client_py =
      "import json, socket, sys\n"
      "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
      "s.settimeout(10)\n"
      "try:\n"
      "    s.connect(sys.argv[1])\n"
      "except OSError as e:\n"
      "    print('CONNECT', e.errno)\n"
      "    sys.exit(0)\n"
      "try:\n"
      "    s.sendall(b'{\"cmd\":\"version\"}\\n')\n"
      "except OSError:\n"
      "    pass  # a refused client may find the socket shut already; the reply is there\n"
      "print(s.makefile().readline().strip())\n";
  auto as_nobody = [&](const std::filesystem::path& socket, const std::vector<std::string>& groups = {"--regid=nogroup", "--clear-groups"}) {
    std::vector<std::string> argv = {"/usr/bin/setpriv", "--reuid=nobody"};
    argv.insert(argv.end(), groups.begin(), groups.end());
    argv.insert(argv.end(), {"/usr/bin/python3", "-c", client_py, socket.string()});
    return run_command(argv, 20s);
  };
  auto run = [&](const std::string& supervisor_extra) {
    auto s = std::make_unique<Setup>(supervisor_section(supervisor_extra) + hello_pool("web", 1));
    // The test folder is private; let nobody reach the socket inside it.
    ::chmod(s->dir.path().c_str(), 0711);
    return s;
  };

  SECTION("mode 0666 lets it connect and SO_PEERCRED refuses it") {
    auto s = run("control_mode = \"0666\"");
    REQUIRE(s->ready());
    const auto r = as_nobody(s->socket());
    INFO(r.describe());
    REQUIRE(r.exited);
    CHECK(r.exit_code == 0);
    const json reply = json::parse(r.out, nullptr, false);
    REQUIRE(!reply.is_discarded());
    CHECK(error_of(reply) == "permission denied");
    CHECK(!s->master->wait_log("\\[control.refused\\] refused a control client with uid 65534").empty());
    auto c = s->client();
    CHECK(is_ok(c.request({{"cmd", "version"}})));
  }
  SECTION("the default mode 0600 does not even let it connect") {
    auto s = run("");
    REQUIRE(s->ready());
    const auto r = as_nobody(s->socket());
    INFO(r.describe());
    CHECK(r.out == "CONNECT " + std::to_string(EACCES) + "\n");
    CHECK(s->master->all_matches("(control.refused)").empty());
  }
  SECTION("control_group admits a member of that group") {
    auto s = run("control_group = \"nogroup\"");
    REQUIRE(s->ready());
    struct stat st {};
    REQUIRE(::stat(s->socket().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0660);
    CHECK(st.st_gid == ::getgrnam("nogroup")->gr_gid);
    const auto r = as_nobody(s->socket());
    INFO(r.describe());
    const json reply = json::parse(r.out, nullptr, false);
    REQUIRE(!reply.is_discarded());
    CHECK(is_ok(reply));
    CHECK(reply["protocol"] == 1);
  }
  SECTION("control_group admits a client that has the group only among its supplementary groups") {
    if (::getgrnam("daemon") == nullptr) skip_test("needs a group daemon as the client's primary group");
    auto s = run("control_group = \"nogroup\"");
    REQUIRE(s->ready());
    // Primary group daemon: only /proc/PID/status's Groups line shows nogroup.
    const auto r = as_nobody(s->socket(), {"--regid=daemon", "--groups=nogroup"});
    INFO(r.describe());
    const json reply = json::parse(r.out, nullptr, false);
    REQUIRE(!reply.is_discarded());
    CHECK(is_ok(reply));
    // Without it, the same client is refused.
    const auto refused = as_nobody(s->socket(), {"--regid=daemon", "--clear-groups"});
    INFO(refused.describe());
    CHECK(refused.out == "CONNECT " + std::to_string(EACCES) + "\n");
  }
}

TEST_CASE("control socket mode follows control_mode and a stale socket file is replaced", "[control]") {
  SECTION("default mode 0600") {
    Setup s(supervisor_section() + hello_pool("web", 1));
    REQUIRE(s.ready());
    struct stat st {};
    REQUIRE(::stat(s.socket().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
  }
  SECTION("control_mode 0640") {
    Setup s(supervisor_section("control_mode = \"0640\"") + hello_pool("web", 1));
    REQUIRE(s.ready());
    struct stat st {};
    REQUIRE(::stat(s.socket().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(!s.master->wait_log("control socket .*ctl.sock \\(mode 0640\\)").empty());
  }
  SECTION("a stale socket file is replaced and a live one refuses a second master") {
    TempDir dir;
    {  // A socket file whose process is gone: bound, never listened on, closed.
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::strcpy(a.sun_path, (dir / "ctl.sock").c_str());
      REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
      ::close(fd);
    }
    REQUIRE(std::filesystem::exists(dir / "ctl.sock"));
    write_file(dir / "f.toml", supervisor_section() + hello_pool("web", 1));
    MasterProcess first(dir / "f.toml");
    REQUIRE(!first.wait_log("\\[master.ready\\]").empty());
    ControlClient c(dir / "ctl.sock");
    REQUIRE(c.connected());
    CHECK(is_ok(c.request({{"cmd", "version"}})));

    TempDir dir2;
    write_file(dir2 / "f.toml", "[supervisor]\ncontrol_socket = \"" + (dir / "ctl.sock").string() + "\"\n\n" +
                                    hello_pool("web", 1));
    MasterProcess second(dir2 / "f.toml");
    const auto status = second.wait_exit(10s);
    REQUIRE(status.has_value());
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 1);
    CHECK_THAT(second.log(), Catch::Contains((dir / "ctl.sock").string()) &&
                                 Catch::Contains("another process is listening"));
    // Where the key is written, as config errors say it.
    CHECK_THAT(second.log(), Catch::Contains((dir2 / "f.toml").string() + ":2:18: supervisor.control_socket: bind"));
    CHECK(second.all_matches("(pid [0-9]+ started)").empty());
    // The running master keeps its socket.
    CHECK(is_ok(c.request({{"cmd", "status"}})));
    ControlClient again(dir / "ctl.sock");
    CHECK(is_ok(again.request({{"cmd", "version"}})));
  }
}
