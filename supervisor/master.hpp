#pragma once
// The master: wires listeners, scoreboard, pools, signals and systemd together and runs
// the loop. Policy lives in Pool; this file only routes events.

#include <uv.h>

#include <memory>
#include <vector>

#include "config/config.hpp"
#include "shm/scoreboard.hpp"
#include "supervisor/control/control_commands.hpp"
#include "supervisor/control/control_server.hpp"
#include "supervisor/observe/metrics_http.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/systemd_notify.hpp"
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

 private:
  void on_signal(int signo);
  void reap();
  void shutdown(bool fast);
  void on_changed();
  void resize_fixed_pools(int delta);
  std::string status_line() const;
  MetricsHttpServer::Response serve_http(std::string_view path);

  Loop loop_;  // first member: destroyed last
  config::Config config_;
  std::unique_ptr<shm::Scoreboard> scoreboard_;
  MasterContext ctx_;
  std::vector<std::unique_ptr<Pool>> pools_;
  std::vector<std::unique_ptr<SignalWatch>> signals_;
  std::unique_ptr<SystemdNotify> systemd_;
  std::unique_ptr<Timer> shutdown_deadline_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  Clock::time_point started_ = Clock::now();
  MasterState state_ = MasterState::Starting;
  bool launching_ = false;  // pools are being started one after another
  shm::OwnedFd dev_null_;
};

}  // namespace forkpool::supervisor
