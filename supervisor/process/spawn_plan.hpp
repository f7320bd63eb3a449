// SPDX-License-Identifier: Apache-2.0
#pragma once
// Everything a worker's child process needs, computed before fork so that the child
// only applies it (no allocation, no lookups, no logging between fork and exec).

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "config/config.hpp"

namespace forkpool::supervisor {

struct FdMove {
  int from;  // an fd open in the master
  int to;    // the number it gets in the worker
};

struct SpawnPlan {
  std::string executable;
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;  // null-terminated, pointing into argv_storage
  std::vector<char*> envp;  // null-terminated, pointing into env_storage
  char* listen_pid_digits = nullptr;  // "LISTEN_PID=" value buffer the child fills in
  std::size_t listen_pid_width = 0;

  std::vector<FdMove> fds;  // includes 0, 1 and 2; every other fd is closed at exec
  int highest_target = 2;

  bool change_ids = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool change_gid_only = false;

  std::string cwd;  // empty: stay where the master is
  bool set_umask = false;
  mode_t umask_value = 0;
  std::vector<std::pair<int, rlimit>> rlimits;

  pid_t master_pid = 0;

  // isolate = "pid": the child is PID 1 of a new PID namespace (see spawner.cpp).
  bool new_pid_namespace = false;
};

// What differs from one worker to the next.
struct WorkerContext {
  unsigned worker = 0;
  unsigned generation = 0;
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int channel_fd = -1;                // the worker's end of the channel
  int scoreboard_fd = -1;             // the worker's slot page
  std::vector<int> listener_fds;      // shared mode: passed at 3, 4, ...
  std::vector<std::string> listener_texts;  // bound addresses, for FORKPOOL_LISTENERS
  std::string notify_socket;          // "" = none
  pid_t master_pid = 0;
};

// Throws std::runtime_error when the plan cannot be made (e.g. the user vanished).
SpawnPlan build_spawn_plan(const config::PoolConfig& pool, const WorkerContext& ctx);

// The uid the worker will run as (the master's own when `user` is empty).
uid_t worker_uid(const config::PoolConfig& pool);

// "{pool}" and "{worker}" replaced; "${pool}" (from "$${pool}" in the file) stays as it is.
std::string substitute(std::string_view text, std::string_view pool, unsigned worker);

}  // namespace forkpool::supervisor
