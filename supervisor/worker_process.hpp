#pragma once
// One running worker process: spawned with its channel, notify socket and output pipes,
// watched for readiness and watchdog pings, and stopped by a StopPlan.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "supervisor/listeners.hpp"
#include "supervisor/master_context.hpp"
#include "supervisor/notify_socket.hpp"
#include "supervisor/output_capture.hpp"
#include "supervisor/respawn_policy.hpp"
#include "supervisor/stop_plan.hpp"
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
};

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
  // `requested`: the exit that follows is expected (no respawn, not a crash).
  void stop(StopPlan plan, bool requested);
  // Closes the master's end of the channel: "finish what you hold and exit".
  void close_channel();
  void signal(int signo, bool whole_group);

 private:
  void read_channel();
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
  std::string status_text_;

  OwnedFd channel_;
  std::unique_ptr<FdWatch> channel_watch_;
  std::unique_ptr<NotifySocket> notify_;
  std::unique_ptr<OutputCapture> stdout_capture_;
  std::unique_ptr<OutputCapture> stderr_capture_;
  Timer ready_timer_;
  Timer watchdog_timer_;
  Timer stop_timer_;
  StopPlan stop_plan_;
  std::size_t stop_step_ = 0;
  Clock::time_point stop_began_;
};

}  // namespace forkpool::supervisor
