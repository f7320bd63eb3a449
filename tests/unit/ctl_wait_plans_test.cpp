// SPDX-License-Identifier: Apache-2.0
// What "done" means for the commands forkpoolctl waits for, read from status replies.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "ctl/wait_plans.hpp"

using namespace forkpool::ctl;
using nlohmann::json;
using Outcome = Progress::Outcome;

namespace {

json worker(unsigned index, unsigned pid, const char* state, const char* role = "serving", unsigned generation = 1,
            double uptime = 5.0) {
  return {{"worker", index}, {"pid", pid},           {"state", state},
          {"role", role},    {"generation", generation}, {"uptime_s", uptime}};
}

json status(json pool) { return {{"ok", true}, {"pools", json::array({std::move(pool)})}}; }

json pool(const char* state, int target, json workers) {
  return {{"name", "web"}, {"state", state}, {"target", target}, {"live", workers.size()}, {"workers", std::move(workers)}};
}

}  // namespace

TEST_CASE("ctl wait: a restart is done when every old worker is gone and the new ones are ready", "[ctl][wait]") {
  const json before = status(pool("running", 2, {worker(0, 100, "idle"), worker(1, 101, "idle")}));
  const json request = {{"cmd", "restart"}, {"pool", "web"}};
  const auto plan = wait_plan(request, {{"ok", true}}, before);
  REQUIRE(plan);
  CHECK(plan->check(before).outcome == Outcome::Pending);
  const json half = status(pool("running", 2, {worker(0, 200, "idle"), worker(0, 100, "busy", "retiring"),
                                               worker(1, 101, "idle"), worker(1, 201, "starting", "replacement")}));
  const Progress p = plan->check(half);
  CHECK(p.outcome == Outcome::Pending);
  CHECK(p.line == "restart web: 0 of 2 replaced, 2 left (2 of 2 ready)");
  const json done = status(pool("running", 2, {worker(0, 200, "idle"), worker(1, 201, "busy")}));
  CHECK(plan->check(done).outcome == Outcome::Done);
  CHECK(plan->check(done).line == "restart web: done, 2 workers replaced");
  json failed = pool("failed", 2, {worker(0, 200, "idle")});
  failed["failed_reason"] = "worker 1 exited with status 78 (EX_CONFIG) before it was ready";
  const Progress f = plan->check(status(failed));
  CHECK(f.outcome == Outcome::Failed);
  CHECK(f.line == "restart web: pool web failed: worker 1 exited with status 78 (EX_CONFIG) before it was ready");
}

TEST_CASE("ctl wait: a started worker counts once it lived through its first second", "[ctl][wait]") {
  const auto plan = wait_plan({{"cmd", "start"}, {"pool", "web"}}, {{"ok", true}}, json::object());
  REQUIRE(plan);
  CHECK(plan->check(status(pool("running", 1, {worker(0, 1, "idle", "serving", 1, 0.2)}))).outcome ==
        Outcome::Pending);
  CHECK(plan->check(status(pool("running", 1, {worker(0, 1, "idle", "serving", 1, 1.2)}))).outcome == Outcome::Done);
  // A failed deploy tried again: the old workers are ready, their replacements are not yet.
  const json retry = status(pool("running", 1, {worker(0, 1, "idle", "serving", 1, 30.0),
                                                worker(0, 2, "starting", "replacement", 2, 0.1)}));
  CHECK(plan->check(retry).outcome == Outcome::Pending);
}

TEST_CASE("ctl wait: a reload waits for replaced pools but not for a failed pool changed in place", "[ctl][wait]") {
  const json reply = {{"ok", true},
                      {"generation", 2},
                      {"pools", json::array({{{"name", "web"}, {"change", "replace"}},
                                             {{"name", "jobs"}, {"change", "in-place"}},
                                             {{"name", "old"}, {"change", "removed"}}})}};
  const auto plan = wait_plan({{"cmd", "reload"}}, reply, json::object());
  REQUIRE(plan);
  json jobs = pool("failed", 1, json::array());
  jobs["name"] = "jobs";
  json old = pool("stopping", 1, json::array());
  old["name"] = "old";
  json web_old = pool("running", 1, {worker(0, 1, "idle", "serving", 1)});
  json web_new = pool("running", 1, {worker(0, 2, "idle", "serving", 2)});
  const json mid = {{"pools", json::array({web_old, jobs, old})}};
  CHECK(plan->check(mid).outcome == Outcome::Pending);
  // The old worker is ready, but nothing runs the new settings yet (a deploy whose program
  // does not start looks like this for as long as its retries last).
  CHECK(plan->check(mid).line == "reload (generation 2): web 0 of 1 replaced (1 of 1 ready), old draining");
  const json end = {{"pools", json::array({web_new, jobs})}};
  CHECK(plan->check(end).outcome == Outcome::Done);
}

TEST_CASE("ctl wait: all_of is done when every plan is, and failed when every plan settled and one failed",
          "[ctl][wait]") {
  const auto a = wait_plan({{"cmd", "stop"}, {"pool", "web"}}, {{"ok", true}}, json::object());
  REQUIRE(a);
  const WaitPlan both = all_of("stop all", {*a, *a});
  CHECK(both.check(status(pool("stopping", 1, json::array()))).outcome == Outcome::Pending);
  CHECK(both.check(status(pool("stopped", 1, json::array()))).line == "stop all: done (2 pools)");
  CHECK(both.check(json{{"pools", json::array()}}).outcome == Outcome::Failed);
}

TEST_CASE("ctl wait: all_of waits for the other pools after one failed, and keeps each outcome", "[ctl][wait]") {
  auto start = [](const char* name) {
    auto plan = wait_plan({{"cmd", "start"}, {"pool", name}}, {{"ok", true}}, json::object());
    REQUIRE(plan);
    return *plan;
  };
  const WaitPlan all = all_of("start all", {start("app"), start("web"), start("jobs")});
  auto named = [](json p, const char* name) {
    p["name"] = name;
    return p;
  };
  json app = named(pool("failed", 1, json::array()), "app");
  app["failed_reason"] = "last exit: worker app[0] pid 7 exited with status 3";
  json jobs = named(pool("failed", 1, json::array()), "jobs");
  jobs["failed_reason"] = "last exit: worker jobs[0] pid 8 exited with status 4";
  const json web_starting = named(pool("starting", 1, {worker(0, 9, "starting", "serving", 1, 0.1)}), "web");
  const json web_up = named(pool("running", 1, {worker(0, 9, "idle", "serving", 1, 2.0)}), "web");

  // app failed, web is still starting: the wait goes on, and says so.
  const Progress mid = all.check({{"pools", json::array({app, web_starting, jobs})}});
  CHECK(mid.outcome == Outcome::Pending);
  CHECK(mid.line == "start all: 0 of 3 done, 2 failed; start web: 0 of 1 workers ready");
  REQUIRE(mid.parts.size() == 2);
  CHECK(mid.parts[0].line == "start app: pool app failed: last exit: worker app[0] pid 7 exited with status 3");

  // Every pool settled: failed, with each one's outcome in the order of the requests.
  const Progress end = all.check({{"pools", json::array({app, web_up, jobs})}});
  CHECK(end.outcome == Outcome::Failed);
  CHECK(end.line == "start all: 2 of 3 pools failed");
  REQUIRE(end.parts.size() == 3);
  CHECK(end.parts[0].outcome == Outcome::Failed);
  CHECK(end.parts[1].outcome == Outcome::Done);
  CHECK(end.parts[1].line == "start web: done, 1 worker ready");
  CHECK(end.parts[2].outcome == Outcome::Failed);
  CHECK(end.parts[2].line == "start jobs: pool jobs failed: last exit: worker jobs[0] pid 8 exited with status 4");
}
