// SPDX-License-Identifier: Apache-2.0
// Dynamic pools (SPEC section 3a) through the real binary: growth under a burst, retirement
// after idle_timeout, start on demand, growth of a shared-dispatch pool from its listener's
// backlog, no wake-ups at rest, the operator's scale within min..max, and the scale events.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <set>
#include <future>
#include <string>
#include <vector>

#include "support/held_request.hpp"
#include "support/http_client.hpp"
#include "support/run_command.hpp"
#include "support/tmux.hpp"
#include "test_common.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;

namespace {

std::string dynamic_hello(const std::string& name, const std::string& sizing, const std::string& extra = "") {
  return "[pools." + name + "]\ncommand = [" + quoted(hello_binary().string()) +
         "]\nlisten = [\"tcp://127.0.0.1:0\"]\n" + sizing + "\n" + extra + "\n";
}

// True while the master sleeps in epoll_wait(2) with no timeout: no timer is armed.
bool waiting_without_timeout(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
  std::vector<std::string> s;
  std::string f;
  while (in >> f) s.push_back(f);
  const bool epoll = s.size() > 4 && (s[0] == std::to_string(SYS_epoll_wait) || s[0] == std::to_string(SYS_epoll_pwait));
  return epoll && (s[4] == "0xffffffff" || s[4] == "0xffffffffffffffff");
}

// Stays without timeout for a while (each look is a fresh read of /proc).
bool stays_without_timeout(pid_t pid) {
  for (int i = 0; i < 50; ++i) {
    if (!wait_until([&] { return waiting_without_timeout(pid); }, 5s)) return false;
  }
  return true;
}

std::vector<std::future<std::optional<HttpResponse>>> slow_requests(const std::string& addr, int n, int ms) {
  std::vector<std::future<std::optional<HttpResponse>>> out;
  for (int i = 0; i < n; ++i)
    out.push_back(std::async(std::launch::async,
                             [addr, ms] { return http_get(addr, "/sleep?ms=" + std::to_string(ms), 30s); }));
  return out;
}

int answered_ok(std::vector<std::future<std::optional<HttpResponse>>>& requests) {
  int ok = 0;
  for (auto& r : requests) {
    const auto a = r.get();
    ok += (a && a->status == 200) ? 1 : 0;
  }
  return ok;
}

std::vector<json> drain_events(ControlClient& events, std::chrono::milliseconds quiet = 300ms) {
  std::vector<json> out;
  while (auto e = events.read_json(quiet)) out.push_back(*e);
  return out;
}

std::vector<json> named(const std::vector<json>& events, const std::string& name) {
  std::vector<json> out;
  for (const auto& e : events)
    if (e.value("event", "") == name) out.push_back(e);
  return out;
}

}  // namespace

TEST_CASE("a burst of slow requests grows a dynamic pool to serve them all at once and idle_timeout shrinks it back",
          "[dynamic]") {
  Setup s(supervisor_section() +
          dynamic_hello("web", "min_workers = 1\nmax_workers = 8\nspare_workers = 1\nidle_timeout = \"1s\""));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  ControlClient events(s.socket());
  REQUIRE(events.request({{"cmd", "events"}}).value("ok", false));
  // At rest: min_workers, and the one idle worker is the spare.
  REQUIRE(wait_until([&] { return pool_status(c, "web").value("live", -1) == 1; }));

  constexpr int kBurst = 6;
  // Held until released (support/held_request.hpp): however slowly the new workers start
  // on a loaded machine, none of the six requests ends before they are all in flight.
  std::vector<std::unique_ptr<HeldRequest>> requests;
  for (int i = 0; i < kBurst; ++i) requests.push_back(std::make_unique<HeldRequest>(addr));
  // With one worker and max_inflight 1 only one could be busy: all six at once means it grew.
  CHECK(wait_until([&] { return pool_status(c, "web").value("busy", 0) == kBurst; }, 30s));
  const json grown = pool_status(c, "web");
  CHECK(grown["target"].get<int>() >= kBurst);
  CHECK(grown["target"].get<int>() <= 8);
  CHECK(grown["min_workers"] == 1);
  CHECK(grown["max_workers"] == 8);
  CHECK(grown["dynamic"] == true);
  CHECK_THAT(grown["last_scale"].get<std::string>(), Catch::StartsWith("up from"));
  int answered = 0;
  for (auto& r : requests) {
    const auto a = r->release();
    answered += (a && a->status == 200) ? 1 : 0;
  }
  CHECK(answered == kBurst);

  // Idle for idle_timeout, the extra workers retire one by one down to min (+ the spare).
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.value("target", 0) == 1 && p.value("live", 0) == 1;
  }, 20s));
  const json after = pool_status(c, "web");
  CHECK_THAT(after["last_scale"].get<std::string>(), Catch::Contains("idle longer than idle_timeout"));
  CHECK(counter(after, "crashed") == 0);
  CHECK(counter(after, "lost") == 0);

  const auto seen = drain_events(events);
  const auto ups = named(seen, "scale.up");
  const auto downs = named(seen, "scale.down");
  REQUIRE(!ups.empty());
  CHECK(ups.front()["pool"] == "web");
  CHECK(ups.front()["from"] == 1);
  CHECK(ups.front().contains("idle"));
  CHECK(ups.front().contains("busy"));
  CHECK(ups.front().contains("waiting"));
  CHECK(!downs.empty());
  for (const auto& d : downs) CHECK(d["reason"] == "idle longer than idle_timeout");
  // The retired workers drained and exited on request: nothing was killed.
  CHECK(s.master->all_matches("(exited on signal 9)").empty());
  stop_master(*s.master);
}

TEST_CASE("min_workers = 0 starts a worker for the first request and returns to zero workers", "[dynamic]") {
  Setup s(supervisor_section() +
          dynamic_hello("web", "min_workers = 0\nmax_workers = 2\nidle_timeout = \"500ms\""));
  const std::string addr = s.master->wait_listen_address("web");
  auto c = s.client();
  REQUIRE(wait_until([&] { return pool_state(c, "web") == "running"; }));
  const json rest = pool_status(c, "web");
  CHECK(rest["live"] == 0);
  CHECK(rest["target"] == 0);
  CHECK(s.master->all_matches("(pid [0-9]+ started)").empty());

  const auto first = http_get(addr, "/", 10s);
  REQUIRE(first.has_value());
  CHECK(first->status == 200);
  CHECK(s.master->all_matches("(pid [0-9]+ started)").size() >= 1);
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.value("live", -1) == 0 && p.value("target", -1) == 0;
  }, 10s));
  // And again, from zero.
  const auto second = http_get(addr, "/", 10s);
  REQUIRE(second.has_value());
  CHECK(second->status == 200);
  const json p = pool_status(c, "web");
  CHECK(counter(p, "queue_timeouts") == 0);
  CHECK(counter(p, "closed") == 0);
  stop_master(*s.master);
}

TEST_CASE("a shared-dispatch dynamic pool grows when connections wait in its listener's backlog", "[dynamic]") {
  Setup s(supervisor_section() + dynamic_hello("web",
                                               "dispatch = \"shared\"\nmin_workers = 1\nmax_workers = 4\n"
                                               "spare_workers = 0\nidle_timeout = \"3s\""));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  REQUIRE(wait_until([&] { return pool_status(c, "web").value("live", -1) == 1; }));

  // One worker sleeping in /sleep leaves the others in the kernel's accept queue (one at a
  // time: forkpool-hello accepts every connection waiting when it wakes). 10 s: long past
  // the growth below even on a loaded machine.
  auto requests = slow_requests(addr, 1, 10000);
  REQUIRE(wait_until([&] { return pool_status(c, "web").value("busy", 0) == 1; }));
  for (auto& r : slow_requests(addr, 3, 1000)) requests.push_back(std::move(r));
  // It grows. By how much depends on how many connections the master's 100 ms sample finds
  // waiting: a new forkpool-hello accepts every connection waiting when it wakes, so once
  // one worker started for the first waiting connection, the rest may already be its.
  CHECK(wait_until([&] { return pool_status(c, "web").value("target", 0) >= 2; }, 10s));
  CHECK(answered_ok(requests) == 4);
  CHECK(!s.master->wait_log("pool web grows from 1 to [0-9]+ workers: connections waiting").empty());
  // Idle again, it returns to min_workers.
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.value("target", 0) == 1 && p.value("live", 0) == 1;
  }, 20s));
  stop_master(*s.master);
}

TEST_CASE("a unix-socket shared-dispatch pool on demand starts a worker when a client connects", "[dynamic]") {
  Setup s(supervisor_section() + "[pools.web]\ncommand = [" + quoted(hello_binary().string()) +
          "]\nlisten = [\"unix:web.sock\"]\ndispatch = \"shared\"\nmin_workers = 0\nmax_workers = 2\n"
          "idle_timeout = \"500ms\"\n");
  auto c = s.client();
  REQUIRE(wait_until([&] { return pool_state(c, "web") == "running"; }));
  CHECK(pool_status(c, "web")["live"] == 0);
  // The master watches the listener: a client that connects (and waits in the backlog)
  // gets a worker, which answers it.
  const auto reply = run_command({"/usr/bin/python3", "-c",
                                  "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\n"
                                  "s.connect(sys.argv[1])\ns.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n"
                                  "Connection: close\\r\\n\\r\\n')\nprint(s.recv(100).decode().split()[1])\n",
                                  (s.dir / "web.sock").string()},
                                 20s);
  CHECK(reply.out == "200\n");
  CHECK(wait_until([&] { return pool_status(c, "web").value("live", -1) == 0; }, 10s));
  stop_master(*s.master);
}

TEST_CASE("a dynamic pool at rest arms no timer in either dispatch mode before and after a burst", "[dynamic]") {
  Setup s(supervisor_section() +
          dynamic_hello("web", "min_workers = 1\nmax_workers = 4\nspare_workers = 1\nidle_timeout = \"500ms\"") +
          dynamic_hello("shared", "dispatch = \"shared\"\nmin_workers = 1\nmax_workers = 4\nspare_workers = 1\n"
                                  "idle_timeout = \"500ms\""));
  const std::string web = s.master->wait_listen_address("web");
  const std::string shared = s.master->wait_listen_address("shared");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  CHECK(stays_without_timeout(s.master->pid()));

  auto a = slow_requests(web, 3, 300);
  auto b = slow_requests(shared, 3, 300);
  CHECK(answered_ok(a) == 3);
  CHECK(answered_ok(b) == 3);
  {
    auto c = s.client();  // closed before the look: a control client has an idle timer of its own
    CHECK(wait_until([&] {
      return pool_status(c, "web").value("live", 0) == 1 && pool_status(c, "shared").value("live", 0) == 1;
    }, 20s));
  }
  const bool at_rest = stays_without_timeout(s.master->pid());
  if (!at_rest) {
    std::ifstream in("/proc/" + std::to_string(s.master->pid()) + "/syscall");
    std::string line;
    std::getline(in, line);
    FAIL_CHECK("the master waits with a timeout: " << line << "\n" << s.master->log());
  }
  stop_master(*s.master);
}

TEST_CASE("scale and TTIN/TTOU move a dynamic pool's target within min..max and outside it is an error",
          "[dynamic]") {
  Setup s(supervisor_section() +
          dynamic_hello("web", "min_workers = 1\nmax_workers = 3\nspare_workers = 0\nidle_timeout = \"0\""));
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();

  const json too_many = c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 4}});
  CHECK(too_many["ok"] == false);
  CHECK_THAT(too_many["error"].get<std::string>(),
             Catch::Contains("min_workers..max_workers (1..3)") && Catch::Contains("not 4"));
  const json too_few = c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 0}});
  CHECK(too_few["ok"] == false);
  CHECK_THAT(too_few["error"].get<std::string>(), Catch::Contains("(1..3)"));
  CHECK(pool_status(c, "web")["target"] == 1);

  const json up = c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 3}});
  REQUIRE(up["ok"] == true);
  CHECK(up["to"] == 3);
  CHECK(wait_until([&] { return pool_status(c, "web").value("ready", 0) == 3; }));
  CHECK(pool_status(c, "web")["last_scale"] == "up from 1 to 3: operator");

  s.master->signal(SIGTTIN);  // at max_workers: stays
  CHECK(!s.master->wait_log("pool web stays at 3 workers").empty());
  s.master->signal(SIGTTOU);
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.value("target", 0) == 2 && p.value("live", 0) == 2;
  }));

  // The worker numbers left may have a gap (the longest idle one retired): commands that
  // name a worker take the numbers the pool has.
  std::set<unsigned> have;
  const json shrunk = pool_status(c, "web");
  for (const auto& w : shrunk["workers"])
    if (w["role"] == "serving") have.insert(w["worker"].get<unsigned>());
  REQUIRE(have.size() == 2);
  for (unsigned n = 0; n < 3; ++n) {
    const json r = c.request({{"cmd", "restart"}, {"pool", "web"}, {"worker", n}});
    CHECK(r["ok"] == (have.count(n) == 1));
    if (have.count(n) == 0) CHECK_THAT(r["error"].get<std::string>(), Catch::Contains("has workers"));
  }

  const json metrics = c.request({{"cmd", "metrics"}});
  REQUIRE(metrics["ok"] == true);
  CHECK_THAT(metrics["text"].get<std::string>(),
             Catch::Contains("forkpool_pool_workers_target{pool=\"web\"} 2") &&
                 Catch::Contains("forkpool_pool_workers_min{pool=\"web\"} 1") &&
                 Catch::Contains("forkpool_pool_workers_max{pool=\"web\"} 3"));
  stop_master(*s.master);
}

TEST_CASE("an operator's scale-up restarts the idle clock: workers idle before it are not retired at once",
          "[dynamic]") {
  Setup s(supervisor_section() +
          // Long enough that no retirement of the new workers can come before they are all
          // ready, even on a loaded machine.
          dynamic_hello("web", "min_workers = 1\nmax_workers = 4\nspare_workers = 0\nidle_timeout = \"8s\""));
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  ControlClient events(s.socket());
  REQUIRE(events.request({{"cmd", "events"}}).value("ok", false));
  // Up to 2, then back to 1 once idle_timeout passed: the worker left has been idle for
  // longer than idle_timeout when the next scale comes.
  REQUIRE(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 2}}).value("ok", false));
  REQUIRE(wait_until([&] {
    for (const auto& e : drain_events(events, 100ms))
      if (e.value("event", "") == "scale.down") return true;
    return false;
  }, 30s));

  const auto up = run_command({(std::filesystem::path(FORKPOOL_BINARY_DIR) / "ctl/forkpoolctl").string(), "-s",
                               s.socket().string(), "scale", "web", "3"},
                              20s);
  INFO(up.describe());
  CHECK(up.exit_code == 0);
  json p;
  CHECK(wait_until([&] {
    p = pool_status(c, "web");
    return p.value("target", 0) == 3 && p.value("ready", 0) == 3;
  }));
  INFO(p.dump(2));
  CHECK(p["last_scale"] == "up from 1 to 3: operator");
  CHECK(named(drain_events(events), "scale.down").empty());
  // idle_timeout after the scale, the pool goes back to min_workers.
  CHECK(wait_until([&] {
    p = pool_status(c, "web");
    return p.value("target", 0) == 1 && p.value("live", 0) == 1;
  }, 30s));
  stop_master(*s.master);
}

TEST_CASE("a reload that changes min_workers and max_workers applies in place", "[dynamic]") {
  const auto config = [](int min, int max) {
    return supervisor_section() + dynamic_hello("web", "min_workers = " + std::to_string(min) + "\nmax_workers = " +
                                                           std::to_string(max) + "\nspare_workers = 0");
  };
  Setup s(config(1, 4));
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  const pid_t first = s.master->wait_worker_started("web", 0);

  write_file(s.dir / "f.toml", config(3, 5));
  const json r = c.request({{"cmd", "reload"}});
  REQUIRE(r["ok"] == true);
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.value("ready", 0) == 3 && p.value("min_workers", 0) == 3 && p.value("max_workers", 0) == 5;
  }));
  CHECK(process_alive(first));
  CHECK(s.master->wait_worker_started("web", 0) == first);  // kept, not replaced

  write_file(s.dir / "f.toml", config(1, 2));
  REQUIRE(c.request({{"cmd", "reload"}})["ok"] == true);
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.value("target", 0) == 2 && p.value("live", 0) == 2;
  }));
  CHECK(pool_status(c, "web")["last_scale"] == "down from 3 to 2: reload");

  // Fixed again: its dynamic decisions are no longer shown as the pool's.
  write_file(s.dir / "f.toml", supervisor_section() + hello_pool("web", 2));
  REQUIRE(c.request({{"cmd", "reload"}})["ok"] == true);
  CHECK(wait_until([&] { return pool_status(c, "web").value("max_workers", 0) == 2; }));
  CHECK(pool_status(c, "web")["last_scale"] == "");
  stop_master(*s.master);
}

TEST_CASE("forkpoolctl top shows a dynamic pool's bounds and why it last scaled, live through a scale and a reload",
          "[dynamic][top]") {
  const auto config = [](int min, int max) {
    return supervisor_section() + dynamic_hello("web", "min_workers = " + std::to_string(min) + "\nmax_workers = " +
                                                           std::to_string(max) + "\nspare_workers = 0\nidle_timeout = \"0\"");
  };
  Setup s(config(1, 4));
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();

  // One top for the whole test: what it shows after the scale and the reload is read live
  // from the scoreboard, not from what it was told when it attached.
  Tmux tmux;
  REQUIRE(tmux.start(std::string(FORKPOOL_BINARY_DIR) + "/ctl/forkpoolctl -s " + s.socket().string() +
                     " top --interval 100; sleep 30").exit_code == 0);
  std::string screen;
  const auto shows = [&](const std::vector<std::string>& texts) {
    return wait_until([&] {
      screen = tmux.screen();
      for (const auto& t : texts)
        if (screen.find(t) == std::string::npos) return false;
      return true;
    });
  };
  CHECK(shows({"web running  size 1 (min 1, max 4)"}));
  INFO(screen);
  CHECK(screen.find("last scale") == std::string::npos);  // it never scaled

  REQUIRE(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 3}})["ok"] == true);
  CHECK(shows({"size 3 (min 1, max 4)", "last scale: up from 1 to 3: operator", "(1 decisions)"}));
  INFO(screen);

  // min 2..5 keeps the target of 3 (no worker starts, so top has no reason to attach again).
  write_file(s.dir / "f.toml", config(2, 5));
  REQUIRE(c.request({{"cmd", "reload"}})["ok"] == true);
  CHECK(shows({"size 3 (min 2, max 5)", "last scale: up from 1 to 3: operator"}));
  INFO(screen);

  // A reload whose max is below the target shrinks the pool, for that reason.
  write_file(s.dir / "f.toml", config(1, 2));
  REQUIRE(c.request({{"cmd", "reload"}})["ok"] == true);
  CHECK(shows({"size 2 (min 1, max 2)", "last scale: down from 3 to 2: reload", "(2 decisions)"}));
  INFO(screen);
  tmux.keys("q");
  stop_master(*s.master);
}

namespace {

std::map<unsigned, pid_t> serving_pids(const json& pool) {
  std::map<unsigned, pid_t> out;
  if (!pool.is_object()) return out;
  for (const auto& w : pool["workers"])
    if (w["role"] == "serving") out[w["worker"].get<unsigned>()] = w["pid"].get<pid_t>();
  return out;
}

}  // namespace

TEST_CASE("a graceful shutdown while a dynamic pool grows starts nothing more and exits 0", "[dynamic]") {
  // ready = notify: the new workers are still starting when the stop comes.
  Setup s(supervisor_section() + dynamic_hello("web", "min_workers = 1\nmax_workers = 8\nspare_workers = 0\n"
                                                      "ready = \"notify\"\ngraceful_timeout = \"10s\""));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  auto requests = slow_requests(addr, 6, 1500);
  REQUIRE(wait_until([&] { return pool_status(c, "web").value("target", 0) >= 2; }));
  s.master->signal(SIGTERM);
  const auto status = s.master->wait_exit(30s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  // Every request got an answer or a closed connection (queued ones are closed, and counted).
  for (auto& r : requests) r.get();
  // No worker was started after the stop began.
  const std::string log = s.master->log();
  const auto stop_at = log.find("[master.stop]");
  REQUIRE(stop_at != std::string::npos);
  CHECK(log.find("[worker.spawn]", stop_at) == std::string::npos);
  CHECK(log.find("[scale.up]", stop_at) == std::string::npos);
}

TEST_CASE("a rolling restart of a dynamic pool replaces every worker and keeps its target", "[dynamic]") {
  Setup s(supervisor_section() +
          dynamic_hello("web", "min_workers = 2\nmax_workers = 4\nspare_workers = 0\nidle_timeout = \"0\""));
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  REQUIRE(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 3}})["ok"] == true);
  REQUIRE(wait_until([&] { return serving_pids(pool_status(c, "web")).size() == 3; }));
  const auto before = serving_pids(pool_status(c, "web"));
  REQUIRE(c.request({{"cmd", "restart"}, {"pool", "web"}})["ok"] == true);
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    const auto now = serving_pids(p);
    if (now.size() != 3 || p.value("live", 0) != 3 || p.value("ready", 0) != 3) return false;
    for (const auto& [worker, pid] : before)
      if (now.count(worker) == 0 || now.at(worker) == pid) return false;
    return true;
  }, 20s));
  CHECK(pool_status(c, "web")["target"] == 3);
  stop_master(*s.master);
}

TEST_CASE("max_requests recycles the workers of a dynamic pool without losing a request", "[dynamic]") {
  Setup s(supervisor_section() +
          dynamic_hello("web", "min_workers = 1\nmax_workers = 3\nspare_workers = 1\nmax_requests = 2"));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  for (int i = 0; i < 10; ++i) {
    const auto r = http_get(addr, "/", 10s);
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
  }
  // How many workers are recycled depends on how fast replacements get ready (a worker
  // keeps serving past max_requests until its replacement is): what must hold is that
  // every worker that reached max_requests is replaced in the end.
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    if (counter(p, "recycled") < 1) return false;
    for (const auto& w : p["workers"])
      if (w.value("role", "") == "serving" && w.value("handled", 0) >= 2) return false;
    return true;
  }));
  const json p = pool_status(c, "web");
  CHECK(counter(p, "lost") == 0);
  CHECK(counter(p, "crashed") == 0);
  CHECK(p["target"].get<int>() >= 1);
  CHECK(p["target"].get<int>() <= 3);
  stop_master(*s.master);
}

TEST_CASE("a reload that changes what a dynamic pool's workers start with replaces them and keeps the target",
          "[dynamic]") {
  const auto config = [](const std::string& value) {
    return supervisor_section() + dynamic_hello("web", "min_workers = 2\nmax_workers = 4\nspare_workers = 0\n"
                                                       "idle_timeout = \"0\"\nenv = { RELEASE = \"" + value + "\" }");
  };
  Setup s(config("a"));
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("every pool has its workers ready").empty());
  auto c = s.client();
  REQUIRE(c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 3}})["ok"] == true);
  REQUIRE(wait_until([&] { return serving_pids(pool_status(c, "web")).size() == 3; }));
  const auto before = serving_pids(pool_status(c, "web"));

  write_file(s.dir / "f.toml", config("b"));
  REQUIRE(c.request({{"cmd", "reload"}})["ok"] == true);
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    const auto now = serving_pids(p);
    if (now.size() != 3 || p.value("live", 0) != 3) return false;
    for (const auto& [worker, pid] : before)
      if (now.count(worker) == 0 || now.at(worker) == pid) return false;
    return true;
  }, 20s));
  const json p = pool_status(c, "web");
  CHECK(p["target"] == 3);
  CHECK(p["generation"] == 2);
  const auto r = http_get(addr, "/", 10s);
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  stop_master(*s.master);
}

TEST_CASE("a dynamic pool whose worker is in crash backoff does not grow for waiting connections", "[dynamic]") {
  Setup s(supervisor_section() + "[pools.web]\ncommand = [" + quoted(testworker_binary().string()) +
          ", \"--exit\", \"1\", \"--exit-after-ms\", \"200\"]\nlisten = [\"tcp://127.0.0.1:0\"]\n"
          "min_workers = 1\nmax_workers = 8\nspare_workers = 0\nrestart_delay = \"60s\"\n");  // outlasts the test
  const std::string addr = s.master->wait_listen_address("web");
  REQUIRE(!s.master->wait_log("exited with status 1").empty());
  REQUIRE(!s.master->wait_log("worker web\\[0\\] starts again in").empty());
  auto c = s.client();
  // Connections arrive while the only worker waits out its backoff: they queue in the
  // master, and the pool does not start more of a program that keeps crashing.
  std::vector<int> clients;
  const int port = std::stoi(addr.substr(addr.rfind(':') + 1));
  for (int i = 0; i < 3; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    clients.push_back(fd);
  }
  // Each accept batch is sized at once: by the time status shows them queued, it was decided.
  REQUIRE(wait_until([&] { return pool_status(c, "web")["queue"].value("length", 0) == 3; }));
  CHECK(pool_status(c, "web")["target"] == 1);
  CHECK(s.master->all_matches("(\\[scale.up\\])").empty());
  for (int fd : clients) ::close(fd);
  stop_master(*s.master);
}

// A program that does not report (no forkpool library: it never shows busy in the
// scoreboard) looks idle to the master even while it serves. Connections waiting on its
// listeners count as its activity instead, so a pool that just grew because connections
// waited does not retire, right away, a worker up for longer than idle_timeout that is
// serving one of them.
TEST_CASE("a dynamic shared pool does not retire a non-reporting worker that serves as connections wait",
          "[dynamic]") {
  TempDir scripts;
  // One connection at a time, blocking accept on the inherited listener, the default
  // SIGTERM (it dies at once, with the request it holds).
  const auto worker = scripts.path() / "serve.py";
  write_file(worker,
             "import socket\n"
             "listener = socket.socket(fileno=3)\n"
             "listener.setblocking(True)\n"
             "while True:\n"
             "    conn, _ = listener.accept()\n"
             "    data = b''\n"
             "    while b'\\r\\n\\r\\n' not in data:\n"
             "        chunk = conn.recv(4096)\n"
             "        if not chunk:\n"
             "            break\n"
             "        data += chunk\n"
             "    conn.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n')\n"
             "    conn.close()\n");
  Setup s(supervisor_section() + "[pools.web]\ncommand = [\"/usr/bin/python3\", " + quoted(worker.string()) +
          "]\nlisten = [\"tcp://127.0.0.1:0\"]\ndispatch = \"shared\"\nmin_workers = 1\nmax_workers = 2\n"
          "spare_workers = 0\nidle_timeout = \"5s\"\n");
  const std::string addr = s.master->wait_listen_address("web");
  auto c = s.client();
  // The first worker has been up for longer than idle_timeout.
  REQUIRE(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.is_object() && p["workers"].size() == 1 && p["workers"][0].value("uptime_s", 0.0) > 5.5;
  }, 30s));

  // It takes a request it is still reading; two more connections wait, more than the
  // workers that look idle (the one, which reports nothing), and the pool grows.
  HttpConnection held(addr, 30s);
  REQUIRE(held.connected());
  REQUIRE(held.send("GET / HTTP/1.1\r\nHost: x\r\n"));
  std::vector<std::future<std::optional<HttpResponse>>> more;
  for (int i = 0; i < 2; ++i) more.push_back(std::async(std::launch::async, [&] { return http_get(addr, "/", 20s); }));
  REQUIRE(!s.master->wait_log("pool web grows from 1 to 2 workers").empty());
  for (auto& m : more) {
    const auto answered = m.get();
    REQUIRE(answered.has_value());
    CHECK(answered->status == 200);
  }
  // The serving worker is not retired as idle: the demand was seen less than idle_timeout ago.
  CHECK(s.master->wait_log("\\[scale\\.down\\]", 1500ms).empty());
  REQUIRE(held.send("\r\n"));
  const auto first = held.read_response();
  REQUIRE(first.has_value());
  CHECK(first->status == 200);
  CHECK(first->body == "ok\n");
  stop_master(*s.master);
}
