#pragma once
// One pool: its slots, the policy that keeps them filled (backoff, flapping, EX_CONFIG),
// replacements that take over before the worker they replace stops (recycling, rolling
// restart), and its lifecycle (starting, running, stopping, stopped, failed).

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "shm/pool_state.hpp"
#include "supervisor/dispatch/dispatcher.hpp"
#include "supervisor/process/exit_status.hpp"
#include "supervisor/generation/listeners.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/pool/respawn_policy.hpp"
#include "supervisor/observe/status_model.hpp"
#include "supervisor/uv_handles.hpp"
#include "supervisor/process/worker_process.hpp"

namespace forkpool::supervisor {

class Pool {
 public:
  Pool(MasterContext& ctx, config::PoolConfig config, std::uint32_t index, std::uint32_t first_slot,
       std::uint32_t capacity, std::vector<Listener> listeners);
  ~Pool();

  const std::string& name() const { return config_.name; }
  const config::PoolConfig& config() const { return config_; }
  shm::PoolState state() const { return state_; }
  std::uint32_t index() const { return index_; }
  int target() const { return target_; }
  int max_size() const { return static_cast<int>(slots_.size()); }
  int live() const;         // worker processes not yet reaped, replacements and retiring included
  int ready_count() const;  // serving workers that are ready
  // Every wanted worker is ready, or the pool will not get there (failed, stopped).
  bool settled() const;
  const std::vector<Listener>& listeners() const { return listeners_; }
  // The pool and each of its processes as status shows them (pool_status.cpp).
  PoolStatus status() const;

  void start();
  // Stops every worker: gracefully (stop_signal, then SIGKILL after graceful_timeout),
  // or at once with SIGKILL when `fast`. No respawning afterwards.
  void stop(bool fast);
  // The new number of workers. False if beyond the pool's capacity.
  bool resize(int target);
  // Starts a replacement for worker `worker` (all when nullopt) that takes over once ready.
  void replace(std::optional<unsigned> worker, std::string_view why);
  bool owns(pid_t pid) const;
  void handle_exit(pid_t pid, int wait_status);
  // Stops accepting and closes the master's copies of the listeners (at shutdown).
  void close_listeners();
  // Sends `signo` to a serving worker; false if there is none.
  bool signal_worker(unsigned worker, int signo);

 private:
  struct Slot;

  std::unique_ptr<WorkerProcess> launch(Slot& slot);
  void spawn(Slot& slot);
  void spawn_replacement(Slot& slot);
  void promote(Slot& slot);
  void schedule_respawn(Slot& slot, std::chrono::milliseconds delay);
  void after_unplanned_exit(Slot& slot, std::chrono::milliseconds uptime, bool counts_as_flap = true);
  void kill_worker(WorkerProcess& p, std::string_view why);
  void set_state(shm::PoolState state);
  void fail(const std::string& why);
  void update_running();
  void sample_memory();
  void continue_rolling();
  void dispatch_candidates(std::vector<WorkerProcess*>& out) const;
  std::uint32_t acquire_scoreboard_slot(unsigned preferred);

  MasterContext& ctx_;
  config::PoolConfig config_;
  std::uint32_t index_;
  std::uint32_t first_slot_;
  std::vector<Listener> listeners_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<bool> scoreboard_slot_used_;
  int target_;
  shm::PoolState state_ = shm::PoolState::Stopped;
  FlapDetector flap_;
  unsigned generation_ = 1;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<Timer> memory_sampler_;
  std::deque<unsigned> rolling_;  // workers still to be replaced by a rolling restart
  std::string rolling_reason_;
  Timer rolling_next_;  // the next batch starts on a later loop turn, never recursively
};

}  // namespace forkpool::supervisor
