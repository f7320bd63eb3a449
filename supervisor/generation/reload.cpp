// SPDX-License-Identifier: Apache-2.0
#include "supervisor/generation/reload.hpp"

#include <algorithm>

#include "config/load.hpp"
#include "supervisor/observe/log.hpp"

namespace forkpool::supervisor {

PreparedReload prepare_reload(const Generation& current, const shm::Scoreboard& scoreboard) {
  PreparedReload next;
  try {
    next.config = std::make_shared<const config::Config>(config::load_file(current.config().file));
  } catch (const config::ConfigError& e) {
    std::vector<std::string> lines;
    for (const auto& d : e.diagnostics()) lines.push_back(d.to_string());
    std::string summary = std::to_string(lines.size()) + (lines.size() == 1 ? " error" : " errors") + " in " +
                          current.config().file.string();
    throw ReloadRefused(std::move(summary), std::move(lines));
  }
  next.diff = config::diff(current.config(), *next.config);

  // Removed pools keep their blocks until they have drained, so added ones need room
  // of their own.
  const std::size_t added = next.diff.count(config::PoolChange::Added);
  if (added > scoreboard.free_pools()) {
    const std::string why = "the scoreboard has room for " + std::to_string(scoreboard.free_pools()) +
                            " more pool(s), not " + std::to_string(added) + "; restart forkpool to add them";
    throw ReloadRefused(why, {why});
  }
  try {
    InheritedSockets none;
    next.listeners = ListenerSet::build(*next.config, &current.listeners(), none);
  } catch (const std::exception& e) {
    throw ReloadRefused(e.what(), {e.what()});
  }
  return next;
}

std::unique_ptr<Generation> commit_reload(MasterContext& ctx, Generation& current, PreparedReload prepared,
                                          std::vector<std::unique_ptr<Pool>>& removed) {
  auto next = std::make_unique<Generation>(current.number() + 1, prepared.config, std::move(prepared.listeners));
  for (const std::string& problem : next->listeners().apply_backlogs(next->config()))
    log::warn("listener.backlog", "{}; the old backlog stays", problem);
  // What this reload bound is logged as at start (a port 0 shows the port it got); what
  // it adopted from the previous generation was logged when it was bound.
  for (const config::PoolConfig& pc : next->config().pools)
    for (const ListenerRef& l : next->listeners().for_pool(pc))
      if (!current.listeners().holds(l)) log_opened(pc.name, *l);

  std::vector<std::unique_ptr<Pool>> old = std::move(current.pools());
  for (const config::PoolDiff& d : prepared.diff.pools) {
    if (d.change != config::PoolChange::Removed) continue;
    auto it = std::find_if(old.begin(), old.end(), [&](const auto& p) { return p && p->name() == d.name; });
    if (it == old.end()) continue;
    (*it)->retire();
    removed.push_back(std::move(*it));
  }
  // A listener may change pools (ports swapped, or given to a pool earlier in the file):
  // every pool whose listeners change drops its watches of them before any pool watches
  // again, since libuv refuses a second watch of one descriptor (the master aborted).
  for (const auto& p : old) {
    if (!p) continue;
    const config::PoolConfig* pc = next->config().find_pool(p->name());
    if ((pc != nullptr ? next->listeners().for_pool(*pc) : std::vector<ListenerRef>{}) != p->listeners())
      p->release_listener_watches();
  }
  // Pools in the new file's order, so status lists them as the file does.
  for (const config::PoolConfig& pc : next->config().pools) {
    const config::PoolDiff* d = nullptr;
    for (const auto& candidate : prepared.diff.pools)
      if (candidate.name == pc.name) d = &candidate;
    auto it = std::find_if(old.begin(), old.end(), [&](const auto& p) { return p && p->name() == pc.name; });
    if (d == nullptr || d->change == config::PoolChange::Added || it == old.end()) {
      try {
        next->pools().push_back(next->make_pool(ctx, pc));
      } catch (const std::exception& e) {
        // prepare_reload checked the room; nothing else in a Pool's construction fails.
        log::error("pool.add_failed", "pool {} could not be added: {}", pc.name, e.what());
        continue;
      }
      next->pools().back()->start();
      continue;
    }
    std::unique_ptr<Pool> pool = std::move(*it);
    if (d->change == config::PoolChange::Unchanged)
      pool->keep(next->pool_config(pc), next->listeners().for_pool(pc));
    else
      pool->reconfigure(next->pool_config(pc), next->number(), next->listeners().for_pool(pc), d->change);
    next->pools().push_back(std::move(pool));
  }
  return next;
}

nlohmann::json diff_json(const config::ConfigDiff& diff) {
  nlohmann::json pools = nlohmann::json::array();
  for (const auto& p : diff.pools)
    pools.push_back({{"name", p.name}, {"change", config::to_string(p.change)}, {"keys", p.keys}});
  return {{"pools", std::move(pools)}, {"supervisor", diff.supervisor_keys}};
}

}  // namespace forkpool::supervisor
