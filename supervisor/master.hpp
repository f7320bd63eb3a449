// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master: wires the current configuration generation, the scoreboard, signals,
// systemd and the control and metrics sockets together and runs the loop. Policy lives
// in Pool and in generation/reload; this file routes events.
//
// What the master owns (docs/master.md draws it):
//   Generation (current): Config, ListenerSet, Pools   -- replaced whole on reload
//   removed pools: draining after a reload dropped them, destroyed once stopped
//   Scoreboard, ControlServer(s), MetricsHttpServer, SystemdNotify, signal watches

#include <uv.h>

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "config/config.hpp"
#include "shm/scoreboard.hpp"
#include "supervisor/control/control_commands.hpp"
#include "supervisor/control/control_server.hpp"
#include "supervisor/generation/generation.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/observe/access_log.hpp"
#include "supervisor/observe/metrics_http.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/signal_queue.hpp"
#include "supervisor/systemd_notify.hpp"
#include "supervisor/upgrade/preflight.hpp"
#include "supervisor/upgrade/state_writer.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

enum class MasterState { Starting, Running, Stopping };

// The libuv loop, closed after every handle on it (members declared later) is gone.
class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  uv_loop_t* get() { return &loop_; }

 private:
  uv_loop_t loop_{};
};

class Master final : public ControlTarget {
 public:
  // Binds every listener and creates the scoreboard; throws std::runtime_error with a
  // message naming what failed. Nothing is spawned yet.
  explicit Master(config::Config config);
  // A binary upgrade (master_upgrade.cpp): takes over what the previous image described
  // in `state` (docs/upgrade.md). Throws upgrade::StateError or std::runtime_error.
  Master(config::Config config, const nlohmann::json& state);
  ~Master() override;
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  // Starts the pools and runs until shut down; returns the exit code.
  int run();

  // ControlTarget
  StatusModel status_model() override;
  Pool* find_pool(std::string_view name) override;
  std::vector<std::string> pool_names() const override;
  void request_shutdown() override { shutdown(false); }
  std::vector<shm::OwnedFd> scoreboard_fds(nlohmann::json& info) override;
  nlohmann::json reload(std::string_view trigger) override;
  void upgrade(std::string_view trigger, ControlClient* client) override;

 private:
  // The [supervisor] part of a reload: what must be bound or opened first (and can
  // fail), then swapped in once the pools are committed.
  struct SupervisorSwap {
    std::unique_ptr<ControlServer> control;
    bool control_access = false;  // same socket path, new mode or group
    std::unique_ptr<MetricsHttpServer> metrics;
    bool metrics_changed = false;
    bool log_changed = false;
    bool level_changed = false;
    std::optional<access_log::Opened> access_log;  // access_log or its format changed
  };
  SupervisorSwap prepare_supervisor(const config::SupervisorConfig& next, const config::ConfigDiff& diff);
  void commit_supervisor(const config::SupervisorConfig& next, SupervisorSwap swap);
  std::unique_ptr<ControlServer> make_control_server(const config::SupervisorConfig& s);
  std::unique_ptr<MetricsHttpServer> make_metrics_server(const config::SupervisorConfig& s);

  template <typename F>
  void for_each_pool(F&& f) {
    for (auto& pool : generation_->pools()) f(*pool);
    for (auto& pool : removed_pools_) f(*pool);
  }
  const config::SupervisorConfig& supervisor_config() const { return generation_->config().supervisor; }
  // What both constructors share: the process set-up first, the wiring last.
  void prepare_process();
  // `adopting`: after a binary upgrade, with the workers running (their descriptors open).
  void wire(const config::Config& config, bool adopting);
  // The state of this image for the next one (master_upgrade.cpp).
  nlohmann::json export_state(upgrade::FdList& fds) const;
  void resume_after_upgrade();
  // The new binary was checked (or refused): hand over, or say why not.
  void continue_upgrade(upgrade::Preflight::Outcome outcome);
  // Stops the checks of an upgrade in progress and refuses it with `why`.
  void abandon_upgrade(const std::string& why);
  // Logs and reports the refusal; returns the reply for the client that asked.
  nlohmann::json refuse_upgrade(std::string_view trigger, const std::string& why);
  void on_signal(int signo);
  void reap();
  // SIGKILLs every child that is not a worker (orphans re-parented to the master);
  // returns how many there were.
  int kill_orphans();
  void shutdown(bool fast);
  void on_changed();
  void drop_stopped_removed_pools();
  void resize_fixed_pools(int delta);
  std::string status_line() const;
  MetricsHttpServer::Response serve_http(std::string_view path);

  Loop loop_;  // first member: destroyed last
  std::unique_ptr<shm::Scoreboard> scoreboard_;
  MasterContext ctx_;
  std::unique_ptr<Generation> generation_;
  std::vector<std::unique_ptr<Pool>> removed_pools_;
  std::unique_ptr<SignalQueue> signals_;      // every signal the master reads but SIGCHLD
  std::unique_ptr<SignalWatch> child_signal_;  // SIGCHLD (libuv's own handler)
  std::map<int, Clock::time_point> ignored_signal_logged_;  // when each ignored signal was last logged
  std::unique_ptr<SystemdNotify> systemd_;
  std::unique_ptr<Timer> shutdown_deadline_;
  std::unique_ptr<ControlServer> control_;
  std::vector<std::unique_ptr<ControlServer>> moved_controls_;  // still answering their clients
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  Timer cleanup_;  // destroys drained removed pools on a later loop turn, never inside their calls
  Clock::time_point started_ = Clock::now();
  MasterState state_ = MasterState::Starting;
  bool launching_ = false;  // pools are being started one after another
  // A reload moves the pools to the next generation: until generation_ points there,
  // on_changed() does nothing (the old generation has no pools left).
  bool committing_ = false;
  shm::OwnedFd dev_null_;
  std::string binary_;            // the program to upgrade to: /proc/self/exe at start-up
  unsigned upgrades_ = 0;         // binary upgrades since the first start
  double last_upgrade_ = 0;       // Unix time of the last one, 0 if none
  bool adopted_ = false;          // this image took over from a previous one
  // An upgrade whose new binary is being checked: the runs, who asked and how, and the
  // generation it was asked in (a reload meanwhile refuses it).
  std::unique_ptr<upgrade::Preflight> preflight_;
  std::string upgrade_trigger_;
  DeferredReply upgrade_reply_;
  unsigned upgrade_generation_ = 0;
  Timer upgrade_step_{loop_.get()};  // continues the upgrade on the loop turn after the check
};

}  // namespace forkpool::supervisor
