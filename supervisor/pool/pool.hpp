// SPDX-License-Identifier: Apache-2.0
#pragma once
// One pool: its slots, the policy that keeps them filled (backoff, flapping, EX_CONFIG),
// replacements that take over before the worker they replace stops (recycling, rolling
// restart, reload), and its lifecycle (starting, running, stopping, stopped, failed).
//
// A pool outlives configuration generations: a reload hands it its new configuration
// (reconfigure), and it either applies the change to its running workers or replaces
// them, by generation, in a rolling restart.

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/diff.hpp"
#include "shm/pool_state.hpp"
#include "supervisor/dispatch/dispatcher.hpp"
#include "supervisor/dispatch/listener_watch.hpp"
#include "supervisor/generation/listeners.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/observe/status_model.hpp"
#include "supervisor/pool/pool_sizing.hpp"
#include "supervisor/pool/respawn_policy.hpp"
#include "supervisor/process/exit_status.hpp"
#include "supervisor/process/worker_process.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

// The most workers one pool may have (config's own limit for `workers`).
inline constexpr int kMaxPoolWorkers = 4096;

// How far scale and TTIN may take a pool: its configured size (max_workers for a dynamic
// pool) + max(4, size / 4). The scoreboard is sized for that many workers and a
// replacement beside each (master.cpp, slots_wanted), so the ceiling does not depend on
// what other pools hold; docs/operations.md promises it.
int pool_ceiling(const config::PoolConfig& pool);

// A fixed pool starts this many workers at once, then the rest kStartBatch at a time on
// later loop turns (Pool::start_batch): the first ones are ready and serving while the
// others are still being forked (docs/performance.md, start-up).
inline constexpr int kFirstStartBatch = 2;
inline constexpr int kStartBatch = 16;
// Shared dispatch: how often max_requests is looked at (the master sees no connection of
// these workers; their scoreboard pages count them).
inline constexpr std::chrono::milliseconds kSharedRecyclingCheck{1000};

class Pool {
 public:
  // Takes a scoreboard block named after the pool; throws std::runtime_error when the
  // scoreboard has no free block. Nothing is started yet.
  Pool(MasterContext& ctx, PoolConfigRef config, unsigned generation, std::vector<ListenerRef> listeners);
  // A binary upgrade (pool_handover.cpp): the pool as the previous image ran it, its
  // scoreboard block, target, state, rolling restart, workers and queue. Throws
  // upgrade::StateError. Call resume_adopted() once every pool is built.
  Pool(MasterContext& ctx, PoolConfigRef config, std::vector<ListenerRef> listeners, const nlohmann::json& state,
       upgrade::AdoptedFds& fds);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const std::string& name() const { return config_->name; }
  const config::PoolConfig& config() const { return *config_; }
  shm::PoolState state() const { return state_; }
  std::uint32_t index() const { return index_; }
  unsigned generation() const { return generation_; }
  int target() const { return target_; }
  // The worker numbers the pool wants now, in order (0..target-1 for a fixed pool; a dynamic
  // pool that retired some may have gaps).
  std::vector<unsigned> worker_numbers() const;
  // The most workers it may scale to now: its pool_ceiling, and no more than the
  // scoreboard holds with a replacement beside each (a rolling restart).
  int max_size() const;
  int live() const;         // worker processes not yet reaped, replacements and retiring included
  int ready_count() const;  // serving workers that are ready
  // Every wanted worker is ready, or the pool will not get there (failed, stopped).
  bool settled() const;
  // Removed by a reload, draining; destroyed once it has stopped.
  bool removed() const { return removed_; }
  const std::vector<ListenerRef>& listeners() const { return listeners_; }
  // A reload moves listeners: stops watching them (accepts, demand) until the pool is
  // given its new ones, so another pool may watch them first.
  void release_listener_watches();
  // Why the master cannot accept for it now ("" if it can, or does not accept).
  std::string accept_paused_reason() const { return dispatcher_ ? dispatcher_->accept_paused_reason() : std::string(); }
  // The pool and each of its processes as status shows them (pool_status.cpp).
  PoolStatus status() const;

  void start();
  // --- Dynamic pools (pool_scale.cpp; SPEC section 3a) ---
  bool dynamic() const { return config_->dynamic; }
  // The bounds of its size: min_workers..max_workers, or the fixed size twice.
  int min_workers() const { return config_->dynamic ? config_->min_workers : target_; }
  int max_workers() const { return config_->dynamic ? config_->max_workers : target_; }
  // Why the size last changed ("" if it never did), e.g. "up from 2 to 8: connections waiting".
  const std::string& last_scale() const { return last_scale_; }
  // Moves a dynamic pool's target to `n` (the operator: scale, TTIN, TTOU). Returns an error
  // text, "" when done: `n` must lie within min_workers..max_workers.
  std::string scale_dynamic(int n);
  // Looks at the counts and grows or arms the idle timer: on every event that moves them.
  void rescale();
  // Stops every worker: gracefully (stop_signal, then SIGKILL after graceful_timeout),
  // or at once with SIGKILL when `fast`. No respawning afterwards.
  void stop(bool fast);
  // The new number of workers. False if out of range.
  bool resize(int target);
  // Starts a replacement for worker `worker` (all when nullopt) that takes over once ready.
  void replace(std::optional<unsigned> worker, std::string_view why);
  bool owns(pid_t pid) const;
  void handle_exit(pid_t pid, int wait_status);
  // Stops accepting and lets go of the listeners (at shutdown).
  void close_listeners();
  // Sends `signo` to a serving worker; false if there is none.
  bool signal_worker(unsigned worker, int signo);

  // --- Binary upgrade (pool_handover.cpp) ---
  // What the new image needs to adopt the pool; descriptors go into `fds`.
  nlohmann::json export_state(upgrade::FdList& fds) const;
  // Watches the adopted workers, re-arms timers and respawns from their deadlines, and
  // goes on with a rolling restart and the queue.
  void resume_adopted();

  // --- Reload (pool_reload.cpp) ---
  // The configuration of generation `generation`: `change` says whether the running
  // workers adopt it (InPlace) or are replaced by new ones started with it (Replace).
  void reconfigure(PoolConfigRef config, unsigned generation, std::vector<ListenerRef> listeners,
                   config::PoolChange change);
  // An unchanged pool takes the new generation's copy of its (equal) configuration.
  void keep(PoolConfigRef config, std::vector<ListenerRef> listeners);
  // Removed from the configuration: accepts nothing more, hands what it queued to its
  // workers, then stops them gracefully.
  void retire();

 private:
  struct Slot;

  Slot& slot_at(unsigned index);
  WorkerEvents worker_events(Slot& slot, const std::shared_ptr<WorkerProcess*>& self);
  void handle_exit_of(pid_t pid, int wait_status);
  // With the pool's settings and generation, or those given (a slot's respawn_config).
  std::unique_ptr<WorkerProcess> launch(Slot& slot);
  std::unique_ptr<WorkerProcess> launch(Slot& slot, PoolConfigRef settings, unsigned generation);
  // launch in two steps: fork (the child execs on its own), then wait for the exec and
  // account for the worker. finish_launch throws SpawnFailure with `p` destroyed.
  std::unique_ptr<WorkerProcess> begin_launch(Slot& slot);
  std::unique_ptr<WorkerProcess> begin_launch(Slot& slot, PoolConfigRef settings, unsigned generation);
  void finish_launch(Slot& slot, std::unique_ptr<WorkerProcess>& p);
  // A worker's max_requests: the setting plus its random jitter (0: never recycled).
  std::uint64_t recycle_limit();
  // spawn() for several slots: every child is forked first, then each exec is awaited, so
  // the children exec side by side instead of one after the other. Skips slots that have
  // a worker or a respawn scheduled.
  void spawn_batch(const std::vector<Slot*>& slots);
  // A fixed pool's start: the first kFirstStartBatch workers at once, the rest in batches
  // of kStartBatch on later loop turns, so that the first ones serve meanwhile.
  void start_batch(int count);
  std::unique_ptr<WorkerProcess> adopt_worker(Slot& slot, const nlohmann::json& state, upgrade::AdoptedFds& fds);
  void spawn(Slot& slot);
  void spawn_replacement(Slot& slot);
  // A replacement that could not be started, or exited before it was ready, is tried again
  // after `delay` on the slot's restart_timer (a reload's: through continue_rolling).
  void retry_replacement(Slot& slot, std::chrono::milliseconds delay);
  void promote(Slot& slot);
  // A reload made the slot's starting replacement obsolete: killed, kept in `retiring`
  // until reaped (pool_reload.cpp).
  void drop_replacement(Slot& slot);
  void schedule_respawn(Slot& slot, std::chrono::milliseconds delay);
  // `streak_over`: the slot's starts in a row that came to nothing exceed flap_restarts.
  // `started`: the worker had started (ready, up kStartupGrace or more): a first crash in a row is restarted at once.
  // `broken`: stopped by the pool as broken: its run, however long, does not reset the backoff.
  void after_unplanned_exit(Slot& slot, std::chrono::milliseconds uptime, bool counts_as_flap, bool streak_over,
                            bool started, bool broken);
  // A start of `slot` failed (fork, exec or a set-up step); `replacement`: of a replacement.
  // False when the pool failed because of it.
  bool after_spawn_failure(Slot& slot, const SpawnFailure& e, bool replacement);
  // Fails the pool because `slot`'s starts in a row came to nothing.
  void fail_starts(const Slot& slot);
  void kill_worker(WorkerProcess& p, std::string_view why);
  // A worker that broke the protocol (closed its channel, sent garbage): stopped and, once
  // it exits, started again as after a crash.
  void stop_broken(Slot& slot, WorkerProcess& p, std::string_view why);
  void set_state(shm::PoolState state);
  void fail(const std::string& why);
  void update_running();
  void sample_memory();
  void arm_memory_sampler();
  // Shared dispatch (pool_shared_recycling.cpp): max_requests from the connections each
  // worker counts on its scoreboard page, looked at every kSharedRecyclingCheck while set.
  void arm_shared_recycling();
  void recycle_shared_workers();
  void continue_rolling();
  bool start_replacement(Slot& slot);  // true if one started (or already took over)
  bool outdated(const WorkerProcess& p) const;
  void dispatch_candidates(std::vector<WorkerProcess*>& out) const;
  // `adopting`: a binary upgrade took the listeners over as the workers use them (a
  // shared listener's blocking mode is theirs to keep: they may have changed it).
  void update_dispatcher(bool adopting = false);
  // The pool's dispatcher, accepting on its listeners or on none.
  void make_dispatcher(bool accepting);
  // Who accepts follows who is ready (docs/master.md, "A reload that switches dispatch"):
  // whether the master accepts for the pool now. `self_acceptor_starting`: a worker that
  // accepts by itself is about to be started (its listener must be the workers' first).
  bool master_accepts(bool self_acceptor_starting) const;
  // A worker that reads its channel is ready (a queue drainer not included).
  bool master_worker_ready() const;
  // A process of the pool that accepts by itself has not been reaped (stopping included).
  bool self_acceptor_alive() const;
  // Every listener of the pool has O_NONBLOCK now.
  bool listeners_nonblocking() const;
  // Starts or stops the master's accepting as master_accepts says; with shared dispatch
  // now, also gives the listeners back and, once no worker reads a channel, closes the
  // parked connections.
  void update_master_accepting(bool self_acceptor_starting = false, bool adopting = false);
  // The last worker that reads its channel stays for what the master holds (promote).
  void start_draining(WorkerProcess* old);
  // The master holds nothing more for it (or graceful_timeout passed): the drainers stop.
  void finish_draining(bool deadline);
  void end_draining();
  // Whether the master passes this worker its connections (and so knows what it holds).
  // After a reload from master to shared dispatch, older workers still are until they
  // are replaced; the newer ones accept by themselves and report on the scoreboard.
  bool master_dispatched(const WorkerProcess& p) const;
  // Whether the worker accepts by itself (shared dispatch): only its scoreboard page says
  // whether it is busy.
  static bool accepts_itself(const WorkerProcess& p);
  void maybe_finish_retiring();
  std::uint32_t acquire_scoreboard_slot(unsigned worker);
  // Fixed sizing: slots 0..target-1 are wanted, the rest not.
  void want_first(int target);
  // --- Dynamic pools (pool_scale.cpp) ---
  SizingCounts sizing_counts();
  void grow(int n, ScaleReason reason, const SizingCounts& before);
  // Retires `n` workers (idle ones first, the longest idle first) through the normal drain.
  void shrink(int n, ScaleReason reason, const SizingCounts& before);
  void retire_slot(Slot& slot);
  Slot* longest_idle();
  // When idle_timeout starts counting for `s`: its idle_since, or the operator's latest
  // scale if that came later.
  Clock::time_point idle_from(const Slot& s) const;
  void retire_idle();
  void arm_idle_timer(const SizingCounts& c);
  void watch_demand(const SizingCounts& c);
  void note_scale(int from, ScaleReason reason, const SizingCounts& c);
  // The target and its bounds into the scoreboard (top reads them there).
  void publish_size();
  // A reload moved min/max: the target moves inside them.
  void apply_bounds();
  void stop_scaling();

  MasterContext& ctx_;
  PoolConfigRef config_;
  std::uint32_t index_;
  std::vector<ListenerRef> listeners_;
  std::vector<std::unique_ptr<Slot>> slots_;
  int target_;
  shm::PoolState state_ = shm::PoolState::Stopped;
  FlapDetector flap_;
  unsigned spawn_failures_ = 0;  // non-transient spawn failures in a row, any slot
  unsigned generation_;         // of the configuration the pool runs
  unsigned worker_generation_;  // workers started before this one run outdated settings
  bool removed_ = false;
  std::unique_ptr<Dispatcher> dispatcher_;
  // A reload to shared dispatch replaced the last worker that reads its channel while the
  // master still held connections (queued, parked, in flight): it stays (in its slot's
  // `retiring`), serving them, until the master holds none or graceful_timeout passed.
  std::vector<WorkerProcess*> queue_drainers_;
  std::vector<WorkerProcess*> adopted_drainers_;  // a binary upgrade: drainers until resume_adopted
  Timer drained_;         // finish_draining, on the loop turn after what the master holds changed
  Timer drain_deadline_;  // finish_draining at graceful_timeout
  std::unique_ptr<Timer> memory_sampler_;
  std::unique_ptr<Timer> shared_recycling_;  // arm_shared_recycling
  std::deque<unsigned> rolling_;  // workers still to be replaced by a rolling restart
  std::string rolling_reason_;
  std::string last_exit_line_;  // the latest unplanned exit, as logged; "" after a failed start
  std::string failed_reason_;   // why the pool is failed, with the exit that failed it
  Timer rolling_next_;  // the next batch starts on a later loop turn, never recursively
  Timer start_next_;    // a fixed pool's start: the next batch of workers (start_batch)
  // Dynamic pools. No timer runs at rest: idle_timer_ only while a worker above the minimum
  // is idle, spawn_retry_ only while the spawn rate holds back needed workers, and (shared
  // dispatch) demand_sample_ only while a worker is busy or a connection waits; otherwise the
  // listeners are watched for readability instead (demand_watch_).
  SpawnRate spawn_rate_;
  std::string last_scale_;
  bool rescaling_ = false;
  bool listener_readable_ = false;  // shared dispatch: sizing from a listener's wake-up
  // The latest scale or TTIN/TTOU: idleness before it does not count towards idle_timeout,
  // or the workers idle at a scale-up would be retired at once, undoing it.
  Clock::time_point operator_scaled_at_{};
  Timer idle_timer_;
  Timer spawn_retry_;
  Timer demand_sample_;
  std::unique_ptr<ListenerWatch> demand_watch_;
};

}  // namespace forkpool::supervisor
