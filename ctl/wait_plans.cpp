// SPDX-License-Identifier: Apache-2.0
#include "ctl/wait_plans.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "ctl/json_access.hpp"

namespace forkpool::ctl {

namespace {

using nlohmann::json;
using Outcome = Progress::Outcome;

Progress pending(std::string line) { return {Outcome::Pending, std::move(line), {}}; }
Progress done(std::string line) { return {Outcome::Done, std::move(line), {}}; }
Progress failed(std::string line) { return {Outcome::Failed, std::move(line), {}}; }

bool serving_ready(const json& w) {
  const std::string state = str_field(w, "state");
  return state == "idle" || state == "busy";
}

struct PoolCounts {
  int target = 0;
  int ready = 0;          // serving workers of a slot below target, ready
  int changing = 0;       // replacements and retiring workers still there
};

// `min_uptime`: a worker counts as ready only once it has run that long (start, below).
PoolCounts counts(const json& pool, double min_uptime = 0.0) {
  PoolCounts c;
  c.target = static_cast<int>(u64_field(pool, "target"));
  // A fixed pool's workers are numbered 0..target-1 (those above are leaving); a dynamic
  // pool retires whichever worker was idle longest, so its numbers have gaps.
  const bool dynamic = bool_field(pool, "dynamic");
  if (const auto& ws = field(pool, "workers"); ws.is_array()) {
    for (const auto& w : ws) {
      const std::string role = str_field(w, "role");
      if (role == "serving" && serving_ready(w) &&
          (dynamic || static_cast<int>(u64_field(w, "worker")) < c.target) && num_field(w, "uptime_s") >= min_uptime)
        ++c.ready;
      if (role == "replacement" || role == "retiring") ++c.changing;
    }
  }
  return c;
}

// The pool has failed (or is gone): the change cannot complete. The reason is the exit
// line that failed it, so `start` of a pool that fails again says why at once.
std::optional<Progress> broken(const std::string& what, const std::string& name, const json& pool) {
  if (pool.is_null()) return failed(what + ": pool " + name + " is gone");
  if (str_field(pool, "state") != "failed") return std::nullopt;
  const std::string why = str_field(pool, "failed_reason");
  return failed(what + ": pool " + name + " failed" + (why.empty() ? "" : ": " + why));
}

std::set<std::uint64_t> pids_of(const json& pool, std::optional<std::uint64_t> only_worker) {
  std::set<std::uint64_t> pids;
  if (const auto& ws = field(pool, "workers"); ws.is_array())
    for (const auto& w : ws)
      if (str_field(w, "role") == "serving" && u64_field(w, "pid") != 0 &&
          (!only_worker || u64_field(w, "worker") == *only_worker))
        pids.insert(u64_field(w, "pid"));
  return pids;
}

WaitPlan restart_plan(const std::string& name, std::optional<std::uint64_t> worker, const json& before) {
  const std::string what = worker ? fmt::format("restart {} {}", name, *worker) : "restart " + name;
  const std::set<std::uint64_t> old = pids_of(pool_of(before, name), worker);
  return {what, [=](const json& status) {
            const json& pool = pool_of(status, name);
            if (auto b = broken(what, name, pool)) return *b;
            std::size_t left = 0;
            if (const auto& ws = field(pool, "workers"); ws.is_array())
              for (const auto& w : ws)
                if (old.count(u64_field(w, "pid")) != 0) ++left;
            const PoolCounts c = counts(pool);
            const std::size_t replaced = old.size() - left;
            if (left == 0 && c.changing == 0 && c.ready == c.target)
              return done(fmt::format("{}: done, {} worker{} replaced", what, old.size(), old.size() == 1 ? "" : "s"));
            return pending(fmt::format("{}: {} of {} replaced, {} left ({} of {} ready)", what, replaced, old.size(),
                                       left, c.ready, c.target));
          }};
}

WaitPlan stop_plan(const std::string& name) {
  const std::string what = "stop " + name;
  return {what, [=](const json& status) {
            const json& pool = pool_of(status, name);
            if (pool.is_null()) return failed(what + ": pool " + name + " is gone");
            const std::string state = str_field(pool, "state");
            if (state == "stopped") return done(what + ": done, pool " + name + " is stopped");
            if (state != "stopping") return failed(what + ": pool " + name + " is " + state + ", not stopped");
            return pending(fmt::format("{}: {} worker{} still stopping", what, u64_field(pool, "live"),
                                       u64_field(pool, "live") == 1 ? "" : "s"));
          }};
}

// A started pool counts as up once its workers are ready and have lived through the
// master's start-up grace (a second): a worker that exits within it "never started"
// (docs/configuration.md), and a pool whose workers keep doing so fails, which is what a
// `start` of a still broken pool must report, with the exit line, rather than "done".
constexpr double kStartupGraceSeconds = 1.0;

WaitPlan start_plan(const std::string& name) {
  const std::string what = "start " + name;
  return {what, [=](const json& status) {
            const json& pool = pool_of(status, name);
            if (auto b = broken(what, name, pool)) return *b;
            const PoolCounts c = counts(pool, kStartupGraceSeconds);
            // Replacements (a failed deploy tried again) must take over, or fail it again.
            if (str_field(pool, "state") == "running" && c.ready == c.target && c.changing == 0)
              return done(fmt::format("{}: done, {} worker{} ready", what, c.ready, c.ready == 1 ? "" : "s"));
            return pending(fmt::format("{}: {} of {} workers ready", what, c.ready, c.target));
          }};
}

WaitPlan scale_plan(const std::string& name, std::uint64_t to) {
  const std::string what = fmt::format("scale {} {}", name, to);
  return {what, [=](const json& status) {
            const json& pool = pool_of(status, name);
            if (auto b = broken(what, name, pool)) return *b;
            const std::string state = str_field(pool, "state");
            if (state == "stopped")
              return done(fmt::format("{}: pool {} is stopped; it starts {} workers when started", what, name, to));
            const PoolCounts c = counts(pool);
            const auto live = u64_field(pool, "live");
            // A dynamic pool's own rules (spare_workers above all) may move the target on
            // from the number asked for: done once the pool has settled where they put it.
            const bool dynamic = bool_field(pool, "dynamic");
            const auto target = static_cast<std::uint64_t>(c.target);
            const bool settled = live == target && c.ready == c.target && c.changing == 0;
            if (settled && target == to)
              return done(fmt::format("{}: done, {} worker{} ready", what, to, to == 1 ? "" : "s"));
            if (settled && dynamic)
              return done(fmt::format("{}: done, {} worker{} ready (the pool's target after its spare_workers, "
                                      "min_workers and max_workers)",
                                      what, target, target == 1 ? "" : "s"));
            return pending(fmt::format("{}: {} running, {} of {} ready", what, live, c.ready, dynamic ? target : to));
          }};
}

// Every pool the reload added, changed or replaced is settled on the new generation, and
// every pool it removed has drained away.
WaitPlan reload_plan(const json& reply) {
  const std::uint64_t generation = u64_field(reply, "generation");
  const std::string what = fmt::format("reload (generation {})", generation);
  std::vector<std::pair<std::string, std::string>> changed;  // name, change
  if (const auto& pools = field(reply, "pools"); pools.is_array())
    for (const auto& p : pools)
      if (str_field(p, "change") != "unchanged") changed.emplace_back(str_field(p, "name"), str_field(p, "change"));
  return {what, [=](const json& status) {
            std::string waiting;
            for (const auto& [name, change] : changed) {
              const json& pool = pool_of(status, name);
              if (change == "removed") {
                if (!pool.is_null()) waiting += (waiting.empty() ? "" : ", ") + name + " draining";
                continue;
              }
              // A failed pool whose settings changed in place stays failed (its workers did
              // not change): nothing to wait for. One that was replaced or added and fails
              // now is a reload that did not work.
              if (change == "in-place" && str_field(pool, "state") == "failed") continue;
              if (auto b = broken(what, name, pool)) return *b;
              if (str_field(pool, "state") == "stopped") continue;
              const PoolCounts c = counts(pool);
              bool old = false;
              int fresh = 0;  // serving and ready on the new generation
              if (change == "replace")
                if (const auto& ws = field(pool, "workers"); ws.is_array())
                  for (const auto& w : ws) {
                    old = old || u64_field(w, "generation") < generation;
                    if (u64_field(w, "generation") >= generation && str_field(w, "role") == "serving" &&
                        serving_ready(w))
                      ++fresh;
                  }
              if (!(old || c.changing > 0 || c.ready != c.target)) continue;
              waiting += waiting.empty() ? "" : ", ";
              // The old workers are ready while they wait to be replaced: what counts is how
              // many run the new settings (a program that cannot start shows as 0 of N).
              if (change == "replace")
                waiting += fmt::format("{} {} of {} replaced ({} of {} ready)", name, fresh, c.target, c.ready, c.target);
              else
                waiting += fmt::format("{} {} of {} ready", name, c.ready, c.target);
            }
            if (waiting.empty()) return done(what + ": done");
            return pending(what + ": " + waiting);
          }};
}

}  // namespace

const json& pool_of(const json& status, const std::string& name) {
  static const json kNull;
  if (const auto& pools = field(status, "pools"); pools.is_array())
    for (const auto& p : pools)
      if (str_field(p, "name") == name) return p;
  return kNull;
}

WaitPlan all_of(std::string what, std::vector<WaitPlan> plans) {
  if (plans.size() == 1) return std::move(plans.front());
  return {what, [what, plans](const json& status) {
            std::vector<std::string> pending_lines;
            std::vector<Progress> settled;
            std::size_t failures = 0;
            for (const auto& plan : plans) {
              Progress p = plan.check(status);
              if (p.outcome == Outcome::Pending) {
                pending_lines.push_back(std::move(p.line));
                continue;
              }
              if (p.outcome == Outcome::Failed) ++failures;
              settled.push_back(std::move(p));
            }
            Progress all;
            if (!pending_lines.empty()) {
              all = pending(fmt::format("{}: {} of {} done{}; {}", what, settled.size() - failures, plans.size(),
                                        failures == 0 ? "" : fmt::format(", {} failed", failures),
                                        pending_lines.front()));
            } else if (failures == 0) {
              all = done(fmt::format("{}: done ({} pools)", what, plans.size()));
            } else {
              all = failed(fmt::format("{}: {} of {} pools failed", what, failures, plans.size()));
            }
            all.parts = std::move(settled);
            return all;
          }};
}

std::optional<WaitPlan> wait_plan(const json& request, const json& reply, const json& before) {
  const std::string cmd = str_field(request, "cmd");
  const std::string pool = str_field(request, "pool");
  if (cmd == "restart") {
    std::optional<std::uint64_t> worker;
    if (field(request, "worker").is_number_unsigned()) worker = u64_field(request, "worker");
    return restart_plan(pool, worker, before);
  }
  if (cmd == "stop") return stop_plan(pool);
  if (cmd == "start") return start_plan(pool);
  if (cmd == "scale") return scale_plan(pool, u64_field(request, "workers"));
  if (cmd == "reload") return reload_plan(reply);
  // `upgrade` plugs in here: its plan reads the master's pid and version from status.
  return std::nullopt;
}

}  // namespace forkpool::ctl
