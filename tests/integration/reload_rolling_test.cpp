// SPDX-License-Identifier: Apache-2.0
// Rolling replacements (a replacing reload, `restart`) that go wrong part way: a
// replacement that never becomes ready, a serving worker that dies beside its starting
// replacement, a replacement that cannot be started. Each test reproduces one defect a
// hostile probe found; the pool must get back to its target under the newest settings.

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reload_support.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reload_support;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A pool like hello_pool, but its workers are `/bin/sleep 1000`: they start and never
// become ready (they speak no worker protocol).
std::string never_ready_pool(const std::string& name, int workers, const std::string& extra = "") {
  std::string text = hello_pool(name, workers, extra);
  const std::string hello = "\"" + hello_binary().string() + "\"";
  text.replace(text.find(hello), hello.size(), "\"/bin/sleep\", \"1000\"");
  return text;
}

// The pids of the pool's processes in `role` (serving, replacement, retiring).
std::set<pid_t> pids_in_role(const json& pool, const std::string& role) {
  std::set<pid_t> out;
  if (!pool.is_object()) return out;
  for (const auto& w : pool["workers"])
    if (w["role"] == role && w["pid"].is_number_integer()) out.insert(w["pid"].get<pid_t>());
  return out;
}

// A settled pool of two hello workers, then a reload to a program that never becomes
// ready: its replacements start and stay starting (ready_timeout "0": never killed by
// their own deadline) while the old workers serve on.
struct StuckDeploy {
  static constexpr int kWorkers = 2;
  const std::string extra = "ready_timeout = \"0\"\n";
  const std::string good = supervisor_section() + hello_pool("web", kWorkers, extra);
  Master m{good};
  const std::string addr = m.process->wait_listen_address("web");
  ControlClient c = m.client();
  std::map<unsigned, pid_t> before;  // the serving workers before the deploy

  // The reload's reply.
  json deploy() {
    REQUIRE(m.ready());
    REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), kWorkers); }));
    before = serving_pids(pool_status(c, "web"));
    m.rewrite(supervisor_section() + never_ready_pool("web", kWorkers, extra));
    return m.reload();
  }
};

}  // namespace

TEST_CASE("a reload back to the running settings stops a replacement that never became ready and keeps the workers",
          "[reload][rolling]") {
  StuckDeploy d;
  Master& m = d.m;
  ControlClient& c = d.c;
  const std::string& addr = d.addr;
  constexpr int kWorkers = StuckDeploy::kWorkers;
  const json r = d.deploy();
  require_reloaded(r, 2);
  check_change(r, "web", "replace", {"command"});
  std::set<pid_t> stuck;
  REQUIRE(wait_until([&] {
    stuck = pids_in_role(pool_status(c, "web"), "replacement");
    return !stuck.empty();
  }));

  // The corrective reload: the file as the serving workers were started with it.
  m.rewrite(d.good);
  const RunResult fixed = m.ctl({"reload"});
  INFO(fixed.out << fixed.err);
  CHECK(fixed.exited);
  CHECK(fixed.exit_code == 0);

  json web = pool_status(c, "web");
  INFO(web.dump(2));
  CHECK(settled(web, kWorkers));
  CHECK(all_replaced(web, 3, {}));
  // Nothing needed replacing: the same processes serve, and the stuck one is gone.
  CHECK(serving_pids(web) == d.before);
  for (const pid_t pid : stuck) {
    INFO("stuck replacement pid " << pid);
    CHECK(wait_until([&] { return !is_child_of(pid, m.process->pid()); }, 10s));
  }
  CHECK(m.log_count("\\[worker\\.obsolete\\]") == stuck.size());
  CHECK(hello_answers(addr));
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("a serving worker killed beside a replacement that never becomes ready is started again, and the slot serves",
          "[reload][rolling]") {
  StuckDeploy d;
  Master& m = d.m;
  ControlClient& c = d.c;
  const std::string& addr = d.addr;
  constexpr int kWorkers = StuckDeploy::kWorkers;
  require_reloaded(d.deploy(), 2);
  // One slot at a time (a quarter of the pool, at least one) gets a replacement.
  unsigned slot = 0;
  pid_t stuck = 0;
  pid_t serving = 0;
  REQUIRE(wait_until([&] {
    const json web = pool_status(c, "web");
    if (!web.is_object()) return false;
    for (const auto& w : web["workers"])
      if (w["role"] == "replacement") {
        slot = w["worker"].get<unsigned>();
        stuck = w["pid"].get<pid_t>();
      }
    if (stuck == 0) return false;
    serving = serving_pids(web)[slot];
    return serving != 0;
  }));

  // `kill POOL WORKER` signals the serving worker of the slot, not its replacement.
  const RunResult killed = m.ctl({"kill", "web", std::to_string(slot), "KILL"});
  INFO(killed.out << killed.err);
  REQUIRE(killed.exited);
  REQUIRE(killed.exit_code == 0);
  REQUIRE(wait_until([&] { return !is_child_of(serving, m.process->pid()); }, 10s));

  // The slot serves again with the settings the killed worker ran, while the replacement
  // goes on starting beside it.
  json web;
  const bool back = wait_until(
      [&] {
        web = pool_status(c, "web");
        const auto now = serving_pids(web);
        return web.is_object() && web["ready"] == kWorkers && now.count(slot) != 0 && now.at(slot) != serving &&
               now.at(slot) != stuck && pids_in_role(web, "replacement") == std::set<pid_t>{stuck};
      },
      20s);
  INFO(web.dump(2));
  REQUIRE(back);
  CHECK(env_value(serving_pids(web).at(slot), "FORKPOOL_GENERATION") == "1");
  CHECK(hello_answers(addr));

  // The reload back to the good file finds nothing to replace.
  m.rewrite(d.good);
  const RunResult fixed = m.ctl({"reload"});
  INFO(fixed.out << fixed.err);
  CHECK(fixed.exit_code == 0);
  web = pool_status(c, "web");
  CHECK(settled(web, kWorkers));
  CHECK(all_replaced(web, 3, {stuck, serving}));
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("a replacement that could not be started is tried again after backoff until the reload completes",
          "[reload][rolling]") {
  constexpr int kWorkers = 2;
  const std::string extra = "restart_delay = \"1s\"\n";
  Master m(supervisor_section() + hello_pool("web", kWorkers, extra));
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), kWorkers); }));
  const auto before = pid_set(serving_pids(pool_status(c, "web")));

  // An executable script whose interpreter is not there yet: it passes the reload's check
  // and fails at execve, every time, until the interpreter appears.
  const auto interpreter = m.dir / "sh";
  const auto script = m.dir / "run-hello";
  write_file(script, "#!" + interpreter.string() + "\nexec \"" + hello_binary().string() + "\"\n", 0755);
  std::string text = hello_pool("web", kWorkers, extra);
  const std::string hello = "\"" + hello_binary().string() + "\"";
  text.replace(text.find(hello), hello.size(), "\"" + script.string() + "\"");
  m.rewrite(supervisor_section() + text);
  require_reloaded(m.reload(), 2);
  REQUIRE(!m.process->wait_log("\\[worker\\.spawn_failed\\] worker web\\[[0-9]\\] \\(a replacement\\) could not be "
                               "started: execve [^ ]+: No such file or directory",
                               20s)
               .empty());

  // The cause goes away: the retries start the replacements, and the reload completes.
  std::filesystem::create_symlink("/bin/sh", interpreter);
  json web;
  const bool replaced = wait_until(
      [&] {
        web = pool_status(c, "web");
        return settled(web, kWorkers) && all_replaced(web, 2, before);
      },
      30s);
  INFO(web.dump(2));
  CHECK(replaced);
  CHECK(web["state"] == "running");
  for (const pid_t pid : pid_set(serving_pids(web))) CHECK(env_value(pid, "FORKPOOL_GENERATION") == "2");
  CHECK(m.log_count("\\(a replacement\\) starts again in") >= 1);
}

TEST_CASE("LAST-EXIT follows the worker number through a rolling restart, not the scoreboard slot",
          "[reload][rolling][status]") {
  constexpr int kWorkers = 4;
  Master m(supervisor_section() + hello_pool("web", kWorkers) + hello_pool("old", 2));
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), kWorkers); }));
  // Every worker replaced (a new env): each new one shows how its predecessor ended,
  // wherever in the scoreboard it was put.
  m.rewrite(supervisor_section() + hello_pool("web", kWorkers, "env = { A = \"1\" }\n") + hello_pool("old", 2));
  REQUIRE(m.ctl({"reload"}).exit_code == 0);
  const auto last_exits = [&](const std::string& pool) {
    std::vector<json> out;
    const json status = pool_status(c, pool);
    for (const auto& w : status["workers"])
      if (w["role"] == "serving") out.push_back(w["last_exit"]);
    return out;
  };
  REQUIRE(wait_until([&] {
    const auto e = last_exits("web");
    return e.size() == kWorkers && std::all_of(e.begin(), e.end(), [](const json& x) { return x == "exited with status 0"; });
  }, 30s));

  // A pool added later reuses the scoreboard slots the removed one freed: its workers
  // have no previous process, whatever ended in those slots.
  m.rewrite(supervisor_section() + hello_pool("web", kWorkers, "env = { A = \"1\" }\n"));
  REQUIRE(m.ctl({"reload"}).exit_code == 0);
  m.rewrite(supervisor_section() + hello_pool("web", kWorkers, "env = { A = \"1\" }\n") + hello_pool("added", 2));
  REQUIRE(m.ctl({"reload"}).exit_code == 0);
  REQUIRE(wait_until([&] { return settled(pool_status(c, "added"), 2); }));
  for (const auto& e : last_exits("added")) CHECK(e.is_null());
}
