// SPDX-License-Identifier: Apache-2.0
#pragma once
// Master dispatch for one pool: accepts on the pool's listeners, queues connections
// FIFO, and hands each to the worker chosen by WorkerChoice over its channel.
//
// Every connection is accounted for: accepted = dispatched + queued + queue timeouts +
// closed at shutdown, and dispatched = completed + in flight + lost with a worker.

#include <sys/socket.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "config/config.hpp"
#include "supervisor/generation/listeners.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/uv_handles.hpp"
#include "supervisor/dispatch/descriptor_budget.hpp"
#include "supervisor/dispatch/idle_workers.hpp"
#include "supervisor/dispatch/parked_connections.hpp"
#include "supervisor/dispatch/worker_choice.hpp"
#include "supervisor/observe/log_limiter.hpp"
#include "supervisor/process/worker_process.hpp"
#include "supervisor/upgrade/state_reader.hpp"
#include "supervisor/upgrade/state_writer.hpp"

namespace forkpool::supervisor {

class Dispatcher {
 public:
  // Fills its argument with the processes that may take work, in slot order (into a
  // buffer the dispatcher reuses, so dispatching allocates nothing per connection).
  using WorkerList = std::function<void(std::vector<WorkerProcess*>&)>;

  Dispatcher(MasterContext& ctx, PoolConfigRef pool, std::uint32_t pool_index,
             const std::vector<ListenerRef>& listeners, WorkerList workers);
  ~Dispatcher();

  // Hands queued connections to workers that can take them; call whenever capacity
  // may have appeared (a worker ready, a DONE, a channel writable again).
  void pump();
  // `w`, a worker of this pool, became idle (ready, or its last connection DONE or
  // PARKed): least-busy dispatch picks the most recently idle one from these.
  void worker_idle(WorkerProcess& w);
  void on_done(std::chrono::microseconds held);
  // A worker exited (or was retired) holding `count` connections without DONE.
  void on_lost(std::size_t count);
  // keepalive = "master": a worker handed connection `id` back idle (PARK). The master
  // watches it and queues it again when the client's next request arrives.
  void on_parked(std::uint64_t id, const HeldConnection& held, base::OwnedFd fd, std::uint32_t fd_flags);
  std::size_t parked() const { return parked_ ? parked_->size() : 0; }
  // Stops accepting and closes every queued connection (shutdown).
  void shut();
  // A stopped pool accepts nothing (the kernel backlog holds new connections) and
  // closes what it had queued; a started one accepts again.
  void set_paused(bool paused);
  std::size_t queued() const { return queue_.size(); }
  // Why it cannot accept now ("" when it can, or stopped on purpose): out of descriptors.
  const std::string& accept_paused_reason() const { return paused_reason_; }
  // Called after each batch of accepted connections and each resumed parked one (a
  // dynamic pool sizes itself by its idle workers and the queue).
  void set_accept_hook(std::function<void()> hook) { accept_hook_ = std::move(hook); }
  // Runs whenever what the master holds may have changed (queued, in flight, parked: after
  // each dispatch, DONE, PARK, timeout or close); null: nothing runs.
  void set_held_hook(std::function<void()> hook) { held_hook_ = std::move(hook); }
  // Connections handed out from now on are the last the master holds (FP_FD_LAST): a reload
  // took the pool out of master dispatch, and the worker closes them after answering.
  void set_last_connections(bool last) { last_connections_ = last; }
  // Any connection queued, parked or in flight with a worker (which may park it).
  bool holds_connections() const { return !queue_.empty() || parked() > 0 || in_flight_ > 0; }
  // Closes every queued connection now (counted closed): nobody will take them.
  void close_queued(const char* why) { close_queue(why); }
  // Closes every parked connection now: no worker of the pool reads a channel any more
  // (a reload switched it to shared dispatch).
  void close_parked_connections(const char* why) {
    close_parked(why);
    publish();
  }
  // A reload changed master-side settings (queue limits, balance...): they apply from now.
  void set_config(PoolConfigRef pool);
  // A reload changed the pool's listeners: accept on these from now (none: accept
  // nothing, as for a pool that is removed and drains what it has queued).
  void set_listeners(const std::vector<ListenerRef>& listeners);

  // A binary upgrade (dispatcher_state.cpp): the queue (each connection's descriptor goes
  // into `fds`), the next connection id and the count in flight; and the same taken over
  // by the new image's dispatcher of the pool, before anything was accepted.
  nlohmann::json export_state(upgrade::FdList& fds) const;
  void adopt_state(const nlohmann::json& state, upgrade::AdoptedFds& fds);

 private:
  struct Pending {
    OwnedFd fd;
    std::uint16_t listener;
    std::uint64_t id;
    Clock::time_point accepted;
    sockaddr_storage peer;
    socklen_t peer_len;
    std::uint32_t fd_flags = 0;  // FP_FD_* known of `fd` (accepted here: non-blocking, TCP_NODELAY)
  };

  void accept_from(std::size_t listener);
  // TCP_DEFER_ACCEPT on the listeners as keepalive and keepalive_timeout say.
  void defer_accepts();
  // Hands queued connections to workers while one can take them; pump() is this plus the
  // scoreboard, the queue timer and whether to accept.
  void dispatch_queued();
  void update_accepting();
  void expire_queue();
  void arm_queue_timer();
  void publish();
  void close_queue(const char* why);
  // The access log line of a connection closed without being handed to a worker.
  void log_unserved(const Pending& p, access_log::Outcome outcome) const;
  // `system_wide`: the kernel's tables or memory ran short (ENFILE, ENOMEM, ENOBUFS), which
  // only other processes free; otherwise this master's own descriptors did.
  void pause_for_descriptors(const std::string& why, bool system_wide);
  void resume();
  bool descriptors_short();
  bool has_capacity();
  // The pool's workers as the WorkerList gives them, and the idle ones, rebuilt only when
  // a worker was made, destroyed, changed phase or settings (MasterContext::workers_epoch)
  // or `workers_stale_` was set.
  void refresh_workers() {
    if (workers_stale_ || workers_epoch_ != ctx_.workers_epoch) rebuild_workers();
  }
  void rebuild_workers();
  // Who gets the next connection (WorkerChoice's rule), or nullptr if nobody can take it.
  WorkerProcess* choose();
  ParkedConnections& parked_connections();  // made on the first PARK
  void resume_parked(ParkedConnections::Connection c);
  void parked_closed(const ParkedConnections::Connection& c, ParkedConnections::Ending why);
  void close_parked(const char* why);

  MasterContext& ctx_;
  PoolConfigRef pool_;
  std::uint32_t index_;
  WorkerList list_workers_;
  std::function<void()> accept_hook_;
  std::function<void()> held_hook_;
  bool last_connections_ = false;
  WorkerChoice choice_;
  std::vector<ListenerRef> listeners_;  // what set_listeners was given (TCP_DEFER_ACCEPT)
  std::vector<int> listener_fds_;
  std::vector<std::uint32_t> listener_nodelay_;  // per listener: FP_FD_NODELAY if its TCP_NODELAY is set
  std::vector<std::unique_ptr<FdWatch>> accept_watches_;
  bool accepting_ = false;
  bool shut_ = false;
  bool paused_ = false;
  std::deque<Pending> queue_;
  std::unique_ptr<ParkedConnections> parked_;
  std::vector<WorkerProcess*> workers_;       // cached WorkerList, see refresh_workers
  std::uint64_t workers_epoch_ = 0;
  bool workers_stale_ = true;
  IdleWorkers<WorkerProcess> idle_;
  // The last look at every worker found none that takes work, and nothing since could
  // have changed that: a worker takes work again only after a DONE or PARK (on_done,
  // on_parked) or an event that moves the epoch. Saves a saturated pool that look at each
  // accept.
  bool none_accepts_ = false;
  std::uint64_t next_id_ = 0;
  bool accept_nonblocking_ = false;  // every ready worker asked for it in READY (refresh_workers)
  std::uint64_t in_flight_ = 0;
  Timer queue_timer_;
  Clock::time_point queue_timer_due_{};  // the deadline queue_timer_ was armed for
  Timer emfile_pause_;           // try again after a pause (system-wide), or look now and then
  // Own shortage: look again after every loop turn that handled an event (a descriptor
  // is freed only by the master's own code, which runs in such a turn: no polling).
  AfterEachTurn freed_;
  std::string paused_reason_;    // non-empty while accepting waits for descriptors
  bool emfile_episode_ = false;
  bool episode_logged_ = false;  // its pause was logged: so is its resume
  // One episode logged in full per 10 s; the others are counted and summed up in one line
  // at the end of the window (a master at the edge of its reserve pauses every few
  // connections, thousands of times a second).
  std::unique_ptr<log::RepeatedWarning> pause_log_;
  int fd_limit_ = 0;  // RLIMIT_NOFILE (soft) of the master
};

}  // namespace forkpool::supervisor
