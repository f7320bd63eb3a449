// SPDX-License-Identifier: Apache-2.0
#pragma once
// One snapshot of everything status output shows, taken once by the master and then
// rendered as JSON (control socket, /status), Prometheus text (/metrics) or tables
// (forkpoolctl). Renderers never look anything up themselves (STYLE 11).

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shm/histogram.hpp"

namespace forkpool::supervisor {

struct Percentiles {
  std::uint64_t count = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
};

struct WorkerStatus {
  unsigned worker = 0;           // FORKPOOL_WORKER
  std::uint32_t slot = 0;        // scoreboard slot
  pid_t pid = 0;
  std::string state;             // shm::to_string(WorkerState): starting idle busy stopping exited
  std::string role;              // "serving", "replacement", "retiring"
                                 // state "failed", pid 0: the slot's last start failed
  unsigned generation = 0;
  double uptime_s = 0;
  std::uint64_t handled = 0;     // connections finished (worker-reported, validated)
  std::uint64_t in_flight = 0;   // master dispatch: as the master counts them
  double current_ms = 0;         // age of the oldest connection held, 0 if none
  std::uint64_t restarts = 0;    // of this slot
  std::string last_exit;         // "exited on signal 9", "" if none
  std::uint64_t rss_bytes = 0;
  double cpu_s = 0;
  std::string status_text;       // last STATUS= from sd_notify
  std::string last_error;        // why the slot's last start failed ("execve /app: ..."), "" if none
};

struct PoolStatus {
  std::string name;
  std::string state;             // starting running stopping stopped failed
  std::string dispatch;          // master | shared
  std::string balance;
  unsigned generation = 0;       // of the configuration the pool runs
  bool removed = false;          // removed by a reload, draining
  std::vector<std::string> listeners;  // bound addresses
  int target = 0;
  bool dynamic = false;          // min_workers/max_workers instead of a fixed size
  int min = 0, max = 0;          // bounds of target (a fixed pool: target twice)
  std::string last_scale;        // why the size last changed, "" if it never did
  int live = 0, ready = 0, busy = 0, idle = 0;
  std::uint64_t queue_length = 0, queue_peak = 0, queue_limit = 0;
  std::uint64_t accepted = 0, dispatched = 0, completed = 0, in_flight = 0, lost = 0, closed = 0;
  std::uint64_t queue_timeouts = 0, spawned = 0, crashed = 0, killed = 0, recycled = 0;
  std::uint64_t spawn_failed = 0;  // starts that never ran the program (not in crashed)
  std::string keepalive;           // worker | master (master dispatch)
  std::uint64_t parked = 0, resumed = 0, keepalive_timeouts = 0, keepalive_closed = 0, parked_closed = 0;
  std::uint64_t parked_now = 0, protocol_errors = 0;
  std::string failed_reason;       // state "failed": why, with the exit line that failed it
  std::string accept_paused;       // master dispatch: why the pool cannot accept now, "" if it can
  Percentiles duration, queue_wait;
  shm::HistogramSnapshot duration_histogram, queue_wait_histogram;  // for Prometheus
  std::vector<WorkerStatus> workers;
};

struct StatusModel {
  pid_t master_pid = 0;
  std::string version;
  std::string config_file;
  std::string state;  // starting running stopping
  unsigned generation = 0;  // configuration generation: 1 at start, +1 per reload
  double uptime_s = 0;       // since the first start: a binary upgrade does not reset it
  unsigned upgrades = 0;     // binary upgrades (SIGUSR2, `upgrade`) since the first start
  double last_upgrade = 0;   // Unix time of the last one, 0 if none
  std::vector<PoolStatus> pools;
};

}  // namespace forkpool::supervisor
