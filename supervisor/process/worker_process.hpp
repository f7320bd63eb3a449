#pragma once
// One running worker process: spawned with its channel, notify socket and output pipes,
// watched for readiness and watchdog pings, and stopped by a StopPlan.

#include <sys/types.h>

#include <chrono>
#include <sys/socket.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "supervisor/generation/listeners.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/process/notify_socket.hpp"
#include "supervisor/process/output_capture.hpp"
#include "supervisor/pool/respawn_policy.hpp"
#include "supervisor/process/stop_plan.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

struct SpawnFailure : std::runtime_error {
  SpawnFailure(const std::string& what, bool is_transient) : std::runtime_error(what), transient(is_transient) {}
  bool transient;  // fork's EAGAIN/ENOMEM: the system, not the program, is at fault
};

struct WorkerEvents {
  std::function<void()> ready;
  std::function<void()> ready_timeout;
  std::function<void()> watchdog_missed;
  // Master dispatch: a connection finished (DONE) after `held`; the channel drained.
  std::function<void(std::chrono::microseconds held)> done;
  std::function<void()> writable;
  // A connection has been held longer than request_timeout; `peer` names its client.
  std::function<void(const std::string& peer)> request_timeout;
};

// A connection handed to this worker and not finished yet.
struct HeldConnection {
  Clock::time_point since;
  sockaddr_storage peer;
  socklen_t peer_len;
};

enum class SendResult { Sent, WouldBlock, Gone };

std::string describe_peer(const sockaddr_storage& peer, socklen_t len);

class WorkerProcess {
 public:
  struct Identity {
    unsigned worker;
    unsigned generation;
    std::uint32_t scoreboard_slot;
  };

  // Throws SpawnFailure.
  WorkerProcess(MasterContext& ctx, const config::PoolConfig& pool, Identity id,
                const std::vector<Listener>& listeners, WorkerEvents events);
  ~WorkerProcess();

  pid_t pid() const { return pid_; }
  const Identity& identity() const { return id_; }
  bool ready() const { return ready_; }
  bool stop_requested() const { return stop_requested_; }
  std::chrono::milliseconds uptime() const;
  const std::string& status_text() const { return status_text_; }

  void mark_ready();

  // --- Master dispatch ---
  // Can take another connection now: ready, not stopping or retiring, channel writable,
  // and below max_inflight.
  bool accepts_work() const;
  std::size_t in_flight() const { return held_.size(); }
  std::uint64_t idle_order() const { return idle_order_; }  // larger = idle more recently
  std::uint64_t handed() const { return handed_; }          // connections ever sent to it
  std::uint64_t completed() const { return completed_; }    // DONE received
  // Age of the oldest connection it holds; zero when it holds none.
  std::chrono::milliseconds oldest_held() const;
  SendResult send_connection(int fd, std::uint16_t listener, std::uint64_t id, const sockaddr_storage& peer,
                             socklen_t peer_len);
  // Connections after which the pool replaces this worker (0 = never).
  std::uint64_t recycle_after() const { return recycle_after_; }
  void set_recycle_after(std::uint64_t n) { recycle_after_ = n; }
  // "Finish what you hold and exit": shuts the master's sending side of the channel so
  // the worker reads EOF, while its DONE messages still arrive.
  void end_work();
  // `requested`: the exit that follows is expected (no respawn, not a crash).
  void stop(StopPlan plan, bool requested);
  // Closes the master's end of the channel: "finish what you hold and exit".
  void close_channel();
  void signal(int signo, bool whole_group);
  // After the process was reaped: handles the DONE messages still waiting in its
  // channel, so what the worker finished is not counted as lost.
  void drain_channel() { read_channel(true); }
  // An operator signalled it (forkpoolctl kill): if it exits, that was asked for.
  void note_operator_signal() { operator_signalled_ = true; }
  bool operator_signalled() const { return operator_signalled_; }

 private:
  // Handles what the worker sent. Normally one message that needs the pool at a time
  // (its handler may change the pool); `until_empty` reads everything there is.
  void read_channel(bool until_empty = false);
  void finish_connection(std::uint64_t id);
  void arm_request_timer();
  void watch_channel();
  void run_stop_steps();
  void arm_watchdog();

  MasterContext& ctx_;
  const config::PoolConfig& pool_;
  Identity id_;
  WorkerEvents events_;
  pid_t pid_ = -1;
  Clock::time_point started_;
  bool ready_ = false;
  bool stop_requested_ = false;
  bool operator_signalled_ = false;
  std::string status_text_;

  OwnedFd channel_;
  std::unique_ptr<FdWatch> channel_watch_;
  std::unique_ptr<NotifySocket> notify_;
  std::unique_ptr<OutputCapture> stdout_capture_;
  std::unique_ptr<OutputCapture> stderr_capture_;
  Timer ready_timer_;
  Timer watchdog_timer_;
  Timer stop_timer_;
  std::map<std::uint64_t, HeldConnection> held_;
  std::uint64_t handed_ = 0;
  std::uint64_t completed_ = 0;
  std::uint64_t recycle_after_ = 0;
  bool work_ended_ = false;
  std::uint64_t idle_order_ = 0;
  bool channel_gone_ = false;
  bool channel_blocked_ = false;
  Timer request_timer_;
  StopPlan stop_plan_;
  std::size_t stop_step_ = 0;
  Clock::time_point stop_began_;
};

}  // namespace forkpool::supervisor
