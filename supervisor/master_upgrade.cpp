// SPDX-License-Identifier: Apache-2.0
// Master: a binary upgrade in place (SIGUSR2, `forkpoolctl upgrade`), as SPEC section 7
// and docs/upgrade.md say. The old image checks the new binary, writes its state and
// execs it; the new image (the constructor below) takes everything over and resumes.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iterator>

#include "config/diff.hpp"
#include "config/load.hpp"
#include "supervisor/master.hpp"
#include "supervisor/observe/events.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/upgrade/state_clock.hpp"
#include "supervisor/upgrade/state_reader.hpp"
#include "supervisor/upgrade/upgrade.hpp"
#include "supervisor/version.hpp"

namespace forkpool::supervisor {
namespace {

using nlohmann::json;
using upgrade::need;

double unix_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The configuration text for the new image, which runs exactly this text. An upgrade
// never changes the configuration, so the file must still say what runs now.
std::string unchanged_config_text(const config::Config& running) {
  std::string why;
  try {
    std::string text = config::read_config_file(running.file);
    const config::Config file = config::load_string(text, running.file);
    const config::ConfigDiff diff = config::diff(running, file);
    if (diff.empty()) return text;
    why = running.file.string() + " has changed since it was last loaded (" + diff.summary() +
          "); reload first, or put the running version back";
  } catch (const config::ConfigError& e) {
    why = running.file.string() + " does not load: " +
          (e.diagnostics().empty() ? std::string(e.what()) : e.diagnostics().front().to_string());
  }
  throw upgrade::UpgradeRefused(why);
}

}  // namespace

json Master::refuse_upgrade(std::string_view trigger, const std::string& why) {
  report(ctx_, spdlog::level::err, "master.upgrade_failed", {"", {}, 0},
         fmt::format("binary upgrade ({}) refused, nothing changed: {}", trigger, why),
         {{"error", why}, {"trigger", trigger}});
  return {{"ok", false}, {"error", "upgrade refused, nothing changed: " + why}};
}

void Master::upgrade(std::string_view trigger, ControlClient* client) {
  const auto refuse = [&](const std::string& why) {
    const json r = refuse_upgrade(trigger, why);
    if (client != nullptr) client->reply(r);
  };
  if (state_ != MasterState::Running)
    return refuse(state_ == MasterState::Stopping ? "the master is shutting down"
                                                  : "the master is still starting");
  if (!removed_pools_.empty())
    return refuse("pool " + removed_pools_.front()->name() +
                  ", removed by a reload, is still draining; try again once it has");
  if (preflight_)
    return refuse("another upgrade (" + upgrade_trigger_ +
                  ") is checking its new binary; wait for its outcome");

  log::info("master.upgrading", "binary upgrade ({}): checking {}", trigger,
            binary_.empty() ? std::string("/proc/self/exe") : binary_);
  // The new binary runs twice (--upgrade-info, --check) while the loop goes on: a slow or
  // hung one never holds up dispatch, reaping or the control socket.
  try {
    preflight_ = std::make_unique<upgrade::Preflight>(
        loop_.get(), binary_, generation_->config().file, [this](upgrade::Preflight::Outcome o) {
          // Called while reaping: the hand-over (an execve) runs on the next loop turn.
          upgrade_step_.start(std::chrono::milliseconds(0),
                              [this, o = std::move(o)] { continue_upgrade(o); });
        });
  } catch (const upgrade::UpgradeRefused& e) {
    return refuse(e.what());
  }
  upgrade_trigger_ = std::string(trigger);
  upgrade_generation_ = generation_->number();
  upgrade_reply_ = client != nullptr ? client->defer() : DeferredReply{};
}

void Master::abandon_upgrade(const std::string& why) {
  if (!preflight_) return;
  preflight_.reset();  // kills the run in progress; reaped as any child
  upgrade_step_.stop();
  DeferredReply reply = std::move(upgrade_reply_);
  reply.reply(refuse_upgrade(upgrade_trigger_, why));
}

void Master::continue_upgrade(upgrade::Preflight::Outcome outcome) {
  if (!preflight_) return;  // abandoned meanwhile
  preflight_.reset();
  const std::string trigger = std::move(upgrade_trigger_);
  DeferredReply reply = std::move(upgrade_reply_);
  const auto refuse = [&](const std::string& why) { reply.reply(refuse_upgrade(trigger, why)); };
  if (const auto* refused = std::get_if<upgrade::UpgradeRefused>(&outcome)) return refuse(refused->what());
  const upgrade::NewBinary next = std::get<upgrade::NewBinary>(outcome);
  // What may have changed while the new binary ran.
  if (state_ != MasterState::Running) return refuse("the master is shutting down");
  if (!removed_pools_.empty())
    return refuse("pool " + removed_pools_.front()->name() +
                  ", removed by a reload, is still draining; try again once it has");
  if (generation_->number() != upgrade_generation_)
    return refuse("the configuration was reloaded while the new binary was checked; upgrade again");

  upgrade::FdList fds;
  base::OwnedFd memfd;
  try {
    json state = export_state(fds);
    state["config_text"] = unchanged_config_text(generation_->config());
    memfd = upgrade::write_state(state);
  } catch (const upgrade::UpgradeRefused& e) {
    return refuse(e.what());
  } catch (const std::exception& e) {
    return refuse(std::string("writing the state: ") + e.what());
  }

  report(ctx_, spdlog::level::info, "master.upgrade", {"", {}, 0},
         fmt::format("upgrading forkpool {} to {} ({}, {}); master pid {} and {} worker(s) stay",
                     kVersion, next.version, next.path, trigger, ctx_.pid, ctx_.owners.size()),
         {{"from", kVersion}, {"to", next.version}, {"binary", next.path}, {"trigger", trigger}});
  systemd_->reloading();
  // The first line now; the reply stays owed, for the second line if execve fails.
  if (ControlClient* client = reply.client())
    client->reply({{"ok", true},
                   {"upgrading", true},
                   {"from", kVersion},
                   {"to", next.version},
                   {"binary", next.path},
                   {"pid", ctx_.pid},
                   {"upgrades", upgrades_}});
  const std::string error =
      upgrade::exec_new_image(next.path, generation_->config().file, memfd.get(), fds.fds());

  // Still here: the exec failed and this image runs on, unchanged.
  systemd_->reloaded();
  report(
      ctx_, spdlog::level::err, "master.upgrade_failed", {"", {}, 0},
      fmt::format("binary upgrade ({}) failed, the running master carries on: {}", trigger, error),
      {{"error", error}, {"trigger", trigger}});
  reply.reply({{"ok", false}, {"error", "upgrade failed, the running master carries on: " + error}});
}

json Master::export_state(upgrade::FdList& fds) const {
  json slot_fds = json::array();
  std::vector<bool> slots_used, pools_used;
  for (std::uint32_t i = 0; i < scoreboard_->slots_paged(); ++i)
    if (scoreboard_->slot_fd(i) >= 0)
      slot_fds.push_back({{"slot", i}, {"fd", fds.add(scoreboard_->slot_fd(i))}});
  for (std::uint32_t i = 0; i < scoreboard_->slot_count(); ++i)
    slots_used.push_back(scoreboard_->slot_used(i));
  for (std::uint32_t i = 0; i < scoreboard_->pool_count(); ++i)
    pools_used.push_back(scoreboard_->pool_used(i));
  json pools = json::array();
  for (const auto& pool : generation_->pools()) pools.push_back(pool->export_state(fds));
  return {{"binary", binary_},
          {"version", kVersion},
          {"config_file", generation_->config().file.string()},
          {"generation", generation_->number()},
          {"started_mono", upgrade::to_ns(started_)},
          {"upgrades", upgrades_ + 1},
          {"last_upgrade_realtime", unix_now()},
          {"idle_clock", ctx_.idle_clock},
          {"scoreboard",
           {{"region_fd", fds.add(scoreboard_->region_fd())},
            {"slot_fds", std::move(slot_fds)},
            {"slots_used", slots_used},
            {"pools_used", pools_used}}},
          {"listeners", generation_->listeners().export_state(fds)},
          {"control_fd", control_ ? fds.add(control_->listening_fd()) : -1},
          {"control_file",
           control_ && control_->socket_file().known
               ? json{{"dev", control_->socket_file().dev}, {"ino", control_->socket_file().ino}}
               : json()},
          {"metrics_fd", metrics_http_ ? fds.add(metrics_http_->listening_fd()) : -1},
          {"pools", std::move(pools)}};
}

Master::Master(config::Config config, const json& state) : cleanup_(loop_.get()) {
  prepare_process();
  adopted_ = true;
  auto shared = std::make_shared<const config::Config>(std::move(config));
  upgrade::AdoptedFds fds;

  const json& sb = need(state, "scoreboard");
  std::vector<base::OwnedFd> slot_fds;
  for (const auto& e : need(sb, "slot_fds")) {
    const auto slot = need(e, "slot").get<std::uint32_t>();
    if (slot >= shm::kMaxSlots)
      throw upgrade::StateError("upgrade state: slot " + std::to_string(slot));
    if (slot_fds.size() <= slot) slot_fds.resize(slot + 1);
    slot_fds[slot] = fds.claim(need(e, "fd"), upgrade::FdKind::Memory,
                               "scoreboard page of slot " + std::to_string(slot));
  }
  scoreboard_ = std::make_unique<shm::Scoreboard>(shm::Scoreboard::adopt(
      fds.claim(need(sb, "region_fd"), upgrade::FdKind::Memory, "scoreboard"), std::move(slot_fds),
      need(sb, "slots_used").get<std::vector<bool>>(),
      need(sb, "pools_used").get<std::vector<bool>>()));
  ctx_.scoreboard = scoreboard_.get();
  ctx_.changed = [this] { on_changed(); };
  ctx_.idle_clock = state.value("idle_clock", std::uint64_t{0});

  generation_ =
      std::make_unique<Generation>(need(state, "generation").get<unsigned>(), shared,
                                   ListenerSet::adopt(*shared, need(state, "listeners"), fds));
  const json& pools = need(state, "pools");
  if (pools.size() != shared->pools.size())
    throw upgrade::StateError("upgrade state: " + std::to_string(pools.size()) +
                              " pools, the configuration has " +
                              std::to_string(shared->pools.size()));
  for (const auto& pool : shared->pools) {
    auto it = std::find_if(pools.begin(), pools.end(),
                           [&](const json& p) { return p.value("name", "") == pool.name; });
    if (it == pools.end()) throw upgrade::StateError("upgrade state: no pool " + pool.name);
    generation_->pools().push_back(std::make_unique<Pool>(
        ctx_, generation_->pool_config(pool), generation_->listeners().for_pool(pool), *it, fds));
  }

  const auto handler = [this](ControlClient& c, const json& r) { run_command(*this, c, r); };
  if (state.value("control_fd", -1) >= 0) {
    // Optional (older images leave it out): the control socket file the first image bound.
    base::SocketFile file;
    if (const auto f = state.find("control_file"); f != state.end() && f->is_object())
      file = base::SocketFile::from(f->value("dev", std::uint64_t{0}), f->value("ino", std::uint64_t{0}));
    control_ = std::make_unique<ControlServer>(
        loop_.get(), supervisor_config(), handler,
        fds.claim(state["control_fd"], upgrade::FdKind::Listener, "control socket").release(), file);
  }
  if (state.value("metrics_fd", -1) >= 0) {
    metrics_http_ = std::make_unique<MetricsHttpServer>(
        loop_.get(),
        fds.claim(state["metrics_fd"], upgrade::FdKind::Listener, "metrics socket").release(),
        [this](std::string_view path) { return serve_http(path); });
  }
  binary_ = state.value("binary", "");
  if (binary_.empty()) binary_ = upgrade::own_binary_path();
  upgrades_ = need(state, "upgrades").get<unsigned>();
  last_upgrade_ = state.value("last_upgrade_realtime", 0.0);
  started_ = upgrade::from_ns(need(state, "started_mono").get<std::int64_t>());
  wire(*shared, true);
}

void Master::resume_after_upgrade() {
  state_ = MasterState::Running;
  for (auto& pool : generation_->pools()) pool->resume_adopted();
  // Workers that exited while no image was listening: SIGCHLD is pending (blocked across
  // the exec) and waitid finds them anyway.
  reap();
  const std::size_t workers = ctx_.owners.size();
  report(
      ctx_, spdlog::level::info, "master.upgraded", {"", {}, 0},
      fmt::format("forkpool {} took over master pid {} with {} worker(s) (upgrade {}); binary {}",
                  kVersion, ctx_.pid, workers, upgrades_,
                  binary_.empty() ? std::string("/proc/self/exe") : binary_),
      {{"version", kVersion}, {"upgrades", upgrades_}, {"workers", workers}});
  on_changed();
  systemd_->ready();
}

}  // namespace forkpool::supervisor
