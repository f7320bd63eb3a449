#pragma once
// One pool: its slots, the policy that keeps them filled (backoff, flapping, EX_CONFIG),
// and its lifecycle (starting, running, stopping, stopped, failed).

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "shm/pool_state.hpp"
#include "supervisor/exit_status.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/respawn_policy.hpp"
#include "supervisor/uv_handles.hpp"
#include "supervisor/worker_process.hpp"

namespace forkpool::supervisor {

class Pool {
 public:
  Pool(MasterContext& ctx, config::PoolConfig config, std::uint32_t index, std::uint32_t first_slot,
       std::uint32_t capacity, std::vector<Listener> listeners);
  ~Pool();

  const std::string& name() const { return config_.name; }
  const config::PoolConfig& config() const { return config_; }
  shm::PoolState state() const { return state_; }
  int target() const { return target_; }
  std::uint32_t capacity() const { return static_cast<std::uint32_t>(slots_.size()); }
  int live() const;         // worker processes not yet reaped
  int ready_count() const;  // of those, ready and not stopping
  // Every wanted worker is ready, or the pool will not get there (failed, stopped).
  bool settled() const;
  const std::vector<Listener>& listeners() const { return listeners_; }

  void start();
  // Stops every worker: gracefully (stop_signal, then SIGKILL after graceful_timeout),
  // or at once with SIGKILL when `fast`. No respawning afterwards.
  void stop(bool fast);
  // Fixed pools: the new number of workers. False if beyond the pool's capacity.
  bool resize(int target);
  void handle_exit(pid_t pid, int wait_status);
  // Closes the master's copies of the listeners (at shutdown).
  void close_listeners();

 private:
  struct Slot;

  void spawn(Slot& slot);
  void schedule_respawn(Slot& slot, std::chrono::milliseconds delay);
  void after_unplanned_exit(Slot& slot, ExitReason reason, std::chrono::milliseconds uptime);
  void kill_worker(Slot& slot, std::string_view why);
  void set_state(shm::PoolState state);
  void fail(const std::string& why);
  void update_running();
  Slot* find(pid_t pid);

  MasterContext& ctx_;
  config::PoolConfig config_;
  std::uint32_t index_;
  std::vector<Listener> listeners_;
  std::vector<std::unique_ptr<Slot>> slots_;
  int target_;
  shm::PoolState state_ = shm::PoolState::Stopped;
  FlapDetector flap_;
  unsigned generation_ = 1;
};

}  // namespace forkpool::supervisor
