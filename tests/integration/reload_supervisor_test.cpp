// SPDX-License-Identifier: Apache-2.0
// Configuration reload end to end, the parts reload_test.cpp leaves out (SPEC sections 2,
// 6 and 7; issue 9): the [supervisor] settings that a reload applies (log level, log
// file, metrics address, control socket path and mode) or refuses as a whole, systemd's
// RELOADING=1/READY=1, a changed backlog, a dispatch mode switched under load, a removed
// shared-dispatch pool, a failed pool revived by a fixed command, and a reload that comes
// while the master shuts down. Every test runs the real master in its own folder with
// port 0 and waits on what it can observe, with a deadline.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "reload_support.hpp"
#include "support/held_request.hpp"
#include "support/fake_systemd.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reload_support;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A [supervisor] table with the control socket at `socket` (relative to the config file).
std::string supervisor_at(const std::string& socket, const std::string& extra = "") {
  return "[supervisor]\ncontrol_socket = \"" + socket + "\"\n" + extra + "\n";
}

std::string file_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_contains(const std::filesystem::path& path, const std::string& needle) {
  return file_text(path).find(needle) != std::string::npos;
}

// How many times the regular expression `pattern` matches in `text`.
std::size_t count_matches(const std::string& text, const std::string& pattern) {
  const std::regex re(pattern);
  return static_cast<std::size_t>(
      std::distance(std::sregex_iterator(text.begin(), text.end(), re), std::sregex_iterator()));
}

// Permission bits of a file (-1 when it cannot be stat'ed).
int mode_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

bool is_socket_file(const std::filesystem::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// True when a control client on `path` gets an answer to `status`.
bool control_answers(const std::filesystem::path& path) {
  ControlClient c(path, 2s);
  if (!c.connected()) return false;
  return is_ok(c.request({{"cmd", "status"}}, 10s));
}

// The addresses of every "metrics on http://ADDR/metrics" line so far, in order.
std::vector<std::string> metrics_addresses(const Master& m) {
  return m.process->all_matches("\\[metrics\\.listen\\] metrics on http://([^/ ]+)/metrics");
}

// forkpool_config_generation from GET /metrics on `address` (-1: no answer or no sample).
double http_generation(const std::string& address) {
  const auto r = http_get(address, "/metrics", 10s);
  if (!r || r->status != 200) return -1;
  const auto samples = prometheus_samples(r->body);
  const auto it = samples.find("forkpool_config_generation");
  return it == samples.end() ? -1 : it->second;
}

std::vector<std::string> strings_of(const json& array) {
  std::vector<std::string> out;
  if (!array.is_array()) return out;
  for (const auto& e : array) out.push_back(e.is_string() ? e.get<std::string>() : e.dump());
  return out;
}

std::uint64_t monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

// The listen(2) backlog of the TCP listener on 127.x.y.z:PORT as `ss -ltn` shows it (the
// Send-Q column of a LISTEN socket); -1 when ss does not list it.
long listen_backlog(const std::string& address) {
  const auto r = run_command({"/usr/bin/ss", "-ltn"}, 20s);
  if (!r.exited || r.exit_code != 0) return -1;
  for (const auto& line : lines_of(r.out)) {
    std::istringstream in(line);
    std::string state, recv_q, send_q, local;
    if (!(in >> state >> recv_q >> send_q >> local)) continue;
    if (state == "LISTEN" && local == address) return std::stol(send_q);
  }
  return -1;
}

// A worker holds one request until released; one more connection then waits in the
// master's queue longer than the pool's queue_timeout (200ms) and is closed, which the
// master logs at debug level only: a debug-level line on demand. `nth` is the pool's
// queue_timeouts counter once it happened.
void provoke_queue_timeout(ControlClient& c, const std::string& pool, const std::string& addr,
                           std::uint64_t nth) {
  HeldRequest slow(addr);
  REQUIRE(wait_until([&] { return pool_status(c, pool)["busy"] == 1; }));
  const auto queued = http_get(addr, "/", 10s);
  CHECK(!queued.has_value());
  CHECK(wait_until([&] { return pool_status(c, pool)["counters"]["queue_timeouts"] == nth; }));
  const auto done = slow.release();
  REQUIRE(done.has_value());
  CHECK(done->status == 200);
}

const std::string kDebugQueueTimeout = "debug +\\[queue\\.timeout\\]";

// The pids the log says were started in `pool`.
std::set<pid_t> started_pids(const Master& m, const std::string& pool) {
  std::set<pid_t> out;
  for (const auto& p :
       m.process->all_matches("worker " + pool + "\\[[0-9]+\\] pid ([0-9]+) started"))
    out.insert(std::stoi(p));
  return out;
}

// After a reload that replaced the failed pool `app` (2 workers) with forkpool-hello:
// it runs, every worker is of generation 2 and serves, none of `old` is left, and it
// stays so once they are gone.
void check_revived(Master& m, ControlClient& c, const std::string& app_addr,
                   const std::set<pid_t>& old) {
  json app;
  const bool revived = wait_until(
      [&] {
        app = pool_status(c, "app");
        return app["state"] == "running" && settled(app, 2) && all_replaced(app, 2, old);
      },
      kSettle);
  INFO(app.dump(2));
  CHECK(revived);
  for (const pid_t pid : old) {
    INFO("worker of the broken command, pid " << pid);
    CHECK(wait_until([&] { return !is_child_of(pid, m.process->pid()); }, revived ? kSettle : 5s));
  }
  app = pool_status(c, "app");
  INFO(app.dump(2));
  CHECK(app["state"] == "running");
  CHECK(app["generation"] == 2);
  CHECK(settled(app, 2));
  for (const auto& w : app["workers"]) {
    INFO(w.dump());
    CHECK(w["generation"] == 2);
    CHECK(env_value(w["pid"].get<pid_t>(), "FORKPOOL_GENERATION") == "2");
    CHECK(old.count(w["pid"].get<pid_t>()) == 0);
  }
  CHECK(listen_addresses(app) == std::vector<std::string>{app_addr});
  for (int i = 0; i < 20; ++i) CHECK(hello_answers(app_addr));
}

// The one-line form of a reply for INFO.
std::string shown(const json& j) {
  return j.is_null() ? "<no reply>" : j.dump();
}

}  // namespace

// ---- 1. [supervisor] settings applied on reload ---------------------------------------

TEST_CASE(
    "reload applies a changed log_level, and a level set with log-level survives a reload that "
    "does not change it",
    "[reload][supervisor]") {
  const std::string pool = hello_pool("web", 1, "queue_timeout = \"200ms\"\n");
  Master m(supervisor_section() + pool);
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }));
  const auto pids = serving_pids(pool_status(c, "web"));

  // log_level = "info" (the default): the queue timeout leaves no line.
  provoke_queue_timeout(c, "web", addr, 1);
  CHECK(m.log_count(kDebugQueueTimeout) == 0);

  // info -> debug in the file: debug lines appear from then on.
  m.rewrite(supervisor_section("log_level = \"debug\"") + pool);
  json r = m.reload();
  require_reloaded(r, 2);
  CHECK(r["supervisor"] == json::array({"log_level"}));
  check_change(r, "web", "unchanged");
  provoke_queue_timeout(c, "web", addr, 2);
  CHECK(wait_until([&] { return m.log_count(kDebugQueueTimeout) == 1; }));

  // `log-level info` at run time; then reloads whose file still says debug (one changes
  // another supervisor key, one changes nothing) leave the run-time level alone.
  const json set_info = c.request({{"cmd", "log-level"}, {"level", "info"}});
  REQUIRE(is_ok(set_info));
  CHECK(set_info["previous"] == "debug");
  m.rewrite(supervisor_section("log_level = \"debug\"\nshutdown_timeout = \"20s\"") + pool);
  r = m.reload();
  require_reloaded(r, 3);
  CHECK(r["supervisor"] == json::array({"shutdown_timeout"}));
  r = m.reload();
  require_reloaded(r, 4);
  CHECK(r["supervisor"] == json::array());
  provoke_queue_timeout(c, "web", addr, 3);
  CHECK(m.log_count(kDebugQueueTimeout) == 1);

  // A reload that does change log_level in the file wins over the run-time level:
  // `log-level debug`, then the file goes debug -> info.
  REQUIRE(is_ok(c.request({{"cmd", "log-level"}, {"level", "debug"}})));
  m.rewrite(supervisor_section("log_level = \"info\"\nshutdown_timeout = \"20s\"") + pool);
  r = m.reload();
  require_reloaded(r, 5);
  CHECK(r["supervisor"] == json::array({"log_level"}));
  provoke_queue_timeout(c, "web", addr, 4);
  CHECK(m.log_count(kDebugQueueTimeout) == 1);

  CHECK(serving_pids(pool_status(c, "web")) == pids);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("reload moves log_file: new lines go to the new file, and the run-time log level stays",
          "[reload][supervisor]") {
  // Relative log_file paths are relative to the config file's folder.
  const std::string pool = hello_pool("web", 1, "queue_timeout = \"200ms\"\n");
  Master m(supervisor_section("log_file = \"a.log\"") + pool);
  const auto a = m.dir / "a.log";
  const auto b = m.dir / "b.log";
  REQUIRE(wait_until([&] { return file_contains(a, "[master.ready]"); }, 30s));
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }));
  const auto addrs = listen_addresses(pool_status(c, "web"));
  REQUIRE(addrs.size() == 1);
  const std::string addr = addrs[0];
  const auto pids = serving_pids(pool_status(c, "web"));

  // Debug level set at run time; the file keeps saying info (by default).
  REQUIRE(is_ok(c.request({{"cmd", "log-level"}, {"level", "debug"}})));
  provoke_queue_timeout(c, "web", addr, 1);
  CHECK(wait_until([&] { return file_contains(a, "[queue.timeout]"); }));

  m.rewrite(supervisor_section("log_file = \"b.log\"") + pool);
  const json r = m.reload();
  require_reloaded(r, 2);
  CHECK(r["supervisor"] == json::array({"log_file"}));
  check_change(r, "web", "unchanged");
  CHECK(wait_until([&] { return file_contains(b, "configuration generation 2"); }));
  const std::string a_after_reload = file_text(a);
  CHECK(a_after_reload.find("configuration generation 2") == std::string::npos);

  // The reload changed log_file, not log_level: the level set at run time is still in
  // force, so the next queue timeout is logged at debug level (in the new file).
  provoke_queue_timeout(c, "web", addr, 2);
  {
    INFO("b.log:\n" << file_text(b));
    CHECK(file_contains(b, "[queue.timeout]"));
  }
  const json level = c.request({{"cmd", "log-level"}, {"level", "debug"}});
  REQUIRE(is_ok(level));
  CHECK(level["previous"] == "debug");

  // New lines go to b.log; a.log gets none of them.
  CHECK(wait_until([&] { return file_contains(b, "log level changed from"); }));
  const auto debug_lines = count_matches(file_text(b), kDebugQueueTimeout);
  provoke_queue_timeout(c, "web", addr, 3);
  CHECK(wait_until(
      [&] { return count_matches(file_text(b), kDebugQueueTimeout) == debug_lines + 1; }));
  CHECK(file_text(a) == a_after_reload);

  // Back to "" (stderr): the next reload's line is on stderr, not in b.log.
  m.rewrite(supervisor_section() + pool);
  const json back = m.reload();
  require_reloaded(back, 3);
  CHECK(back["supervisor"] == json::array({"log_file"}));
  CHECK(!m.process->wait_log("configuration generation 3").empty());
  CHECK(!file_contains(b, "configuration generation 3"));
  CHECK(file_text(a) == a_after_reload);

  CHECK(serving_pids(pool_status(c, "web")) == pids);
  CHECK(alarming_log_lines(file_text(a) + file_text(b) + m.process->log()) ==
        std::vector<std::string>{});
}

TEST_CASE("reload turns metrics_listen on, moves it to another address and turns it off",
          "[reload][supervisor][metrics]") {
  const std::string pool = hello_pool("web", 2);
  Master m(supervisor_section() + pool);
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const auto pids = serving_pids(pool_status(c, "web"));
  CHECK(metrics_addresses(m).empty());

  // "" -> 127.0.0.1:0: the endpoint opens, and the log says where.
  m.rewrite(supervisor_section("metrics_listen = \"127.0.0.1:0\"") + pool);
  json r = m.reload();
  require_reloaded(r, 2);
  CHECK(r["supervisor"] == json::array({"metrics_listen"}));
  check_change(r, "web", "unchanged");
  REQUIRE(
      !m.process->wait_log("\\[metrics\\.listen\\] metrics on http://([^/ ]+)/metrics").empty());
  REQUIRE(metrics_addresses(m).size() == 1);
  const std::string first = metrics_addresses(m)[0];
  CHECK(first.starts_with("127.0.0.1:"));
  CHECK(first != "127.0.0.1:0");
  CHECK(http_generation(first) == 2);
  const auto health = http_get(first, "/healthz", 10s);
  REQUIRE(health.has_value());
  CHECK(health->status == 200);

  // 127.0.0.1:0 -> 127.0.0.2:0: the old address refuses, the new one serves.
  m.rewrite(supervisor_section("metrics_listen = \"127.0.0.2:0\"") + pool);
  r = m.reload();
  require_reloaded(r, 3);
  CHECK(r["supervisor"] == json::array({"metrics_listen"}));
  CHECK(wait_until([&] { return metrics_addresses(m).size() == 2; }));
  REQUIRE(metrics_addresses(m).size() == 2);
  const std::string second = metrics_addresses(m)[1];
  CHECK(second.starts_with("127.0.0.2:"));
  CHECK(wait_until([&] { return refuses(first); }));
  CHECK(http_generation(second) == 3);
  const auto metrics = http_get(second, "/metrics", 10s);
  REQUIRE(metrics.has_value());
  CHECK_THAT(metrics->body, Catch::Contains("forkpool_workers_target{pool=\"web\"} 2"));

  // Turned off: nothing listens there any more.
  m.rewrite(supervisor_section() + pool);
  r = m.reload();
  require_reloaded(r, 4);
  CHECK(r["supervisor"] == json::array({"metrics_listen"}));
  CHECK(wait_until([&] { return refuses(second); }));
  CHECK(refuses(first));
  CHECK(metrics_addresses(m).size() == 2);

  // The control socket's `metrics` goes on regardless.
  CHECK(generation_metric(c) == 4);
  CHECK(serving_pids(pool_status(c, "web")) == pids);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE(
    "reload moves the control socket: the reply comes on the old connection, new clients use the "
    "new path",
    "[reload][supervisor][control]") {
  const std::string pool = hello_pool("web", 2);
  Master m(supervisor_section() + pool);
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  const auto old_path = m.dir / "ctl.sock";
  const auto new_path = m.dir / "moved.sock";
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const auto pids = serving_pids(pool_status(c, "web"));
  // Connected to the old socket before the reload: a subscriber and a plain client.
  EventStream events(old_path);
  REQUIRE(events.subscribed());
  Load load(addr);
  REQUIRE(load.advance(100));

  m.rewrite(supervisor_at("moved.sock") + pool);
  const json r = c.request({{"cmd", "reload"}}, kReplyDeadline);  // on the old connection
  require_reloaded(r, 2);
  CHECK(r["supervisor"] == json::array({"control_socket"}));
  check_change(r, "web", "unchanged");

  // The new path answers; the old one is gone and refuses new clients.
  CHECK(is_socket_file(new_path));
  CHECK(!std::filesystem::exists(old_path));
  CHECK(control_answers(new_path));
  {
    ControlClient late(old_path, 300ms);
    CHECK(!late.connected());
  }
  // The subscriber of the old socket hears of the reload that moved it.
  const auto event = events.wait_for("config.reload");
  REQUIRE(event.has_value());
  CHECK((*event)["generation"] == 2);
  // The old connection is still answered.
  const json st = status_of(c);
  REQUIRE(is_ok(st));
  CHECK(st["generation"] == 2);
  // forkpoolctl on the new path.
  const auto ctl = run_command({ctl_binary(), "-s", new_path.string(), "--json", "status"}, 60s);
  INFO(ctl.describe());
  CHECK(ctl.exited);
  CHECK(ctl.exit_code == 0);

  // And back again, asked on the new socket: the old subscriber still gets the event.
  m.rewrite(supervisor_section() + pool);
  ControlClient on_new(new_path, 10s);
  REQUIRE(on_new.connected());
  const json back = on_new.request({{"cmd", "reload"}}, kReplyDeadline);
  require_reloaded(back, 3);
  CHECK(back["supervisor"] == json::array({"control_socket"}));
  CHECK(is_socket_file(old_path));
  CHECK(!std::filesystem::exists(new_path));
  CHECK(control_answers(old_path));
  const auto again = events.wait_for("config.reload");
  REQUIRE(again.has_value());
  CHECK((*again)["generation"] == 3);
  CHECK(is_ok(on_new.request({{"cmd", "status"}})));

  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  CHECK(serving_pids(pool_status(c, "web")) == pids);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("reload applies a changed control_mode to the control socket file",
          "[reload][supervisor][control]") {
  const std::string pool = hello_pool("web", 1);
  Master m(supervisor_section() + pool);
  REQUIRE(m.ready());
  const auto path = m.dir / "ctl.sock";
  CHECK(mode_of(path) == 0600);

  m.rewrite(supervisor_section("control_mode = \"0660\"") + pool);
  json r = m.reload();
  require_reloaded(r, 2);
  CHECK(r["supervisor"] == json::array({"control_mode"}));
  CHECK(mode_of(path) == 0660);
  CHECK(control_answers(path));

  m.rewrite(supervisor_section("control_mode = \"0600\"") + pool);
  r = m.reload();
  require_reloaded(r, 3);
  CHECK(r["supervisor"] == json::array({"control_mode"}));
  CHECK(mode_of(path) == 0600);

  // Moved and with a new mode at once: the new file has the new mode.
  m.rewrite(supervisor_at("other.sock", "control_mode = \"0640\"") + pool);
  r = m.reload();
  require_reloaded(r, 4);
  std::vector<std::string> keys = strings_of(r["supervisor"]);
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<std::string>{"control_mode", "control_socket"});
  CHECK(mode_of(m.dir / "other.sock") == 0640);
  CHECK(control_answers(m.dir / "other.sock"));
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

// ---- 2. a [supervisor] change that cannot be applied refuses the whole reload ----------

TEST_CASE(
    "reload is refused as a whole when the new metrics address, control socket or log file cannot "
    "be had",
    "[reload][supervisor]") {
  const std::string metrics_on = "metrics_listen = \"127.0.0.1:0\"";
  Master m(supervisor_section(metrics_on) + hello_pool("web", 2));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  const auto maddrs = metrics_addresses(m);
  REQUIRE(maddrs.size() == 1);
  const std::string maddr = maddrs[0];
  const auto socket = m.dir / "ctl.sock";
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const auto pids = serving_pids(pool_status(c, "web"));
  EventStream events(socket);
  REQUIRE(events.subscribed());
  Load load(addr);
  REQUIRE(load.advance(100));

  HeldPort held;
  REQUIRE(held.port() > 0);
  const std::string held_addr = "127.0.0.1:" + std::to_string(held.port());

  struct Case {
    std::string name;
    std::string supervisor;
    std::string named;  // what the error must name
  };
  // Each file also grows web from 2 to 3 and adds a pool: none of it may happen.
  const std::vector<Case> cases = {
      // Named where it is written, as config errors are.
      {"metrics address already in use",
       supervisor_section("metrics_listen = \"" + held_addr + "\""),
       ": supervisor.metrics_listen: " + held_addr + ": "},
      {"control socket in a missing directory", supervisor_at("missing/ctl.sock", metrics_on),
       "missing"},
      {"control socket movable but metrics address in use",
       supervisor_at("moved.sock", "metrics_listen = \"" + held_addr + "\""),
       std::to_string(held.port())},
      // Valid (its folder exists) but it cannot be opened: it is a directory. With the
      // control socket moved and metrics moved too, both of which must be undone.
      {"log file that cannot be opened",
       supervisor_at("moved.sock", "metrics_listen = \"127.0.0.2:0\"\nlog_file = \"logdir\""),
       "logdir"},
  };
  std::filesystem::create_directory(m.dir / "logdir");
  for (const auto& k : cases) {
    INFO("case: " << k.name);
    m.rewrite(k.supervisor + hello_pool("web", 3) + hello_pool("extra", 1));
    const auto failed_lines = m.log_count(kReloadFailedLine);
    const json r = m.reload();
    INFO("reply: " << shown(r));
    REQUIRE(r.is_object());
    CHECK(r["ok"] == false);
    REQUIRE(r["error"].is_string());
    std::string all = r["error"].get<std::string>();
    for (const auto& e : strings_of(r.value("errors", json::array()))) all += "\n" + e;
    CHECK_THAT(all, Catch::Contains(k.named));
    CHECK(wait_until([&] { return m.log_count(kReloadFailedLine) > failed_lines; }));
    CHECK(events.wait_for("config.reload_failed").has_value());

    // Nothing changed: generation, workers, pools, the old sockets.
    const json st = status_of(c);
    INFO(st.dump(2));
    CHECK(st["generation"] == 1);
    CHECK(st["pools"].size() == 1);
    CHECK(settled(pool_in(st, "web"), 2));
    CHECK(serving_pids(pool_in(st, "web")) == pids);
    CHECK(is_socket_file(socket));
    CHECK(control_answers(socket));
    CHECK(!std::filesystem::exists(m.dir / "moved.sock"));
    CHECK(!std::filesystem::exists(m.dir / "missing"));
    CHECK(std::filesystem::is_empty(m.dir / "logdir"));
    CHECK(http_generation(maddr) == 1);
    // A metrics endpoint that the refused reload opened on the way is closed again.
    for (const auto& other : metrics_addresses(m))
      if (other != maddr) CHECK(refuses(other));
    CHECK(hello_answers(addr));
  }
  CHECK(m.log_count(kReloadLine) == 0);

  // Fixed: the next reload applies as generation 2.
  m.rewrite(supervisor_section(metrics_on) + hello_pool("web", 3));
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "web", "in-place", {"workers"});
  CHECK(wait_until([&] { return settled(pool_status(c, "web"), 3); }, kSettle));
  CHECK(http_generation(maddr) == 2);
  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  CHECK(alarming_log_lines(m.process->log(), true) == std::vector<std::string>{});
}

// ---- 3. systemd ------------------------------------------------------------------------

TEST_CASE(
    "under systemd a reload sends RELOADING=1 with MONOTONIC_USEC, then READY=1, applied or "
    "refused",
    "[reload][supervisor][systemd]") {
  TempDir notify_dir;
  FakeSystemd systemd(notify_dir / "notify");
  REQUIRE(systemd.bound());
  const std::string good = supervisor_section() + hello_pool("web", 2);
  Master m(good, {systemd.env()});
  const auto started = systemd.until("READY=1");
  INFO("before ready: " << started.back());
  REQUIRE(started.back() == "READY=1");
  auto c = m.client();

  // One reload as systemd sees it: every datagram from the request to the READY=1 after
  // it; RELOADING=1 comes first of the two, in one datagram with MONOTONIC_USEC taken
  // during the reload.
  auto check_reload_messages = [&](const std::string& what, const std::function<void()>& trigger) {
    INFO(what);
    const std::uint64_t before = monotonic_usec();
    trigger();
    const auto to_reloading = systemd.until("RELOADING=1", 30s);
    const auto to_ready = systemd.until("READY=1", 30s);
    const std::uint64_t after = monotonic_usec();
    std::string seen;
    for (const auto& d : to_reloading) seen += "[" + d + "]\n";
    for (const auto& d : to_ready) seen += "[" + d + "]\n";
    INFO("datagrams:\n" << seen);
    // No READY=1 before RELOADING=1.
    for (std::size_t i = 0; i + 1 < to_reloading.size(); ++i) CHECK(to_reloading[i] != "READY=1");
    // No empty STATUS= while the pools move to the new generation.
    for (const auto& d : to_ready) CHECK(d != "STATUS=");
    const std::string reloading = to_reloading.back();
    REQUIRE(reloading.find("RELOADING=1") != std::string::npos);
    std::uint64_t usec = 0;
    bool has_usec = false;
    for (const auto& line : lines_of(reloading)) {
      if (!line.starts_with("MONOTONIC_USEC=")) continue;
      const std::string digits = line.substr(15);
      REQUIRE(!digits.empty());
      REQUIRE(digits.find_first_not_of("0123456789") == std::string::npos);
      usec = std::stoull(digits);
      has_usec = true;
    }
    CHECK(has_usec);
    CHECK(usec >= before);
    CHECK(usec <= after);
    CHECK(to_ready.back() == "READY=1");
  };

  // Applied.
  m.rewrite(supervisor_section() + hello_pool("web", 3));
  json applied;
  check_reload_messages("control reload, applied", [&] {
    applied = c.request({{"cmd", "reload"}}, kReplyDeadline);
  });
  require_reloaded(applied, 2);

  // Refused (an invalid file).
  m.rewrite(supervisor_section() + hello_pool("web", -1));
  json refused;
  check_reload_messages("control reload, refused", [&] {
    refused = c.request({{"cmd", "reload"}}, kReplyDeadline);
  });
  INFO(shown(refused));
  REQUIRE(refused.is_object());
  CHECK(refused["ok"] == false);

  // SIGHUP, as ExecReload sends it.
  m.rewrite(supervisor_section() + hello_pool("web", 2));
  check_reload_messages("SIGHUP, applied", [&] { m.process->signal(SIGHUP); });
  CHECK(wait_until([&] { return status_of(c)["generation"] == 3; }));

  m.process->signal(SIGTERM);
  CHECK(systemd.until("STOPPING=1").back() == "STOPPING=1");
  const auto status = m.process->wait_exit(30s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

// ---- 4. backlog --------------------------------------------------------------------------

TEST_CASE("reload of a changed backlog applies it in place on the same listener",
          "[reload][supervisor]") {
  Master m(supervisor_section() + hello_pool("web", 2, "backlog = 64\n"));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const auto pids = serving_pids(pool_status(c, "web"));
  const auto started = m.log_count("pid ([0-9]+) started");
  CHECK(listen_backlog(addr) == 64);
  Load load(addr);
  REQUIRE(load.advance(100));

  m.rewrite(supervisor_section() + hello_pool("web", 2, "backlog = 200\n"));
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "web", "in-place", {"backlog"});
  CHECK(r["supervisor"] == json::array());
  CHECK(listen_backlog(addr) == 200);
  REQUIRE(load.advance(100));

  const json web = pool_status(c, "web");
  INFO(web.dump(2));
  CHECK(listen_addresses(web) == std::vector<std::string>{addr});
  CHECK(settled(web, 2));
  CHECK(serving_pids(web) == pids);
  for (const auto& w : web["workers"]) CHECK(w["generation"] == 1);
  CHECK(m.log_count("pid ([0-9]+) started") == started);
  check_no_failed_requests(load);
  CHECK(m.log_count("\\[listener\\.backlog\\]") == 0);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

// ---- 5. dispatch mode --------------------------------------------------------------------

TEST_CASE(
    "reload switches a pool from master to shared dispatch and back under load without a failed "
    "request",
    "[reload][supervisor][dispatch]") {
  constexpr int kWorkers = 3;
  Master m(supervisor_section() + hello_pool("web", kWorkers));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), kWorkers); }));
  const json first = pool_status(c, "web");
  CHECK(first["dispatch"] == "master");
  const auto master_pids = pid_set(serving_pids(first));
  Load load(addr, 4);
  REQUIRE(load.advance(200));

  // master -> shared: every worker replaced by one that accepts on the inherited socket.
  m.rewrite(supervisor_section() + hello_pool("web", kWorkers, "dispatch = \"shared\"\n"));
  const json to_shared = m.reload();
  require_reloaded(to_shared, 2);
  // The default readiness follows the dispatch (protocol for master, exec for shared).
  check_change(to_shared, "web", "replace", {"dispatch", "ready"});
  json web;
  CHECK(wait_until(
      [&] {
        web = pool_status(c, "web");
        return settled(web, kWorkers) && all_replaced(web, 2, master_pids);
      },
      kSettle));
  {
    INFO(web.dump(2));
    CHECK(web["dispatch"] == "shared");
    CHECK(web["generation"] == 2);
    CHECK(listen_addresses(web) == std::vector<std::string>{addr});
    for (const auto& [worker, pid] : serving_pids(web)) {
      INFO("worker pid " << pid);
      CHECK(env_value(pid, "FORKPOOL_GENERATION") == "2");
      CHECK(env_value(pid, "LISTEN_FDS") == "1");
    }
  }
  for (const pid_t pid : master_pids)
    CHECK(wait_until([&] { return !is_child_of(pid, m.process->pid()); }, kSettle));
  REQUIRE(load.advance(300));

  // shared -> master.
  const auto shared_pids = pid_set(serving_pids(web));
  m.rewrite(supervisor_section() + hello_pool("web", kWorkers));
  const json to_master = m.reload();
  require_reloaded(to_master, 3);
  check_change(to_master, "web", "replace", {"dispatch", "ready"});
  CHECK(wait_until(
      [&] {
        web = pool_status(c, "web");
        return settled(web, kWorkers) && all_replaced(web, 3, shared_pids);
      },
      kSettle));
  {
    INFO(web.dump(2));
    CHECK(web["dispatch"] == "master");
    CHECK(web["generation"] == 3);
    CHECK(listen_addresses(web) == std::vector<std::string>{addr});
    for (const auto& [worker, pid] : serving_pids(web)) {
      INFO("worker pid " << pid);
      CHECK(env_value(pid, "FORKPOOL_GENERATION") == "3");
      CHECK(env_value(pid, "LISTEN_FDS") == "<unset>");
    }
  }
  for (const pid_t pid : shared_pids)
    CHECK(wait_until([&] { return !is_child_of(pid, m.process->pid()); }, kSettle));
  // The master dispatches again.
  const auto dispatched = pool_status(c, "web")["counters"]["dispatched"].get<std::uint64_t>();
  REQUIRE(load.advance(300));
  CHECK(pool_status(c, "web")["counters"]["dispatched"].get<std::uint64_t>() > dispatched);

  check_no_failed_requests(load);
  const json counters = pool_status(c, "web")["counters"];
  CHECK(counters["lost"] == 0);
  CHECK(counters["crashed"] == 0);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

// ---- 6. removed shared-dispatch pool --------------------------------------------------------

TEST_CASE(
    "reload removes a shared-dispatch pool: its workers drain and exit, then its port refuses",
    "[reload][supervisor][dispatch]") {
  const std::string web = hello_pool("web", 2);
  Master m(supervisor_section() + web + hello_pool("sh", 2, "dispatch = \"shared\"\n"));
  const std::string web_addr = m.process->wait_listen_address("web");
  const std::string sh_addr = m.process->wait_listen_address("sh");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until(
      [&] { return settled(pool_status(c, "web"), 2) && settled(pool_status(c, "sh"), 2); }));
  const auto web_pids = serving_pids(pool_status(c, "web"));
  const auto sh_pids = pid_set(serving_pids(pool_status(c, "sh")));
  CHECK(pool_status(c, "sh")["dispatch"] == "shared");
  for (int i = 0; i < 10; ++i) CHECK(hello_answers(sh_addr));
  Load load(web_addr);
  REQUIRE(load.advance(100));

  // A request in flight in the removed pool is finished.
  auto slow =
      std::async(std::launch::async, [&] { return http_get(sh_addr, "/sleep?ms=2000", 30s); });
  REQUIRE(wait_until([&] { return pool_status(c, "sh")["busy"] == 1; }));
  m.rewrite(supervisor_section() + web);
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "sh", "removed");
  check_change(r, "web", "unchanged");

  const auto answer = slow.get();
  REQUIRE(answer.has_value());
  CHECK(answer->status == 200);
  CHECK(answer->body == "slept 2000 ms\n");
  for (const pid_t pid : sh_pids)
    CHECK(wait_until([&] { return !is_child_of(pid, m.process->pid()); }, kSettle));
  CHECK(wait_until([&] { return refuses(sh_addr); }, kSettle));
  CHECK(wait_until([&] { return pool_in(status_of(c), "sh").is_null(); }, kSettle));

  const json after = status_of(c);
  INFO(after.dump(2));
  CHECK(after["pools"].size() == 1);
  CHECK(serving_pids(pool_in(after, "web")) == web_pids);
  CHECK(settled(pool_in(after, "web"), 2));
  CHECK(listen_addresses(pool_in(after, "web")) == std::vector<std::string>{web_addr});
  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  CHECK(pool_in(after, "web")["counters"]["lost"] == 0);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

// ---- 7. failed pool ------------------------------------------------------------------------

TEST_CASE("reload that fixes a failed pool's command starts it again, and it serves",
          "[reload][supervisor]") {
  const std::string broken =
      "[pools.app]\ncommand = [\"" + testworker_binary().string() +
      "\", \"--exit\", \"78\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 2\n\n";
  const std::string web = hello_pool("web", 1);
  Master m(supervisor_section() + web + broken);
  const std::string app_addr = m.process->wait_listen_address("app");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return pool_status(c, "app")["state"] == "failed"; }));
  REQUIRE(!m.process->wait_log("pool app failed: worker [0-9] exited with status 78").empty());
  // Both workers of the broken command have exited (the pool starts none after failing).
  const auto old = started_pids(m, "app");
  REQUIRE(old.size() == 2);
  for (const pid_t pid : old)
    REQUIRE(wait_until([&] { return !is_child_of(pid, m.process->pid()); }));
  CHECK(pool_status(c, "app")["state"] == "failed");
  const auto web_pids = serving_pids(pool_status(c, "web"));

  m.rewrite(supervisor_section() + web + hello_pool("app", 2));
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "app", "replace", {"command"});
  check_change(r, "web", "unchanged");
  check_revived(m, c, app_addr, old);
  CHECK(serving_pids(pool_status(c, "web")) == web_pids);
}

TEST_CASE(
    "reload that fixes a failed pool's command also replaces a worker of the broken command still "
    "running",
    "[reload][supervisor]") {
  // Worker 0 exits 78 at once and fails the pool; worker 1 of the same command is still
  // running (ready, as ready = "exec" says: sleep speaks no protocol) when the fix is deployed.
  const std::string broken =
      "[pools.app]\ncommand = [\"/bin/sh\", \"-c\", \"[ {worker} = 0 ] && exit 78; exec sleep "
      "600\"]\n"
      "listen = [\"tcp://127.0.0.1:0\"]\nworkers = 2\nready = \"exec\"\n\n";
  const std::string web = hello_pool("web", 1);
  Master m(supervisor_section() + web + broken);
  const std::string app_addr = m.process->wait_listen_address("app");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return pool_status(c, "app")["state"] == "failed"; }));
  REQUIRE(!m.process->wait_log("pool app failed: worker 0 exited with status 78").empty());
  const auto old = started_pids(m, "app");
  REQUIRE(old.size() == 2);
  const pid_t lingering = m.process->wait_worker_started("app", 1);
  REQUIRE(is_child_of(lingering, m.process->pid()));

  m.rewrite(supervisor_section() + web + hello_pool("app", 2));
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "app", "replace", {"command", "ready"});
  check_revived(m, c, app_addr, old);
}

// ---- 8. reload while shutting down ---------------------------------------------------------

TEST_CASE("reload while the master shuts down is refused and the master still exits cleanly",
          "[reload][supervisor]") {
  Master m(supervisor_section() + hello_pool("web", 1));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }));
  m.rewrite(supervisor_section() + hello_pool("web", 2));

  // The request keeps the master in its shutdown through both refusals below: 8 s, long
  // enough for them on a loaded machine.
  auto slow = std::async(std::launch::async, [&] { return http_get(addr, "/sleep?ms=8000", 30s); });
  REQUIRE(wait_until([&] { return pool_status(c, "web")["busy"] == 1; }));
  m.process->signal(SIGTERM);
  REQUIRE(!m.process->wait_log("\\[master\\.stop\\] graceful shutdown").empty());

  // On the connection made before the shutdown: refused (or the connection is closed).
  const json r = c.request({{"cmd", "reload"}}, kReplyDeadline);
  INFO("reply: " << shown(r));
  if (r.is_null()) {
    CHECK(c.is_closed(10s));
  } else {
    CHECK(r["ok"] == false);
    REQUIRE(r["error"].is_string());
    CHECK_THAT(r["error"].get<std::string>(),
               Catch::Contains("shutting down", Catch::CaseSensitive::No));
    const json st = status_of(c);
    if (st.is_object()) {
      CHECK(st["generation"] == 1);
      CHECK(st["master"]["state"] == "stopping");
    }
  }
  // SIGHUP now is refused the same way.
  const auto refused_lines = m.log_count(kReloadFailedLine);
  m.process->signal(SIGHUP);
  CHECK(wait_until([&] { return m.log_count(kReloadFailedLine) > refused_lines; }));

  const auto answer = slow.get();
  REQUIRE(answer.has_value());
  CHECK(answer->status == 200);
  const auto status = m.process->wait_exit(30s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  INFO(m.process->log());
  CHECK(m.log_count(kReloadLine) == 0);
  CHECK(m.log_count("pid ([0-9]+) started") == 1);
  CHECK(m.log_count("\\[master\\.exit\\]") == 1);
}
