// SPDX-License-Identifier: Apache-2.0
#pragma once
// Reload in two steps (SPEC section 7). prepare_reload does everything that can fail
// (read and validate the whole file, compare it with the running configuration, bind
// the new listeners, check the scoreboard has room) and changes nothing; if it throws,
// the running generation goes on untouched. commit_reload cannot fail: it builds the
// next generation and hands every pool its change.

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/diff.hpp"
#include "shm/scoreboard.hpp"
#include "supervisor/generation/generation.hpp"

namespace forkpool::supervisor {

// Why a reload was refused: every config error as "file:line:col: key: message", or
// the one step that failed (a bind, no scoreboard room).
struct ReloadRefused : std::runtime_error {
  ReloadRefused(std::string summary, std::vector<std::string> lines)
      : std::runtime_error(std::move(summary)), errors(std::move(lines)) {}
  std::vector<std::string> errors;
};

struct PreparedReload {
  ConfigRef config;
  config::ConfigDiff diff;
  ListenerSet listeners;
};

// Throws ReloadRefused.
PreparedReload prepare_reload(const Generation& current, const shm::Scoreboard& scoreboard);

// The next generation, with every pool of `current` moved in (changed in place,
// replaced by generation, or kept), added pools created and started, and removed pools
// moved to `removed`, retiring. `current` is left empty.
std::unique_ptr<Generation> commit_reload(MasterContext& ctx, Generation& current, PreparedReload prepared,
                                          std::vector<std::unique_ptr<Pool>>& removed);

// {"pools": [{"name", "change", "keys"}...], "supervisor": [keys]}
nlohmann::json diff_json(const config::ConfigDiff& diff);

}  // namespace forkpool::supervisor
