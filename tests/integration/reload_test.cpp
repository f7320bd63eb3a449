// SPDX-License-Identifier: Apache-2.0
// Configuration reload end to end against the real master (SPEC sections 2, 6 and 7;
// issue 9): `{"cmd":"reload"}`, `forkpoolctl reload` and SIGHUP re-read the file the
// master was started with. Every test runs its own master in its own folder, binds port 0,
// keeps an HTTP load running across the reload and requires that not one request fails.
//
// What a reload must do, as these tests read the contract:
// - success: {"ok":true,"generation":N,"summary":"...","pools":[{"name","change","keys"}],
//   "supervisor":[...]}; the generation starts at 1 and grows by one per successful reload;
// - failure: {"ok":false,"error":"...","errors":["FILE:LINE:COL: KEY: message",...]} and
//   nothing changes; `config.reload` / `config.reload_failed` in the log and on `events`;
// - unchanged pool: same pids; master-side keys: applied in place (a `workers` change is a
//   scale); worker-side keys: rolling replacement by generation; added pools start; removed
//   pools drain, then their listeners close; a listener whose address stays is never closed.

#include <fcntl.h>
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "reload_support.hpp"
#include "support/fd_flags.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reload_support;
using namespace std::chrono_literals;
using nlohmann::json;

// ---------------------------------------------------------------------------------------

TEST_CASE("reload of an unchanged file keeps every worker and bumps the generation", "[reload]") {
  const std::string config = supervisor_section() + hello_pool("web", 3) + plain_pool("bg", 2);
  Master m(config);
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until(
      [&] { return settled(pool_status(c, "web"), 3) && settled(pool_status(c, "bg"), 2); }));
  const json before = status_of(c);
  const auto web_before = serving_pids(pool_in(before, "web"));
  const auto bg_before = serving_pids(pool_in(before, "bg"));
  const auto listeners_before = pool_in(before, "web")["listeners"];
  const auto started_before = m.log_count("pid ([0-9]+) started");
  Load load(addr);
  REQUIRE(load.advance(100));

  const auto answered_at_reload = load.answered();
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "web", "unchanged");
  check_change(r, "bg", "unchanged");
  CHECK(r["pools"].size() == 2);
  CHECK(r["supervisor"] == json::array());
  CHECK(!m.process->wait_log(kReloadLine).empty());
  REQUIRE(load.advance(200));
  CHECK(load.answered() > answered_at_reload);

  const json after = status_of(c);
  INFO(after.dump(2));
  CHECK(after["generation"] == 2);
  CHECK(serving_pids(pool_in(after, "web")) == web_before);
  CHECK(serving_pids(pool_in(after, "bg")) == bg_before);
  CHECK(settled(pool_in(after, "web"), 3));
  CHECK(settled(pool_in(after, "bg"), 2));
  CHECK(pool_in(after, "web")["listeners"] == listeners_before);
  for (const char* pool : {"web", "bg"}) {
    const json listed = pool_in(after, pool);  // kept alive for the loop below
    for (const auto& w : listed["workers"]) {
      CHECK(w["generation"] == 1);  // started under generation 1 and never replaced
      CHECK(w["restarts"] == 0);
    }
  }
  CHECK(m.log_count("pid ([0-9]+) started") == started_before);

  // forkpoolctl: --json passes the reply through; without it a summary is printed.
  const auto as_json = m.ctl({"--json", "reload"});
  INFO(as_json.describe());
  REQUIRE(as_json.exited);
  CHECK(as_json.exit_code == 0);
  json ctl_reply;
  for (const auto& line : lines_of(as_json.out)) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("summary")) ctl_reply = j;
  }
  CHECK(is_ok(ctl_reply));
  CHECK(ctl_reply["generation"] == 3);
  const auto plain = m.ctl({"reload"});
  INFO(plain.describe());
  REQUIRE(plain.exited);
  CHECK(plain.exit_code == 0);
  CHECK_THAT(plain.out, Catch::Contains("unchanged", Catch::CaseSensitive::No));
  const json last = status_of(c);
  CHECK(last["generation"] == 4);
  CHECK(serving_pids(pool_in(last, "web")) == web_before);
  CHECK(serving_pids(pool_in(last, "bg")) == bg_before);

  check_came_through(load, c, "web", *m.process);
}

TEST_CASE("reload scales a pool from 4 to 6 to 3 workers in place", "[reload]") {
  Master m(supervisor_section() + hello_pool("web", 4));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 4); }));
  const auto original = serving_pids(pool_status(c, "web"));
  REQUIRE(original.size() == 4);
  Load load(addr);
  REQUIRE(load.advance(100));

  // 4 -> 6: two workers are added, the four running ones stay.
  m.rewrite(supervisor_section() + hello_pool("web", 6));
  const json up = m.reload();
  require_reloaded(up, 2);
  check_change(up, "web", "in-place", {"workers"});
  json web;
  CHECK(wait_until([&] { return settled(web = pool_status(c, "web"), 6); }, kSettle));
  INFO(web.dump(2));
  const auto six = serving_pids(web);
  REQUIRE(six.size() == 6);
  for (unsigned w = 0; w < 4; ++w) CHECK(six.at(w) == original.at(w));
  for (unsigned w = 4; w < 6; ++w) {
    CHECK(pid_set(original).count(six.at(w)) == 0);
    CHECK(env_value(six.at(w), "FORKPOOL_GENERATION") == "2");
  }
  for (const auto& w : web["workers"])
    CHECK(w["generation"] == (w["worker"].get<unsigned>() < 4 ? 1 : 2));
  CHECK(web["generation"] == 2);
  CHECK(web["target"] == 6);
  REQUIRE(load.advance(100));

  // 6 -> 3: three workers retire; the first three, started before any reload, stay.
  m.rewrite(supervisor_section() + hello_pool("web", 3));
  const json down = m.reload();
  require_reloaded(down, 3);
  check_change(down, "web", "in-place", {"workers"});
  CHECK(wait_until([&] { return settled(web = pool_status(c, "web"), 3); }, kSettle));
  INFO(web.dump(2));
  const auto three = serving_pids(web);
  CHECK(three ==
        std::map<unsigned, pid_t>{{0, original.at(0)}, {1, original.at(1)}, {2, original.at(2)}});
  for (const auto& w : web["workers"]) CHECK(w["generation"] == 1);
  CHECK(web["generation"] == 3);
  CHECK(web["live"] == 3);
  for (unsigned w = 3; w < 6; ++w)
    CHECK(wait_until([&] { return !is_child_of(six.at(w), m.process->pid()); }, kSettle));
  CHECK(status_of(c)["generation"] == 3);
  REQUIRE(load.advance(100));

  CHECK(listen_addresses(pool_status(c, "web")) == std::vector<std::string>{addr});
  check_came_through(load, c, "web", *m.process);
}

TEST_CASE("reload of max_requests applies to the running workers, and of 0 stops recycling them",
          "[reload]") {
  Master m(supervisor_section() + hello_pool("web", 2));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  auto serve = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const auto r = http_get(addr, "/");
      REQUIRE(r.has_value());
      REQUIRE(r->status == 200);
    }
  };
  // Two clients at once, so that both workers get connections (one client alone would
  // get the most recently idle worker every time).
  auto serve_both = [&](int n) {
    auto other = std::async(std::launch::async, [&] {
      int ok = 0;
      for (int i = 0; i < n / 2; ++i) ok += http_get(addr, "/").has_value() ? 1 : 0;
      return ok;
    });
    serve(n - n / 2);
    CHECK(other.get() == n / 2);
  };
  auto recycled = [&] { return pool_status(c, "web")["counters"].value("recycled", -1); };
  // Between the two workers, no limit yet, until each has had more than the limit to
  // come. The two clients do not share the work evenly on a loaded machine (one handled
  // 55 and the other 5 once, when the loop was a fixed 60 requests): a worker under the
  // limit is rightly not replaced by the reload, and the test used to fail on it, since
  // its check of the counts read a destroyed temporary and checked nothing.
  const auto fewest_handled = [&] {
    const json pool = pool_status(c, "web");
    std::uint64_t least = ~std::uint64_t{0};
    for (const auto& w : pool["workers"]) least = std::min(least, w.value("handled", std::uint64_t{0}));
    return pool["workers"].size() == 2 ? least : 0;
  };
  REQUIRE(wait_until([&] {
    serve_both(20);
    return fewest_handled() > 10;
  }, kSettle));
  CHECK(recycled() == 0);

  // Both workers are past the new limit: they are replaced, one at a time (a rolling
  // restart's batch is a quarter of the pool, at least one).
  m.rewrite(supervisor_section() + hello_pool("web", 2, "max_requests = 10"));
  const json on = m.reload();
  require_reloaded(on, 2);
  check_change(on, "web", "in-place", {"max_requests"});
  CHECK(wait_until([&] {
    serve(1);
    return recycled() >= 2;
  }, kSettle));
  // Both are replaced for the reload, the second after the first (a batch of one).
  CHECK(wait_until([&] { return m.process->all_matches("(max_requests lowered by a reload)").size() == 2; }));

  // 0 turns recycling off for the running workers too.
  m.rewrite(supervisor_section() + hello_pool("web", 2));
  const json off = m.reload();
  require_reloaded(off, 3);
  check_change(off, "web", "in-place", {"max_requests"});
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }, kSettle));
  const auto pids = serving_pids(pool_status(c, "web"));
  const int before = recycled();
  serve(40);  // more than 10 each
  CHECK(recycled() == before);
  CHECK(serving_pids(pool_status(c, "web")) == pids);
}

TEST_CASE("reload of a changed env replaces every worker in a rolling restart", "[reload]") {
  constexpr int kWorkers = 4;
  Master m(supervisor_section() + hello_pool("web", kWorkers, env_mark("one")));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), kWorkers); }));
  const auto before = pid_set(serving_pids(pool_status(c, "web")));
  REQUIRE(before.size() == kWorkers);
  for (const pid_t pid : before) REQUIRE(env_value(pid, "MARK") == "one");
  Load load(addr);
  REQUIRE(load.advance(100));

  m.rewrite(supervisor_section() + hello_pool("web", kWorkers, env_mark("two")));
  const auto answered_at_reload = load.answered();
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "web", "replace", {"env"});

  // Sample the pool while the replacement runs: never fewer ready workers than configured.
  int least_ready = kWorkers;
  json web;
  const bool replaced = wait_until(
      [&] {
        web = pool_status(c, "web");
        if (web.is_object()) least_ready = std::min(least_ready, web["ready"].get<int>());
        return settled(web, kWorkers) && all_replaced(web, 2, before);
      },
      kSettle);
  INFO(web.dump(2));
  CHECK(replaced);
  CHECK(least_ready >= kWorkers);
  CHECK(web["generation"] == 2);
  CHECK(load.answered() > answered_at_reload);
  const auto after = pid_set(serving_pids(web));
  CHECK(after.size() == kWorkers);
  for (const pid_t pid : after) {
    INFO("worker pid " << pid);
    CHECK(env_value(pid, "MARK") == "two");
    CHECK(env_value(pid, "FORKPOOL_GENERATION") == "2");
  }
  for (const pid_t pid : before)
    CHECK(wait_until([&] { return !is_child_of(pid, m.process->pid()); }, kSettle));

  // From the log: each old worker stopped only after one more new worker was ready. A
  // replacement's "replaces pid" line is written when it is ready and takes over (with
  // ready = "exec" its worker.ready line waits for its first second).
  const auto log = lines_of(m.process->log());
  std::size_t ready_new = 0, exited_old = 0;
  for (const auto& line : log) {
    for (const pid_t pid : after)
      if (line.find("pid " + std::to_string(pid) + " replaces pid ") != std::string::npos) ++ready_new;
    for (const pid_t pid : before)
      if (line.find("pid " + std::to_string(pid) + " exited") != std::string::npos) {
        ++exited_old;
        INFO(line);
        CHECK(ready_new >= exited_old);
      }
  }
  CHECK(ready_new == kWorkers);
  CHECK(exited_old == kWorkers);

  REQUIRE(load.advance(100));
  CHECK(listen_addresses(pool_status(c, "web")) == std::vector<std::string>{addr});
  check_came_through(load, c, "web", *m.process);
}

TEST_CASE("reload starts an added pool and drains a removed one before closing its port",
          "[reload]") {
  const std::string web = hello_pool("web", 2);
  const std::string api = hello_pool("api", 2);
  Master m(supervisor_section() + web + hello_pool("old", 1));
  const std::string web_addr = m.process->wait_listen_address("web");
  const std::string old_addr = m.process->wait_listen_address("old");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until(
      [&] { return settled(pool_status(c, "web"), 2) && settled(pool_status(c, "old"), 1); }));
  const auto web_pids = serving_pids(pool_status(c, "web"));
  Load load(web_addr);
  REQUIRE(load.advance(100));

  // Added: it starts, binds its listener and serves.
  m.rewrite(supervisor_section() + web + hello_pool("old", 1) + api);
  const json added = m.reload();
  require_reloaded(added, 2);
  check_change(added, "web", "unchanged");
  check_change(added, "old", "unchanged");
  check_change(added, "api", "added");
  json api_status;
  CHECK(wait_until([&] { return settled(api_status = pool_status(c, "api"), 2); }, kSettle));
  INFO(api_status.dump(2));
  CHECK(api_status["generation"] == 2);
  const auto api_addrs = listen_addresses(api_status);
  REQUIRE(api_addrs.size() == 1);
  const std::string api_addr = api_addrs[0];
  CHECK(api_addr.starts_with("127.0.0.1:"));
  CHECK(api_addr != "127.0.0.1:0");
  for (int i = 0; i < 20; ++i) CHECK(hello_answers(api_addr));
  const auto api_pids = serving_pids(api_status);
  for (const auto& [worker, pid] : api_pids) {
    CHECK(env_value(pid, "FORKPOOL_POOL") == "api");
    CHECK(env_value(pid, "FORKPOOL_GENERATION") == "2");
  }

  // Removed: a slow request in flight on its port is finished, then the port closes.
  const pid_t old_pid = serving_pids(pool_status(c, "old")).at(0);
  auto slow =
      std::async(std::launch::async, [&] { return http_get(old_addr, "/sleep?ms=4000", 30s); });
  REQUIRE(wait_until([&] { return pool_status(c, "old")["busy"] == 1; }));
  m.rewrite(supervisor_section() + web + api);
  const json removed = m.reload();
  require_reloaded(removed, 3);
  check_change(removed, "old", "removed");
  check_change(removed, "web", "unchanged");
  check_change(removed, "api", "unchanged");
  // While its worker drains, the listener is still open (only checked when the reply
  // came before the drain ended).
  if (slow.wait_for(0s) == std::future_status::timeout) {
    const int err = connect_errno(old_addr);
    if (slow.wait_for(0s) == std::future_status::timeout) CHECK(err == 0);
  }
  const auto answer = slow.get();
  REQUIRE(answer.has_value());
  CHECK(answer->status == 200);
  CHECK(answer->body == "slept 4000 ms\n");
  CHECK(wait_until([&] { return refuses(old_addr); }, kSettle));
  CHECK(wait_until([&] { return !is_child_of(old_pid, m.process->pid()); }, kSettle));
  CHECK(wait_until([&] { return pool_in(status_of(c), "old").is_null(); }, kSettle));

  const json after = status_of(c);
  INFO(after.dump(2));
  CHECK(after["generation"] == 3);
  CHECK(after["pools"].size() == 2);
  CHECK(serving_pids(pool_in(after, "web")) == web_pids);
  CHECK(serving_pids(pool_in(after, "api")) == api_pids);
  CHECK(hello_answers(api_addr));
  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  CHECK(pool_in(after, "web")["counters"]["lost"] == 0);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("a listener a reload binds is logged as at start, with the port the kernel chose",
          "[reload]") {
  const std::string web = hello_pool("web", 1);
  Master m(supervisor_section() + web);
  REQUIRE(!m.process->wait_listen_address("web").empty());
  REQUIRE(m.ready());
  m.rewrite(supervisor_section() + web + hello_pool("api", 1));
  require_reloaded(m.reload(), 2);
  auto c = m.client();
  json api_status;
  REQUIRE(wait_until([&] { return settled(api_status = pool_status(c, "api"), 1); }, kSettle));
  const auto api_addrs = listen_addresses(api_status);
  REQUIRE(api_addrs.size() == 1);
  CHECK(api_addrs[0] != "127.0.0.1:0");
  CHECK(m.process->wait_listen_address("api") == api_addrs[0]);
  // The listener web kept was logged once, when it was bound; so is api's after a reload
  // that keeps it.
  require_reloaded(m.reload(), 3);
  CHECK(m.log_count("\\[listener.open\\] pool (web) listens on") == 1);
  CHECK(m.log_count("\\[listener.open\\] pool (api) listens on") == 1);
}

TEST_CASE("the port the kernel chose, written into the file, is the same listener: the reload keeps it",
          "[reload]") {
  Master m(supervisor_section() + hello_pool("web", 1));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  // "tcp://127.0.0.1:0" becomes the address it was bound to.
  m.rewrite(supervisor_section() + hello_pool("web", 1, "", "tcp://" + addr));
  const json r = m.reload();
  INFO(r.dump());
  require_reloaded(r, 2);
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }, kSettle));
  CHECK(listen_addresses(pool_status(c, "web")) == std::vector<std::string>{addr});
  CHECK(hello_answers(addr));
}

TEST_CASE("the real port of a port-0 listener named by another pool, or twice, is refused and the master serves on",
          "[reload]") {
  Master m(supervisor_section() + hello_pool("web", 1));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  // Only the entry that was "tcp://127.0.0.1:0" may become its real port: anything else
  // naming that port is another socket on a port in use (the master took it for the same
  // one, watched it twice and aborted; with shared dispatch an upgrade later found it
  // named twice).
  const std::string twice = "[pools.web]\ncommand = [\"" + hello_binary().string() +
                            "\"]\nlisten = [\"tcp://127.0.0.1:0\", \"tcp://" + addr + "\"]\nworkers = 1\n";
  for (const std::string& config :
       {hello_pool("web", 1) + hello_pool("api", 1, "", "tcp://" + addr),
        hello_pool("web", 1) + hello_pool("api", 1, "dispatch = \"shared\"\n", "tcp://" + addr), twice}) {
    m.rewrite(supervisor_section() + config);
    const json r = m.reload();
    INFO(config << " -> " << r.dump());
    CHECK_FALSE(r.value("ok", true));
    CHECK(hello_answers(addr));
  }
  CHECK(!m.process->wait_exit(0ms).has_value());
  auto c = m.client();
  CHECK(listen_addresses(pool_status(c, "web")) == std::vector<std::string>{addr});
}

TEST_CASE("reload moves a listener to a new address and keeps an unchanged one open", "[reload]") {
  const std::string api = hello_pool("api", 2);
  Master m(supervisor_section() + hello_pool("web", 2) + api);
  const std::string a = m.process->wait_listen_address("web");
  const std::string api_addr = m.process->wait_listen_address("api");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until(
      [&] { return settled(pool_status(c, "web"), 2) && settled(pool_status(c, "api"), 2); }));
  const auto web_before = pid_set(serving_pids(pool_status(c, "web")));
  const auto api_before = serving_pids(pool_status(c, "api"));
  Load load(api_addr);
  REQUIRE(load.advance(100));
  auto slow = std::async(std::launch::async, [&] { return http_get(a, "/sleep?ms=3000", 30s); });
  REQUIRE(wait_until([&] { return pool_status(c, "web")["busy"] == 1; }));

  // Port A (127.0.0.1) -> port B (127.0.0.2, also loopback): a different address.
  m.rewrite(supervisor_section() + hello_pool("web", 2, "", "tcp://127.0.0.2:0") + api);
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "web", "replace", {"listen"});
  check_change(r, "api", "unchanged");

  // B is bound before anything else changes: it takes connections as soon as it is listed.
  std::string b;
  CHECK(wait_until(
      [&] {
        for (const auto& l : listen_addresses(pool_status(c, "web")))
          if (l.starts_with("127.0.0.2:")) b = l;
        return !b.empty();
      },
      kSettle));
  REQUIRE(!b.empty());
  CHECK(connect_errno(b) == 0);
  CHECK(wait_until([&] { return hello_answers(b); }, kSettle));

  // In master dispatch the master is the only one accepting on A: it closes A at the
  // reload (docs/operations.md), and the request A's worker holds is served to the end.
  CHECK(wait_until([&] { return refuses(a); }, kSettle));
  const auto answer = slow.get();
  REQUIRE(answer.has_value());
  CHECK(answer->status == 200);
  CHECK(wait_until(
      [&] {
        for (const pid_t pid : web_before)
          if (is_child_of(pid, m.process->pid())) return false;
        return true;
      },
      kSettle));

  json web;
  CHECK(wait_until(
      [&] {
        web = pool_status(c, "web");
        return settled(web, 2) && all_replaced(web, 2, web_before);
      },
      kSettle));
  INFO(web.dump(2));
  CHECK(listen_addresses(web) == std::vector<std::string>{b});
  for (const auto& [worker, pid] : serving_pids(web)) {
    // The new address, as written (docs/protocol.md) or as bound (what the master passes today).
    const std::string listeners = env_value(pid, "FORKPOOL_LISTENERS");
    CHECK((listeners == "tcp://127.0.0.2:0" || listeners == "tcp://" + b));
    CHECK(env_value(pid, "FORKPOOL_GENERATION") == "2");
  }
  for (int i = 0; i < 20; ++i) CHECK(hello_answers(b));
  CHECK(refuses(a));

  // The pool whose listener stayed kept its exact port and its workers, and never failed.
  const json api_after = pool_status(c, "api");
  CHECK(listen_addresses(api_after) == std::vector<std::string>{api_addr});
  CHECK(serving_pids(api_after) == api_before);
  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  CHECK(pool_status(c, "api")["counters"]["lost"] == 0);
  CHECK(pool_status(c, "web")["counters"]["lost"] == 0);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("reload of an invalid file changes nothing and reports every error with its place",
          "[reload]") {
  const std::string good = supervisor_section() + hello_pool("web", 2);
  Master m(good);
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const auto pids = serving_pids(pool_status(c, "web"));
  EventStream events(m.socket());
  REQUIRE(events.subscribed());
  Load load(addr);
  REQUIRE(load.advance(100));
  const std::string file = m.config_path().string();

  auto check_nothing_changed = [&] {
    const json st = status_of(c);
    const json web = pool_in(st, "web");
    INFO(st.dump(2));
    CHECK(st["generation"] == 1);
    CHECK(st["pools"].size() == 1);
    CHECK(settled(web, 2));
    CHECK(serving_pids(web) == pids);
    CHECK(listen_addresses(web) == std::vector<std::string>{addr});
    for (const auto& w : web["workers"]) CHECK(w["generation"] == 1);
    CHECK(m.log_count("pid ([0-9]+) started") == pids.size());
  };

  struct Case {
    std::string name;
    std::string text;
    std::vector<std::string> expected;  // each must start one of the error lines
    bool checkable;                     // `forkpool --check` sees the same errors
  };
  const std::string syntax = supervisor_section() + hello_pool("web", 2, "queue_limit = = 5\n");
  const std::string semantic = supervisor_section() + hello_pool("web", -1, "queue_limt = 5\n");
  HeldPort held;
  REQUIRE(held.port() > 0);
  const std::string bind_fails =
      supervisor_section() + hello_pool("web", 3) +
      hello_pool("extra", 1, "", "tcp://127.0.0.1:" + std::to_string(held.port()));
  const std::vector<Case> cases = {
      {"TOML syntax error",
       syntax,
       {file + ":" + std::to_string(line_of(syntax, "queue_limit = = 5")) + ":"},
       true},
      {"value out of range and a misspelt key",
       semantic,
       {file + ":" + std::to_string(line_of(semantic, "workers = -1")) +
            ":11: pools.web.workers: expected an integer from 1 to 4096, got -1",
        file + ":" + std::to_string(line_of(semantic, "queue_limt")) +
            ":1: pools.web.queue_limt: unknown key; did you mean `queue_limit`?"},
       true},
      // Valid TOML (web grows to 3 and a pool is added), but the new listener cannot be bound:
      // the whole reload is refused, the size change included.
      {"a new listener that cannot be bound", bind_fails, {}, false},
  };

  for (const auto& k : cases) {
    INFO("case: " << k.name << "\n" << k.text);
    m.rewrite(k.text);
    const auto failed_lines = m.log_count(kReloadFailedLine);
    const json r = m.reload();
    INFO("reply: " << r.dump());
    REQUIRE(r.is_object());
    CHECK(r["ok"] == false);
    REQUIRE(r["error"].is_string());
    CHECK(!r["error"].get<std::string>().empty());
    std::vector<std::string> errors;
    if (r.contains("errors") && r["errors"].is_array())
      for (const auto& e : r["errors"])
        errors.push_back(e.is_string() ? e.get<std::string>() : e.dump());
    if (k.checkable) {  // config errors come one per line, each with its place
      REQUIRE(r.contains("errors"));
      CHECK(!errors.empty());
    } else if (errors.empty()) {
      errors.push_back(r["error"].get<std::string>());
    }
    for (const auto& want : k.expected)
      CHECK(std::any_of(errors.begin(), errors.end(),
                        [&](const std::string& e) { return e.starts_with(want); }));
    if (k.checkable) {
      // Validated by the same code as --check: the same lines, and each names its place.
      const auto check = m.check();
      INFO(check.describe());
      CHECK(check.exit_code == 2);
      auto check_lines = lines_of(check.err);
      if (!check_lines.empty()) check_lines.pop_back();  // "FILE: N errors"
      CHECK(errors == check_lines);
      static const std::regex place(R"(^.+:[0-9]+:[0-9]+: .+)");
      for (const auto& e : errors) {
        INFO(e);
        CHECK(e.starts_with(file + ":"));
        CHECK(std::regex_match(e, place));
      }
    } else {  // the address that could not be bound is named
      const std::string port = std::to_string(held.port());
      CHECK((r["error"].get<std::string>().find(port) != std::string::npos ||
             std::any_of(errors.begin(), errors.end(),
                         [&](const std::string& e) { return e.find(port) != std::string::npos; })));
    }
    CHECK(wait_until([&] { return m.log_count(kReloadFailedLine) > failed_lines; }));
    CHECK(events.wait_for("config.reload_failed").has_value());
    check_nothing_changed();

    // forkpoolctl prints every error and exits non-zero; still nothing changes.
    const auto failed_before_ctl = m.log_count(kReloadFailedLine);
    const auto ctl = m.ctl({"reload"});
    INFO(ctl.describe());
    REQUIRE(ctl.exited);
    CHECK(ctl.exit_code != 0);
    for (const auto& e : errors) CHECK_THAT(ctl.out + ctl.err, Catch::Contains(e));
    CHECK(wait_until([&] { return m.log_count(kReloadFailedLine) > failed_before_ctl; }));
    CHECK(events.wait_for("config.reload_failed").has_value());
    check_nothing_changed();
    CHECK(pool_in(status_of(c), "extra").is_null());
    CHECK(hello_answers(addr));
  }
  CHECK(m.log_count(kReloadLine) == 0);

  // Fixed: the next reload applies, and it is generation 2 (failed ones do not count).
  m.rewrite(supervisor_section() + hello_pool("web", 3));
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "web", "in-place", {"workers"});
  CHECK(wait_until([&] { return settled(pool_status(c, "web"), 3); }, kSettle));
  const auto grown = serving_pids(pool_status(c, "web"));
  CHECK(grown.at(0) == pids.at(0));
  CHECK(grown.at(1) == pids.at(1));
  CHECK(!m.process->wait_log(kReloadLine).empty());
  CHECK(events.wait_for("config.reload").has_value());
  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  INFO(events.dump());
  CHECK(alarming_log_lines(m.process->log(), true) == std::vector<std::string>{});
}

TEST_CASE("reload of a pool whose port is taken is refused with the listen entry's place", "[reload]") {
  Master m(supervisor_section() + hello_pool("web", 1));
  REQUIRE(m.ready());
  HeldPort held;
  REQUIRE(held.port() > 0);
  m.rewrite(supervisor_section() + hello_pool("web", 1) +
            hello_pool("b", 1, "", "tcp://127.0.0.1:" + std::to_string(held.port())));
  const json r = m.reload();
  INFO(r.dump());
  REQUIRE(r.is_object());
  CHECK(r["ok"] == false);
  std::string all = r.value("error", "");
  for (const auto& e : r.value("errors", json::array())) all += "\n" + e.get<std::string>();
  // [supervisor] takes 3 lines, web's table 5: b's listen entry is on line 11.
  CHECK_THAT(all, Catch::Contains(m.config_path().filename().string() + ":11:11: pools.b.listen[0]: bind tcp://127.0.0.1:" +
                                  std::to_string(held.port()) + ": Address already in use"));
  auto c = m.client();
  CHECK(pool_status(c, "b").is_null());
}

TEST_CASE("SIGHUP reloads like the control command", "[reload]") {
  Master m(supervisor_section() + hello_pool("web", 2));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const auto before = serving_pids(pool_status(c, "web"));
  EventStream events(m.socket());
  REQUIRE(events.subscribed());
  Load load(addr);
  REQUIRE(load.advance(100));

  // SIGHUP: the same diff as the control command would apply (2 -> 3 in place).
  m.rewrite(supervisor_section() + hello_pool("web", 3));
  m.process->signal(SIGHUP);
  REQUIRE(!m.process->wait_log(kReloadLine, 20s).empty());
  const auto event = events.wait_for("config.reload");
  CHECK(event.has_value());
  json web;
  CHECK(wait_until(
      [&] {
        const json st = status_of(c);
        web = pool_in(st, "web");
        return st["generation"] == 2 && settled(web, 3);
      },
      kSettle));
  INFO(web.dump(2));
  auto three = serving_pids(web);
  CHECK(three.at(0) == before.at(0));
  CHECK(three.at(1) == before.at(1));
  CHECK(web["generation"] == 2);
  for (const auto& w : web["workers"]) CHECK(w["generation"] == (w["worker"] == 2 ? 2 : 1));
  CHECK(m.log_count("(pid [0-9]+ exited)") == 0);

  // The control command after it: generation 3, and the same kind of change.
  m.rewrite(supervisor_section() + hello_pool("web", 4));
  const json r = m.reload();
  require_reloaded(r, 3);
  check_change(r, "web", "in-place", {"workers"});
  CHECK(wait_until([&] { return settled(web = pool_status(c, "web"), 4); }, kSettle));
  const auto four = serving_pids(web);
  for (unsigned w = 0; w < 3; ++w) CHECK(four.at(w) == three.at(w));
  CHECK(events.wait_for("config.reload").has_value());
  CHECK(m.log_count(kReloadLine) == 2);

  // SIGHUP with an invalid file: logged and streamed as failed, nothing changes.
  m.rewrite(supervisor_section() + hello_pool("web", -1));
  m.process->signal(SIGHUP);
  CHECK(!m.process->wait_log(kReloadFailedLine, 20s).empty());
  CHECK(events.wait_for("config.reload_failed").has_value());
  const json st = status_of(c);
  CHECK(st["generation"] == 3);
  CHECK(settled(pool_in(st, "web"), 4));
  CHECK(serving_pids(pool_in(st, "web")) == four);

  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  INFO(events.dump());
  CHECK(pool_status(c, "web")["counters"]["lost"] == 0);
  CHECK(alarming_log_lines(m.process->log(), true) == std::vector<std::string>{});
}

TEST_CASE(
    "twenty reloads in a row under load leave exactly the configured workers of the last "
    "generation",
    "[reload]") {
  constexpr int kWorkers = 3;
  constexpr int kReloads = 20;
  auto config = [](const std::string& mark) {
    return supervisor_section() + hello_pool("web", kWorkers, env_mark(mark));
  };
  Master m(config("initial"));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), kWorkers); }));
  Load load(addr);
  REQUIRE(load.advance(100));

  // Each reload on its own connection, the next one sent as soon as the previous one is
  // answered, without waiting for its rolling replacement: the replacements overlap. The
  // file alternates between two configurations that differ in a worker-side key (so
  // every reload replaces the workers); the last one written is "a".
  std::set<unsigned> generations;
  std::string refused;  // replies that are not a successful reload
  for (int i = 1; i <= kReloads; ++i) {
    m.rewrite(config(i % 2 == 1 ? "b" : "a"));
    ControlClient sender(m.socket(), 10s);
    REQUIRE(sender.connected());
    REQUIRE(sender.send_raw("{\"cmd\":\"reload\"}\n"));
    const auto reply = sender.read_json(kReplyDeadline);
    if (reply && is_ok(*reply) && (*reply)["generation"].is_number_unsigned())
      generations.insert((*reply)["generation"].get<unsigned>());
    else
      refused += (reply ? reply->dump() : "<no reply>") + "\n";
  }
  INFO(refused);
  CHECK(refused.empty());
  std::set<unsigned> expected;
  for (unsigned g = 2; g <= kReloads + 1; ++g) expected.insert(g);
  REQUIRE(generations == expected);

  constexpr unsigned kLast = kReloads + 1;
  std::set<pid_t> seen = m.logged_pids();
  json web;
  const bool done = wait_until(
      [&] {
        const json st = status_of(c);
        web = pool_in(st, "web");
        const auto now = all_pids(web);
        seen.insert(now.begin(), now.end());
        return st["generation"] == kLast && settled(web, kWorkers) && all_replaced(web, kLast, {});
      },
      120s);
  INFO(web.dump(2));
  CHECK(done);
  CHECK(web["generation"] == kLast);
  const auto final_pids = pid_set(serving_pids(web));
  CHECK(final_pids.size() == kWorkers);
  for (const pid_t pid : final_pids) {
    INFO("worker pid " << pid);
    CHECK(env_value(pid, "MARK") == "a");
    // A worker started under an earlier "a" generation (odd, from 3) runs the last one's
    // settings already: it is kept and counts as of the last generation (status above).
    const std::string started_in = env_value(pid, "FORKPOOL_GENERATION");
    const unsigned g = started_in == "<unset>" ? 0 : static_cast<unsigned>(std::stoul(started_in));
    CHECK((g >= 3 && g <= kLast && g % 2 == 1));
  }
  // No worker of an older generation is left behind.
  const auto logged = m.logged_pids();
  seen.insert(logged.begin(), logged.end());
  for (const pid_t pid : seen) {
    if (final_pids.count(pid) != 0) continue;
    INFO("older worker pid " << pid);
    CHECK(wait_until([&] { return !is_child_of(pid, m.process->pid()); }, kSettle));
  }
  CHECK(m.log_count(kReloadLine) == kReloads);

  REQUIRE(load.advance(100));
  check_came_through(load, c, "web", *m.process);
}

TEST_CASE(
    "reload generation shows in status for the master, each pool and each worker, and in metrics",
    "[reload]") {
  const std::string same = hello_pool("same", 1);
  Master m(supervisor_section() + hello_pool("rep", 2, env_mark("one")) + hello_pool("inp", 2) +
           same);
  const std::string same_addr = m.process->wait_listen_address("same");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] {
    const json st = status_of(c);
    return settled(pool_in(st, "rep"), 2) && settled(pool_in(st, "inp"), 2) &&
           settled(pool_in(st, "same"), 1);
  }));

  // At start: generation 1 everywhere.
  const json first = status_of(c);
  {
    INFO(first.dump(2));
    CHECK(first["generation"] == 1);
    for (const char* name : {"rep", "inp", "same"}) {
      const json p = pool_in(first, name);
      CHECK(p["generation"] == 1);
      for (const auto& w : p["workers"]) {
        CHECK(w["generation"] == 1);
        CHECK(env_value(w["pid"].get<pid_t>(), "FORKPOOL_GENERATION") == "1");
      }
    }
    CHECK(generation_metric(c) == 1);
  }
  const auto rep_before = pid_set(serving_pids(pool_in(first, "rep")));
  const auto inp_before = serving_pids(pool_in(first, "inp"));
  const auto same_before = serving_pids(pool_in(first, "same"));
  Load load(same_addr);
  REQUIRE(load.advance(100));

  // One reload: rep replaced (env), inp changed in place (queue_limit), same untouched,
  // and a supervisor key changed.
  m.rewrite(supervisor_section("shutdown_timeout = \"20s\"") +
            hello_pool("rep", 2, env_mark("two")) + hello_pool("inp", 2, "queue_limit = 512\n") +
            same);
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "rep", "replace", {"env"});
  check_change(r, "inp", "in-place", {"queue_limit"});
  check_change(r, "same", "unchanged");
  CHECK(r["supervisor"] == json::array({"shutdown_timeout"}));

  json st;
  CHECK(wait_until(
      [&] {
        st = status_of(c);
        const json rep = pool_in(st, "rep");
        return settled(rep, 2) && all_replaced(rep, 2, rep_before);
      },
      kSettle));
  INFO(st.dump(2));
  CHECK(st["generation"] == 2);
  CHECK(generation_metric(c) == 2);

  const json rep = pool_in(st, "rep");
  CHECK(rep["generation"] == 2);
  for (const auto& w : rep["workers"]) {
    CHECK(w["generation"] == 2);
    CHECK(env_value(w["pid"].get<pid_t>(), "FORKPOOL_GENERATION") == "2");
  }
  // Changed in place: the pool runs the new configuration, its workers are the old ones.
  const json inp = pool_in(st, "inp");
  CHECK(inp["generation"] == 2);
  CHECK(inp["queue"]["limit"] == 512);
  CHECK(serving_pids(inp) == inp_before);
  for (const auto& w : inp["workers"]) CHECK(w["generation"] == 1);
  // Unchanged: same workers, still of generation 1. (Whether the pool object itself says
  // 1 or 2 is not fixed by the contract; it must be one of them.)
  const json untouched = pool_in(st, "same");
  CHECK((untouched["generation"] == 1 || untouched["generation"] == 2));
  CHECK(serving_pids(untouched) == same_before);
  for (const auto& w : untouched["workers"]) {
    CHECK(w["generation"] == 1);
    CHECK(env_value(w["pid"].get<pid_t>(), "FORKPOOL_GENERATION") == "1");
  }

  check_no_failed_requests(load);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("reload moves a listener from one pool to another without refusing a client", "[reload]") {
  // A fixed port: a port-0 listener belongs to its pool, a fixed address to whichever
  // pool names it.
  const std::string port = std::to_string(free_port());
  const std::string moving = "tcp://127.0.0.1:" + port;
  Master m(supervisor_section() + hello_pool("a", 2, "", moving) + hello_pool("b", 2));
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "a"), 2) && settled(pool_status(c, "b"), 2); }));
  const std::string address = "127.0.0.1:" + port;
  const auto first = http_get(address, "/");
  REQUIRE(first.has_value());
  CHECK(first->headers.at("x-worker").starts_with("a-"));
  Load load(address);
  REQUIRE(load.advance(100));

  // The address goes from pool a to pool b (a takes a port of its own).
  m.rewrite(supervisor_section() + hello_pool("a", 2) + hello_pool("b", 2, "", moving));
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "a", "replace", {"listen"});
  check_change(r, "b", "replace", {"listen"});

  // The same socket, now accepted on for b: its workers answer on the port.
  CHECK(wait_until(
      [&] {
        const auto answer = http_get(address, "/");
        return answer && answer->headers.count("x-worker") != 0 && answer->headers.at("x-worker").starts_with("b-");
      },
      kSettle));
  json b;
  CHECK(wait_until(
      [&] {
        b = pool_status(c, "b");
        return settled(b, 2) && all_replaced(b, 2, {});
      },
      kSettle));
  CHECK(listen_addresses(b) == std::vector<std::string>{address});
  CHECK(listen_addresses(pool_status(c, "a")) != std::vector<std::string>{address});
  REQUIRE(load.advance(100));
  check_no_failed_requests(load);
  CHECK(pool_status(c, "a")["counters"]["lost"] == 0);
  CHECK(pool_status(c, "b")["counters"]["lost"] == 0);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

// The file status flags of a shared listener (O_NONBLOCK above all) belong to the open file
// every worker shares, and the workers chose them: forkpool-hello makes its inherited
// listener non-blocking and accepts until EAGAIN. A reload that leaves the pool in shared
// dispatch must not touch them: a listener made blocking under it leaves each worker stuck
// in accept(2) with the connections it took unanswered, and deaf to SIGTERM.
TEST_CASE("reload that swaps two pools' ports, each to a pool earlier or later in the file, serves on both",
          "[reload]") {
  const std::string p1 = std::to_string(free_port());
  std::string p2 = std::to_string(free_port());
  while (p2 == p1) p2 = std::to_string(free_port());
  const std::string one = "127.0.0.1:" + p1, two = "127.0.0.1:" + p2;
  Master m(supervisor_section() + hello_pool("a", 1, "", "tcp://" + one) + hello_pool("b", 1, "", "tcp://" + two));
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "a"), 1) && settled(pool_status(c, "b"), 1); }));
  auto served_by = [](const std::string& address) -> std::string {
    const auto r = http_get(address, "/");
    if (!r || r->headers.count("x-worker") == 0) return "";
    return r->headers.at("x-worker").substr(0, 2);
  };
  CHECK(served_by(one) == "a-");
  CHECK(served_by(two) == "b-");

  // b's port goes to a, which comes first in the file (the master aborted here: a's
  // watch of the socket was made while b's still stood).
  m.rewrite(supervisor_section() + hello_pool("a", 1, "", "tcp://" + two) + hello_pool("b", 1, "", "tcp://" + one));
  const json r = m.reload();
  require_reloaded(r, 2);
  CHECK(wait_until([&] { return served_by(two) == "a-" && served_by(one) == "b-"; }, kSettle));
  // And a new pool, first in the file, takes a's port.
  m.rewrite(supervisor_section() + hello_pool("n", 1, "", "tcp://" + two) + hello_pool("a", 1) +
            hello_pool("b", 1, "", "tcp://" + one));
  require_reloaded(m.reload(), 3);
  CHECK(wait_until([&] { return served_by(two) == "n-" && served_by(one) == "b-"; }, kSettle));
  CHECK(process_alive(m.process->pid()));
}

TEST_CASE("an in-place reload of a shared-dispatch pool leaves its listener as the workers set it", "[reload]") {
  const auto config = [](const std::string& graceful) {
    return supervisor_section() +
           hello_pool("web", 2, "dispatch = \"shared\"\ngraceful_timeout = \"" + graceful + "\"\n");
  };
  Master m(config("20s"));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  const auto before = serving_pids(pool_status(c, "web"));
  // LISTEN_FDS: the listener is fd 3 in each worker.
  const auto nonblocking = [](pid_t pid) { return (fd_flags(pid, 3).value_or(0) & O_NONBLOCK) != 0; };
  for (const auto& [worker, pid] : before) REQUIRE(wait_until([&, pid = pid] { return nonblocking(pid); }));

  m.rewrite(config("21s"));
  const json r = m.reload();
  require_reloaded(r, 2);
  check_change(r, "web", "in-place", {"graceful_timeout"});
  CHECK(serving_pids(pool_status(c, "web")) == before);
  for (const auto& [worker, pid] : before) CHECK(nonblocking(pid));
  for (int i = 0; i < 4; ++i) {
    const auto reply = http_get(addr, "/", 10s);
    REQUIRE(reply.has_value());
    CHECK(reply->status == 200);
  }
  // Each worker leaves at SIGTERM, long before graceful_timeout.
  m.process->signal(SIGTERM);
  const auto status = m.process->wait_exit(15s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

// After a reload from master to shared dispatch the master keeps its dispatcher for what
// the older workers still read from their channels; the workers started since accept by
// themselves, and only the scoreboard knows what they hold. Status once showed them idle
// with nothing handled, and an on-demand pool counted no waiting client (the master's
// queue, empty, instead of the listener's backlog), so a client waited for good.
TEST_CASE("after a reload to shared dispatch, an on-demand pool starts a worker for a waiting client and status shows it busy",
          "[reload]") {
  const auto config = [](const std::string& dispatch) {
    return supervisor_section() + "[pools.web]\ncommand = [\"" + hello_binary().string() +
           "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\ndispatch = \"" + dispatch +
           "\"\nmin_workers = 0\nmax_workers = 2\nidle_timeout = \"1s\"\n";
  };
  Master m(config("master"));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  const auto first = http_get(addr, "/", 15s);  // starts a worker on demand
  REQUIRE(first.has_value());
  CHECK(first->status == 200);
  REQUIRE(wait_until([&] { return pool_status(c, "web").value("live", -1) == 0; }, 15s));

  m.rewrite(config("shared"));
  require_reloaded(m.reload(), 2);
  auto slow = std::async(std::launch::async, [&] { return http_get(addr, "/sleep?ms=1500", 30s); });
  const auto busy_worker = [&] {
    const json p = pool_status(c, "web");
    if (!p.is_object() || p.value("busy", 0) != 1) return false;
    for (const auto& w : p["workers"])
      if (w.value("state", "") == "busy" && w.value("in_flight", 0) == 1) return true;
    return false;
  };
  CHECK(wait_until(busy_worker, 15s));
  const auto reply = slow.get();
  REQUIRE(reply.has_value());
  CHECK(reply->status == 200);
  CHECK(wait_until([&] {
    const json p = pool_status(c, "web");
    for (const auto& w : p["workers"])
      if (w.value("handled", 0) == 1) return true;
    return false;
  }, 5s));
  CHECK(process_alive(m.process->pid()));
}
