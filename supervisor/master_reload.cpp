// SPDX-License-Identifier: Apache-2.0
// Master: a configuration reload (SIGHUP, `forkpoolctl reload`), as SPEC section 7 says.
// Everything that can fail happens before anything changes; then the next generation
// takes over and the [supervisor] settings follow.

#include "config/diff.hpp"
#include "supervisor/generation/reload.hpp"
#include "supervisor/master.hpp"
#include "supervisor/observe/access_log.hpp"
#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"

namespace forkpool::supervisor {
namespace {

bool changed(const config::ConfigDiff& diff, std::initializer_list<std::string_view> keys) {
  for (const auto& k : diff.supervisor_keys)
    for (std::string_view want : keys)
      if (k == want) return true;
  return false;
}

}  // namespace

nlohmann::json Master::reload(std::string_view trigger) {
  if (state_ == MasterState::Stopping) {
    log::warn("config.reload_failed", "reload ({}) refused: the master is shutting down", trigger);
    return {{"ok", false}, {"error", "the master is shutting down"}, {"errors", nlohmann::json::array()}};
  }
  log::info("config.reloading", "reloading {} ({})", generation_->config().file.string(), trigger);
  systemd_->reloading();
  nlohmann::json reply;
  try {
    PreparedReload prepared = prepare_reload(*generation_, *scoreboard_);
    SupervisorSwap swap;
    try {
      swap = prepare_supervisor(prepared.config->supervisor, prepared.diff);
    } catch (const std::exception& e) {
      throw ReloadRefused(e.what(), {e.what()});
    }
    const ConfigRef next_config = prepared.config;
    const config::ConfigDiff diff = prepared.diff;
    {
      struct Committing {
        bool& flag;
        ~Committing() { flag = false; }
      } committing{committing_ = true};
      generation_ = commit_reload(ctx_, *generation_, std::move(prepared), removed_pools_);
    }
    commit_supervisor(next_config->supervisor, std::move(swap));

    const std::string summary = diff.summary();
    nlohmann::json details = diff_json(diff);
    details["generation"] = generation_->number();
    details["summary"] = summary;
    details["trigger"] = trigger;
    report(ctx_, spdlog::level::info, "config.reload", {"", {}, 0},
           fmt::format("configuration generation {} from {} ({}): {}", generation_->number(),
                       generation_->config().file.string(), trigger, summary),
           details);
    reply = details;
    reply["ok"] = true;
  } catch (const ReloadRefused& e) {
    std::string text = fmt::format("reload ({}) refused, the running configuration (generation {}) is unchanged: {}",
                                   trigger, generation_->number(), e.what());
    for (const auto& line : e.errors)
      if (line != e.what()) text += "\n  " + line;
    report(ctx_, spdlog::level::err, "config.reload_failed", {"", {}, 0}, text,
           {{"errors", e.errors}, {"generation", generation_->number()}, {"trigger", trigger}});
    reply = {{"ok", false},
             {"error", std::string("reload refused, nothing changed: ") + e.what()},
             {"errors", e.errors},
             {"generation", generation_->number()}};
  }
  systemd_->reloaded();
  on_changed();
  return reply;
}

Master::SupervisorSwap Master::prepare_supervisor(const config::SupervisorConfig& next,
                                                  const config::ConfigDiff& diff) {
  SupervisorSwap swap;
  const config::SupervisorConfig& now = supervisor_config();
  if (next.control_socket != now.control_socket) {
    // Bound before anything changes; the old socket answers until this one is there.
    swap.control = make_control_server(next);
  } else if (changed(diff, {"control_mode", "control_group"})) {
    ControlServer::resolve_group(next.control_group);  // throws for an unknown group
    swap.control_access = true;
  }
  if (next.metrics_listen != now.metrics_listen) {
    swap.metrics_changed = true;
    swap.metrics = make_metrics_server(next);  // null when turned off
  }
  if (changed(diff, {"access_log", "access_log_format"})) {
    // Opened here, so a file that cannot be opened refuses the reload; used from the commit.
    swap.access_log = access_log::open({next.access_log, next.access_log_format});
  }
  if (changed(diff, {"log_format", "log_file"})) {
    // Last, as it is the one step that takes effect at once; it throws if the file
    // cannot be opened, and the old logger stays.
    // Only a changed log_level in the file overrides a level set with `log-level`.
    swap.level_changed = changed(diff, {"log_level"});
    log::setup({swap.level_changed ? next.log_level : log::level(), next.log_format, next.log_file});
    swap.log_changed = true;
  }
  swap.level_changed = changed(diff, {"log_level"});
  return swap;
}

void Master::commit_supervisor(const config::SupervisorConfig& next, SupervisorSwap swap) {
  if (swap.control) {
    control_->stop_listening();
    log::info("control.moved", "control socket moved to {}; clients of the old one are still answered",
              next.control_socket.string());
    moved_controls_.push_back(std::move(control_));
    control_ = std::move(swap.control);
  } else if (swap.control_access) {
    control_->set_access(next.control_mode, next.control_group);
  }
  if (swap.metrics_changed) {
    metrics_http_ = std::move(swap.metrics);
    if (!metrics_http_) log::info("metrics.off", "metrics HTTP endpoint closed");
  }
  if (!swap.log_changed && swap.level_changed) log::set_level(next.log_level);
  if (swap.access_log) access_log::install(std::move(*swap.access_log));
}

}  // namespace forkpool::supervisor
