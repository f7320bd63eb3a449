// SPDX-License-Identifier: Apache-2.0
#pragma once
// One running worker process: spawned with its channel, notify socket and output pipes,
// watched for readiness and watchdog pings, and stopped by a StopPlan. Its lifecycle is
// one WorkerPhase; the master's end of its channel is a WorkerChannel.

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "supervisor/dispatch/worker_channel.hpp"
#include "supervisor/generation/listeners.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/observe/access_log.hpp"
#include "supervisor/process/notify_socket.hpp"
#include "supervisor/process/output_capture.hpp"
#include "supervisor/process/spawner.hpp"
#include "supervisor/process/stop_plan.hpp"
#include "supervisor/process/worker_phase.hpp"
#include "supervisor/process/worker_usage.hpp"
#include "supervisor/upgrade/state_reader.hpp"
#include "supervisor/upgrade/state_writer.hpp"
#include "supervisor/pool/respawn_policy.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

using PoolConfigRef = std::shared_ptr<const config::PoolConfig>;

struct SpawnFailure : std::runtime_error {
  SpawnFailure(const std::string& what, bool is_transient) : std::runtime_error(what), transient(is_transient) {}
  bool transient;  // fork's EAGAIN/ENOMEM: the system, not the program, is at fault
};

struct WorkerEvents {
  std::function<void()> ready;
  // Its readiness is beyond doubt, so it can be announced: just before `ready`, except
  // with ready = "exec", where it comes kExecReadyGrace later, and never if the worker
  // exits or is stopped before (an EX_CONFIG exit then is one "before it was ready").
  std::function<void()> ready_confirmed;
  std::function<void()> ready_timeout;
  std::function<void()> watchdog_missed;
  // Master dispatch: a connection finished (DONE) after `held`; the channel drained.
  std::function<void(std::chrono::microseconds held)> done;
  std::function<void()> writable;
  // A connection has been held longer than request_timeout; `peer` names its client.
  std::function<void(const std::string& peer)> request_timeout;
  // The worker closed its end of the channel, and still runs kChannelClosedGrace later (it
  // can get no more work).
  std::function<void()> channel_closed;
  // The worker keeps breaking the protocol (see kProtocolErrorLimit; once per worker).
  std::function<void()> protocol_errors;
  // One message refused (malformed, or a PARK against the rules): counted per pool.
  std::function<void()> protocol_error;
  // keepalive = "master": the worker handed connection `id` back idle (PARK) with `fd`;
  // `fd_flags`: the FP_FD_* flags the worker's record gave for it.
  std::function<void(std::uint64_t id, const struct HeldConnection& held, base::OwnedFd fd, std::uint32_t fd_flags)>
      parked;
};

// A worker is taken for broken and replaced once it has sent this many malformed channel
// records over at least kProtocolErrorSpan: it keeps doing it. A burst (a library that
// misbehaved once while starting) only costs rate-limited warnings.
// A worker that closed its channel while it runs is broken only if it still runs this long
// after: a program on its way out (a stop signal someone else sent it) closes its channel
// before it exits, and an interpreter's teardown can take seconds on a loaded machine.
inline constexpr std::chrono::seconds kChannelClosedGrace{5};
inline constexpr unsigned kProtocolErrorLimit = 16;
inline constexpr std::chrono::seconds kProtocolErrorSpan{10};
// Records read from a reaped worker's channel at most (a full socket buffer of 16-byte
// records is far fewer).
inline constexpr int kReapReadLimit = 65536;

// A connection handed to this worker and not finished yet.
struct HeldConnection {
  Clock::time_point since;
  Clock::time_point accepted;  // by the master: since - accepted is the time it was queued
  sockaddr_storage peer;
  socklen_t peer_len;
  std::uint16_t listener;  // index into the pool's listeners, as sent in CONN
};

std::string describe_peer(const sockaddr_storage& peer, socklen_t len);

class WorkerProcess {
 public:
  struct Identity {
    unsigned worker;
    unsigned generation;
    std::uint32_t scoreboard_slot;
  };

  // Forks the worker (throws SpawnFailure when that fails) but does not wait for its
  // exec: finish_start() does, so that a pool can fork many workers in a row and let them
  // exec at the same time. `pool` is the configuration the worker is started with; it
  // keeps it (and so its generation's settings) until it exits or adopts newer
  // master-side settings.
  WorkerProcess(MasterContext& ctx, PoolConfigRef pool, Identity id, const std::vector<ListenerRef>& listeners,
                WorkerEvents events);
  // Waits for the exec (throws SpawnFailure when the child could not run the program; it
  // is reaped then), then watches the worker. Called once, before the loop runs again.
  void finish_start();
  // The worker's facts on its output lines in the JSON log (once its pid is known).
  void describe_output();
  // A binary upgrade (worker_process_state.cpp): the process the previous image started,
  // with its channel, notify socket, output pipes, held connections and timers as
  // export_state described them. Throws upgrade::StateError.
  WorkerProcess(MasterContext& ctx, PoolConfigRef pool, const nlohmann::json& state, upgrade::AdoptedFds& fds,
                WorkerEvents events);
  ~WorkerProcess();
  // Once the adopting pool has wired everything: watches the channel and re-arms the
  // timers from the deadlines they had (a stop in progress goes on where it was).
  void resume_adopted();
  // What the new image needs to adopt this process; its descriptors go into `fds`.
  nlohmann::json export_state(upgrade::FdList& fds) const;

  pid_t pid() const { return pid_; }
  const Identity& identity() const { return id_; }
  const config::PoolConfig& config() const { return *pool_; }
  const PoolConfigRef& config_ref() const { return pool_; }
  WorkerPhase phase() const { return phase_; }
  bool ever_ready() const { return ready_at_.has_value(); }
  // Its exit will be one that was asked for: a stop by the pool, or an operator's kill.
  bool exit_expected() const { return exit_expected_; }
  // Stopped by the pool as broken (protocol errors, a closed channel): its exit, however
  // clean and late, is restarted as a crash is (backoff, flap counting).
  void mark_broken() { stopped_as_broken_ = true; }
  bool stopped_as_broken() const { return stopped_as_broken_; }
  std::chrono::milliseconds uptime() const;
  const std::string& status_text() const { return status_text_; }
  // RSS and CPU time, at most `max_age` old (worker_usage.hpp).
  std::optional<shm::ProcStats> usage(std::int64_t now_ns, std::chrono::nanoseconds max_age = kUsageMaxAge) const {
    return usage_.read(pid_, now_ns, max_age);
  }

  void mark_ready();
  // A reload changed only master-side settings (timeouts, max_inflight...): the worker
  // runs on under them. Worker-side settings stay those it was started with.
  void adopt_settings(PoolConfigRef pool);
  // A reload to `generation` whose worker-side settings are those this worker runs: it
  // adopts the master-side ones and counts as of that generation (status, scoreboard;
  // FORKPOOL_GENERATION in its environment stays the one it was started in).
  void adopt_generation(PoolConfigRef pool, unsigned generation);
  // Taken over from the previous image by a binary upgrade: config() holds the pool's
  // settings then, not necessarily those the worker was started with.
  bool adopted() const { return adopted_; }

  // --- Master dispatch ---
  // Can take another connection now: ready, channel open, below max_inflight. Inline:
  // dispatch asks it of several workers per connection.
  bool accepts_work() const {
    return phase_ == WorkerPhase::Ready && channel_->can_send() &&
           held_.size() < static_cast<std::size_t>(pool_->max_inflight);
  }
  std::size_t in_flight() const { return held_.size(); }
  std::uint64_t idle_order() const { return idle_order_; }  // larger = idle more recently
  // Its READY asked for non-blocking connections (FP_FD_NONBLOCK).
  bool wants_nonblocking() const { return wants_nonblocking_; }
  // Since when it has held nothing (master dispatch), or was last seen working (shared
  // dispatch, from observe_activity): what a dynamic pool retires by.
  Clock::time_point idle_since() const { return idle_since_; }
  // Shared dispatch: what the scoreboard shows of it now (busy, connections handled). A
  // change of either moves idle_since to now.
  // `demand`: connections arrived or wait on the pool's listeners. It counts as activity
  // of a worker that never reported any (no library: it never shows busy nor counts a
  // connection), which may be serving whenever connections come: its idle_timeout then
  // runs from the last demand the master saw, not from its start.
  void observe_activity(bool busy, std::uint64_t handled, bool demand);
  std::uint64_t handed() const { return handed_; }          // connections ever sent to it
  std::uint64_t completed() const { return completed_; }    // DONE or PARK received (handed back)
  // Age of the oldest connection it holds; zero when it holds none.
  std::chrono::microseconds oldest_held() const;
  // pool, worker, pid, generation: the fields of a JSON log line about this worker.
  nlohmann::json log_fields() const;
  // `fd_flags`: FP_FD_* that are true of `fd` (worker/protocol.h), told to the worker;
  // `now`: the caller's clock reading, the start of the connection's time held.
  SendResult send_connection(int fd, std::uint16_t listener, std::uint64_t id, const sockaddr_storage& peer,
                             socklen_t peer_len, Clock::time_point accepted, std::uint32_t fd_flags,
                             Clock::time_point now);
  // Connections after which the pool replaces this worker (0 = never).
  std::uint64_t recycle_after() const { return recycle_after_; }
  void set_recycle_after(std::uint64_t n) { recycle_after_ = n; }
  // "Finish what you hold and exit": the worker reads EOF while its DONEs still arrive.
  void end_work() { channel_->end_work(); }
  // `requested`: the exit that follows is expected (no respawn, not a crash).
  void stop(StopPlan plan, bool requested);
  void signal(int signo, bool whole_group);
  // The pool reaped it: handles the DONE messages still waiting in its channel, so what
  // the worker finished is not counted as lost, and closes the channel.
  void reaped();
  // An operator signalled it (forkpoolctl kill): if it exits, that was asked for.
  void note_operator_signal() { exit_expected_ = true; }
  // It has exited or is exiting (a zombie, or PF_EXITING): the reap will tell the pool.
  bool exiting() const;
  // Stopped by a signal (SIGSTOP, SIGTSTP): state T in /proc/PID/stat.
  bool stopped() const;

 private:
  void transition(WorkerPhase to);
  // Handles what the worker sent. Normally one message that needs the pool at a time
  // (its handler may change the pool); `until_empty` reads everything there is.
  void read_channel(bool until_empty = false);
  void finish_connection(std::uint64_t id);
  void hold(std::uint64_t id, const HeldConnection& c);
  // Master dispatch: held_, completed_ and held_since_ns_ into the worker's scoreboard
  // record, for readers of the scoreboard (forkpoolctl top) to show what status shows.
  void publish_activity();
  void forget_held(std::map<std::uint64_t, HeldConnection>::iterator it);
  // PARK: hands the connection to the pool if the message keeps the rules
  // (docs/protocol.md); false when it broke them (counted and logged).
  bool park_connection(std::uint64_t id, WorkerChannel::Passed passed);
  // After a refused message: true when the worker has been reported as broken (the
  // handler changed the pool, so reading stops for now).
  bool too_many_protocol_errors(bool until_empty);
  void count_protocol_error();
  // The held connection dispatched longest ago (ids are not in that order: a parked
  // connection comes back with its first id). Null when it holds none.
  const HeldConnection* oldest() const;
  void log_access(std::uint64_t id, const HeldConnection& c, std::chrono::microseconds held,
                  access_log::Outcome outcome) const;
  void arm_request_timer();
  void run_stop_steps();
  void arm_watchdog();
  void make_notify_socket(std::optional<shm::OwnedFd> adopted);
  void note_status(const std::string& s);  // STATUS= from the worker: reported when it changes

  MasterContext& ctx_;
  PoolConfigRef pool_;
  Identity id_;
  WorkerEvents events_;
  StartedChild starting_;       // between the constructor and finish_start
  shm::OwnedFd starting_channel_;  // the master's end of the channel, until finish_start
  pid_t pid_ = -1;
  Clock::time_point started_;
  WorkerPhase phase_ = WorkerPhase::Starting;
  std::optional<Clock::time_point> ready_at_;
  bool exit_expected_ = false;
  bool stopped_as_broken_ = false;
  bool adopted_ = false;
  std::string status_text_;
  mutable WorkerUsage usage_;

  std::unique_ptr<WorkerChannel> channel_;
  std::unique_ptr<NotifySocket> notify_;
  std::unique_ptr<OutputCapture> stdout_capture_;
  std::unique_ptr<OutputCapture> stderr_capture_;
  Timer ready_timer_;
  Timer watchdog_timer_;
  Timer stop_timer_;
  Timer request_timer_;
  Clock::time_point watchdog_due_{};
  bool wants_nonblocking_ = false;
  std::map<std::uint64_t, HeldConnection> held_;
  // The node of the last connection to leave held_, kept for the next one: holding a
  // connection allocates nothing once the worker has held one (forget_held, hold).
  std::map<std::uint64_t, HeldConnection>::node_type spare_held_;
  std::uint64_t handed_ = 0;
  std::uint64_t completed_ = 0;
  std::int64_t held_since_ns_ = 0;  // CLOCK_MONOTONIC when held_ last left empty
  std::uint64_t recycle_after_ = 0;
  std::uint64_t idle_order_ = 0;
  Clock::time_point idle_since_{};
  std::uint64_t handled_seen_ = 0;  // shared dispatch: connections_handled when last observed
  bool reported_ = false;           // shared dispatch: it was seen busy or counting connections
  unsigned protocol_errors_ = 0;
  std::unique_ptr<log::RepeatedWarning> bad_parks_;  // made on the first one
  std::unique_ptr<log::RepeatedWarning> lost_parks_;  // PARKs whose descriptor the master could not take
  std::unique_ptr<log::RepeatedWarning> bad_dones_;   // DONEs for no held connection, or with a descriptor
  Clock::time_point first_protocol_error_;
  StopPlan stop_plan_;
  std::size_t stop_step_ = 0;
  // isolate = "pid": a stop signal the worker had no handler for yet, so the kernel
  // dropped it (PID 1 of a namespace); checked again every kUndeliveredRetry.
  int undelivered_signal_ = 0;
  static constexpr std::chrono::milliseconds kUndeliveredRetry{10};
  Clock::time_point stop_began_;
};

}  // namespace forkpool::supervisor
