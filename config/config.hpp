// SPDX-License-Identifier: Apache-2.0
#pragma once
// The effective configuration as plain typed structs. Nothing here depends on
// toml++; load.cpp is the only file that sees TOML.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace forkpool::config {

// Durations are kept in milliseconds; zero means "off" wherever the spec says so.
using Duration = std::chrono::milliseconds;

struct ListenAddress {
  enum class Kind { Tcp, Unix };
  Kind kind = Kind::Tcp;
  std::string host;  // Tcp: literal address without brackets ("127.0.0.1", "::1")
  bool ipv6 = false;
  std::uint16_t port = 0;          // Tcp: 0 lets the kernel choose
  std::filesystem::path path;      // Unix: absolute after resolution
  std::string text;                // as written in `listen`, canonical form
  // "file:line:col: pools.NAME.listen[i]", where the entry stands, so that a bind that
  // fails (at start or in a reload) names it as config errors do. Not compared by reload.
  std::string place;
};

enum class Dispatch { Master, Shared };
enum class Balance { LeastBusy, RoundRobin };
// Exec: ready once exec succeeded. Notify: READY=1 over sd_notify (or READY on the
// channel). Protocol: READY on the channel (what libforkpool-worker and forkpool_worker.py
// send); the default for master dispatch with listeners.
enum class Readiness { Exec, Notify, Protocol };
enum class LogFormat { Text, Json };
// What the kernel keeps together with a worker. Pid: each worker is PID 1 of a PID
// namespace of its own, so everything it forks dies with it, even when the master is
// SIGKILLed (the worker gets PR_SET_PDEATHSIG, and the kernel then ends its namespace).
enum class Isolation { None, Pid };
// Who holds an idle keep-alive connection between requests (master dispatch): the
// worker that served it, or the master (the worker hands it back with PARK).
enum class KeepAlive { Worker, Master };

struct OutputTarget {
  enum class Kind { Inherit, Null, Log, File };
  Kind kind = Kind::Inherit;
  std::filesystem::path path;  // Kind::File only, absolute
};

// One setrlimit(2) resource; soft == hard.
struct Rlimit {
  int resource = 0;         // RLIMIT_* value
  std::uint64_t value = 0;  // RLIM_INFINITY for "unlimited"
};

struct PoolConfig {
  std::string name;
  std::filesystem::path file;  // the file that defines it (the main one, or an included one)
  std::vector<std::string> command;  // argv; may contain {pool} and {worker}
  Dispatch dispatch = Dispatch::Master;
  std::vector<ListenAddress> listen;

  // Sizing: either a fixed `workers` count, or min/max/spare for a dynamic pool.
  bool dynamic = false;
  int workers = 4;
  int min_workers = 0;
  int max_workers = 0;
  int spare_workers = 0;
  Duration idle_timeout{10'000};  // dynamic: retire a worker idle this long, above min (0 = never)

  int max_inflight = 1;
  KeepAlive keepalive = KeepAlive::Worker;
  Duration keepalive_timeout{5'000};  // parked connections idle longer are closed; 0 = never
  int max_parked = 10'000;             // parked connections at most; the oldest is closed first
  Balance balance = Balance::LeastBusy;
  int queue_limit = 1024;
  Duration queue_timeout{10'000};
  int backlog = 1024;

  // The loader fills in the default by dispatch (default_readiness) when `ready` is unset.
  Readiness ready = Readiness::Exec;
  Duration ready_timeout{30'000};
  Duration watchdog{0};
  Duration request_timeout{0};
  int timeout_signal = 9;  // SIGKILL

  std::uint64_t max_requests = 0;
  std::uint64_t max_requests_jitter = 0;
  std::uint64_t max_memory = 0;  // bytes; 0 = off

  Duration restart_delay{100};
  Duration restart_delay_max{30'000};
  int flap_restarts = 10;
  Duration flap_window{60'000};
  Duration graceful_timeout{30'000};
  int stop_signal = 15;  // SIGTERM
  Isolation isolate = Isolation::None;

  std::string user;
  std::string group;
  std::filesystem::path cwd;  // empty = the master's cwd
  std::optional<mode_t> umask;
  std::map<std::string, std::string> env;  // values may contain {pool} and {worker}
  bool clear_env = false;
  std::map<std::string, Rlimit> rlimits;  // keyed by the config name ("nofile")
  OutputTarget stdout_target;
  OutputTarget stderr_target;
};

struct SupervisorConfig {
  std::filesystem::path control_socket;  // absolute after resolution
  mode_t control_mode = 0600;
  std::string control_group;
  std::string log_level = "info";
  LogFormat log_format = LogFormat::Text;
  std::filesystem::path log_file;  // empty = stderr
  std::filesystem::path access_log;  // empty = off; master dispatch connections, one a line
  LogFormat access_log_format = LogFormat::Text;
  Duration shutdown_timeout{30'000};
  std::string metrics_listen;  // "" = off, else "HOST:PORT"
  // "file:line:col: supervisor.KEY" where control_socket and metrics_listen are written
  // (empty for a default), so that a bind failing at start or in a reload names it as
  // config errors do. Not compared by reload, not printed.
  std::string control_socket_place;
  std::string metrics_listen_place;
  std::vector<std::string> include;  // patterns as written; their pools are in Config::pools
};

struct Config {
  std::filesystem::path file;  // absolute path of the file this came from
  std::vector<std::filesystem::path> included;  // files read through `include`, in order
  SupervisorConfig supervisor;
  std::vector<PoolConfig> pools;  // in file order

  const PoolConfig* find_pool(std::string_view name) const {
    for (const auto& p : pools)
      if (p.name == name) return &p;
    return nullptr;
  }
};

}  // namespace forkpool::config
