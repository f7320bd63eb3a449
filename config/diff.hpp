// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a configuration reload changes: each pool compared with its running self, by name,
// and every changed key classed by how the change reaches the running pool (SPEC section 7).
// A pure function of two Configs, so the supervisor decides and logs from one result.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace forkpool::config {

// How a change to one key reaches the running pool.
enum class KeyClass {
  InPlace,  // a master-side setting, applied to the running workers
  Replace,  // workers are started with it, so they must be restarted (rolling) to see it
};

enum class PoolChange { Unchanged, InPlace, Replace, Added, Removed };

// "unchanged" "in-place" "replace" "added" "removed"
std::string_view to_string(PoolChange change);

struct KeyRule {
  std::string_view key;  // as printed by to_toml
  KeyClass klass;
};

// Every pool key of the schema with its class, in the order to_toml prints them.
std::span<const KeyRule> pool_key_rules();
// Every [supervisor] key, in the order to_toml prints them; all apply in place on reload.
std::span<const std::string_view> supervisor_keys();

struct PoolDiff {
  std::string name;
  PoolChange change = PoolChange::Unchanged;
  std::vector<std::string> keys;  // changed keys, schema order (empty for added/removed/unchanged)
};

struct ConfigDiff {
  std::vector<PoolDiff> pools;  // old pools in old order, then added pools in new order
  std::vector<std::string> supervisor_keys;  // changed [supervisor] keys, schema order

  // Nothing changed at all.
  bool empty() const;
  std::size_t count(PoolChange change) const;
  // One line for the log, e.g. "pools: 1 unchanged, 1 changed in place (web: workers),
  // 1 replaced (api: env), 1 added (jobs), 0 removed; supervisor: log_level". Several pools in
  // one group are separated by "; " inside the parentheses, several keys of a pool by ", ";
  // "supervisor: unchanged" when no [supervisor] key changed.
  std::string summary() const;
};

// Pools are matched by name, so reordering pools in the file changes nothing. Sizing keys are
// compared as printed: turning a fixed pool dynamic changes `workers` and the three dynamic keys.
ConfigDiff diff(const Config& before, const Config& after);

// How a pool configured as `before` would take `after` (both of the same pool): Replace
// when a worker started with `before` does not run what `after` says (a reload uses this
// to keep a worker that already runs the new worker-side settings).
PoolChange compare(const PoolConfig& before, const PoolConfig& after);

}  // namespace forkpool::config
