// SPDX-License-Identifier: Apache-2.0
#include "config/diff.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <optional>

namespace forkpool::config {
namespace {

using PoolEqual = bool (*)(const PoolConfig&, const PoolConfig&);
using SupervisorEqual = bool (*)(const SupervisorConfig&, const SupervisorConfig&);

template <auto Member, typename S>
bool same(const S& a, const S& b) {
  return a.*Member == b.*Member;
}

// A sizing key exists only in the printed form of one kind of pool: `workers` in a fixed pool,
// min/max/spare in a dynamic one (whose `workers` merely mirrors min_workers). Comparing the
// printed presence makes fixed <-> dynamic a change of exactly the sizing keys that appear.
template <int PoolConfig::*Member, bool Dynamic>
bool same_sizing(const PoolConfig& a, const PoolConfig& b) {
  auto printed = [](const PoolConfig& p) {
    return p.dynamic == Dynamic ? std::optional<int>(p.*Member) : std::nullopt;
  };
  return printed(a) == printed(b);
}

bool same_idle_timeout(const PoolConfig& a, const PoolConfig& b) {
  auto printed = [](const PoolConfig& p) {
    return p.dynamic ? std::optional<Duration>(p.idle_timeout) : std::nullopt;
  };
  return printed(a) == printed(b);
}

// Workers get their listeners at exec (FORKPOOL_LISTENERS, and LISTEN_FDS in shared mode) in
// this order, so a reordered list is a change too. The canonical text identifies an address.
bool same_listen(const PoolConfig& a, const PoolConfig& b) {
  return std::ranges::equal(a.listen, b.listen, {}, &ListenAddress::text, &ListenAddress::text);
}

bool same_rlimits(const PoolConfig& a, const PoolConfig& b) {
  return std::ranges::equal(a.rlimits, b.rlimits, [](const auto& x, const auto& y) {
    return x.first == y.first && x.second.resource == y.second.resource &&
           x.second.value == y.second.value;
  });
}

template <OutputTarget PoolConfig::*Member>
bool same_output(const PoolConfig& a, const PoolConfig& b) {
  const OutputTarget& x = a.*Member;
  const OutputTarget& y = b.*Member;
  return x.kind == y.kind && x.path == y.path;
}

struct PoolKey {
  KeyRule rule;
  PoolEqual same;
};

constexpr KeyClass kInPlace = KeyClass::InPlace;
constexpr KeyClass kReplace = KeyClass::Replace;

// In the order to_toml prints them (config/print.cpp); diff keys come out in this order.
// Replace keys are what a worker is started with (argv, environment, credentials, inherited
// fds, readiness and watchdog setup): fixed at exec, so only new workers can see a change.
// InPlace keys are read by the master alone, so the running workers stay.
constexpr std::array kPoolKeys{
    PoolKey{{"command", kReplace}, same<&PoolConfig::command>},
    PoolKey{{"dispatch", kReplace}, same<&PoolConfig::dispatch>},
    PoolKey{{"listen", kReplace}, same_listen},
    PoolKey{{"workers", kInPlace}, same_sizing<&PoolConfig::workers, false>},
    PoolKey{{"min_workers", kInPlace}, same_sizing<&PoolConfig::min_workers, true>},
    PoolKey{{"max_workers", kInPlace}, same_sizing<&PoolConfig::max_workers, true>},
    PoolKey{{"spare_workers", kInPlace}, same_sizing<&PoolConfig::spare_workers, true>},
    PoolKey{{"idle_timeout", kInPlace}, same_idle_timeout},
    PoolKey{{"max_inflight", kInPlace}, same<&PoolConfig::max_inflight>},
    // FORKPOOL_KEEPALIVE is given at exec only.
    PoolKey{{"keepalive", kReplace}, same<&PoolConfig::keepalive>},
    PoolKey{{"keepalive_timeout", kInPlace}, same<&PoolConfig::keepalive_timeout>},
    PoolKey{{"max_parked", kInPlace}, same<&PoolConfig::max_parked>},
    PoolKey{{"balance", kInPlace}, same<&PoolConfig::balance>},
    PoolKey{{"queue_limit", kInPlace}, same<&PoolConfig::queue_limit>},
    PoolKey{{"queue_timeout", kInPlace}, same<&PoolConfig::queue_timeout>},
    PoolKey{{"backlog", kInPlace}, same<&PoolConfig::backlog>},
    PoolKey{{"ready", kReplace}, same<&PoolConfig::ready>},
    PoolKey{{"ready_timeout", kInPlace}, same<&PoolConfig::ready_timeout>},
    // WATCHDOG_USEC and the notify socket are given at exec only.
    PoolKey{{"watchdog", kReplace}, same<&PoolConfig::watchdog>},
    PoolKey{{"request_timeout", kInPlace}, same<&PoolConfig::request_timeout>},
    PoolKey{{"timeout_signal", kInPlace}, same<&PoolConfig::timeout_signal>},
    PoolKey{{"max_requests", kInPlace}, same<&PoolConfig::max_requests>},
    PoolKey{{"max_requests_jitter", kInPlace}, same<&PoolConfig::max_requests_jitter>},
    PoolKey{{"max_memory", kInPlace}, same<&PoolConfig::max_memory>},
    PoolKey{{"restart_delay", kInPlace}, same<&PoolConfig::restart_delay>},
    PoolKey{{"restart_delay_max", kInPlace}, same<&PoolConfig::restart_delay_max>},
    PoolKey{{"flap_restarts", kInPlace}, same<&PoolConfig::flap_restarts>},
    PoolKey{{"flap_window", kInPlace}, same<&PoolConfig::flap_window>},
    PoolKey{{"graceful_timeout", kInPlace}, same<&PoolConfig::graceful_timeout>},
    PoolKey{{"stop_signal", kInPlace}, same<&PoolConfig::stop_signal>},
    PoolKey{{"isolate", kReplace}, same<&PoolConfig::isolate>},
    PoolKey{{"user", kReplace}, same<&PoolConfig::user>},
    PoolKey{{"group", kReplace}, same<&PoolConfig::group>},
    PoolKey{{"cwd", kReplace}, same<&PoolConfig::cwd>},
    PoolKey{{"umask", kReplace}, same<&PoolConfig::umask>},
    PoolKey{{"env", kReplace}, same<&PoolConfig::env>},
    PoolKey{{"clear_env", kReplace}, same<&PoolConfig::clear_env>},
    PoolKey{{"rlimits", kReplace}, same_rlimits},
    PoolKey{{"stdout", kReplace}, same_output<&PoolConfig::stdout_target>},
    PoolKey{{"stderr", kReplace}, same_output<&PoolConfig::stderr_target>},
};

constexpr auto kPoolRules = [] {
  std::array<KeyRule, kPoolKeys.size()> rules{};
  for (std::size_t i = 0; i < rules.size(); ++i) rules[i] = kPoolKeys[i].rule;
  return rules;
}();

struct SupervisorKey {
  std::string_view key;
  SupervisorEqual same;
};

// In the order to_toml prints them.
constexpr std::array kSupervisorKeys{
    SupervisorKey{"control_socket", same<&SupervisorConfig::control_socket>},
    SupervisorKey{"control_mode", same<&SupervisorConfig::control_mode>},
    SupervisorKey{"control_group", same<&SupervisorConfig::control_group>},
    SupervisorKey{"log_level", same<&SupervisorConfig::log_level>},
    SupervisorKey{"log_format", same<&SupervisorConfig::log_format>},
    SupervisorKey{"log_file", same<&SupervisorConfig::log_file>},
    SupervisorKey{"access_log", same<&SupervisorConfig::access_log>},
    SupervisorKey{"access_log_format", same<&SupervisorConfig::access_log_format>},
    SupervisorKey{"shutdown_timeout", same<&SupervisorConfig::shutdown_timeout>},
    SupervisorKey{"metrics_listen", same<&SupervisorConfig::metrics_listen>},
};

constexpr auto kSupervisorNames = [] {
  std::array<std::string_view, kSupervisorKeys.size()> names{};
  for (std::size_t i = 0; i < names.size(); ++i) names[i] = kSupervisorKeys[i].key;
  return names;
}();

// Both pools have the same name; the diff is keyed by it.
PoolDiff compare_pool(const PoolConfig& before, const PoolConfig& after) {
  PoolDiff d{before.name, PoolChange::Unchanged, {}};
  for (const PoolKey& k : kPoolKeys) {
    if (k.same(before, after)) continue;
    d.keys.emplace_back(k.rule.key);
    // One key that needs new workers makes the whole pool a rolling restart.
    if (k.rule.klass == KeyClass::Replace)
      d.change = PoolChange::Replace;
    else if (d.change == PoolChange::Unchanged)
      d.change = PoolChange::InPlace;
  }
  return d;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    out += items[i];
  }
  return out;
}

}  // namespace

std::string_view to_string(PoolChange change) {
  switch (change) {
    case PoolChange::Unchanged:
      return "unchanged";
    case PoolChange::InPlace:
      return "in-place";
    case PoolChange::Replace:
      return "replace";
    case PoolChange::Added:
      return "added";
    case PoolChange::Removed:
      return "removed";
  }
  std::abort();  // Every enumerator has a name; a missing one is a programming error.
}

PoolChange compare(const PoolConfig& before, const PoolConfig& after) {
  return compare_pool(before, after).change;
}

std::span<const KeyRule> pool_key_rules() {
  return kPoolRules;
}

std::span<const std::string_view> supervisor_keys() {
  return kSupervisorNames;
}

bool ConfigDiff::empty() const {
  return supervisor_keys.empty() && count(PoolChange::Unchanged) == pools.size();
}

std::size_t ConfigDiff::count(PoolChange change) const {
  return static_cast<std::size_t>(std::ranges::count(pools, change, &PoolDiff::change));
}

std::string ConfigDiff::summary() const {
  struct Group {
    PoolChange change;
    std::string_view label;
  };
  constexpr std::array<Group, 5> kGroups{{{PoolChange::Unchanged, "unchanged"},
                                          {PoolChange::InPlace, "changed in place"},
                                          {PoolChange::Replace, "replaced"},
                                          {PoolChange::Added, "added"},
                                          {PoolChange::Removed, "removed"}}};
  std::string out = "pools: ";
  for (const Group& g : kGroups) {
    if (&g != &kGroups.front()) out += ", ";
    out += std::to_string(count(g.change)) + " " + std::string(g.label);
    // Unchanged pools are not named: with many pools the line would drown what did change.
    if (g.change == PoolChange::Unchanged || count(g.change) == 0) continue;
    std::vector<std::string> names;
    for (const PoolDiff& p : pools)
      if (p.change == g.change)
        names.push_back(p.keys.empty() ? p.name : p.name + ": " + join(p.keys, ", "));
    out += " (" + join(names, "; ") + ")";
  }
  out += "; supervisor: " +
         (supervisor_keys.empty() ? std::string("unchanged") : join(supervisor_keys, ", "));
  return out;
}

ConfigDiff diff(const Config& before, const Config& after) {
  ConfigDiff d;
  for (const PoolConfig& old_pool : before.pools) {
    if (const PoolConfig* new_pool = after.find_pool(old_pool.name))
      d.pools.push_back(compare_pool(old_pool, *new_pool));
    else
      d.pools.push_back({old_pool.name, PoolChange::Removed, {}});
  }
  for (const PoolConfig& new_pool : after.pools)
    if (before.find_pool(new_pool.name) == nullptr)
      d.pools.push_back({new_pool.name, PoolChange::Added, {}});
  for (const SupervisorKey& k : kSupervisorKeys)
    if (!k.same(before.supervisor, after.supervisor)) d.supervisor_keys.emplace_back(k.key);
  return d;
}

}  // namespace forkpool::config
