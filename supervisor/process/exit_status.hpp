// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a worker's wait status means for its pool, decided in exactly one place.

#include <sys/types.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace forkpool::supervisor {

// sysexits.h EX_CONFIG: "fatal, do not respawn" when it happens before readiness.
inline constexpr int kExitConfig = 78;
// With ready = "exec" a worker counts as ready from its start, but an EX_CONFIG exit within
// this time is still "before it was ready"; only after it is the worker logged as ready.
inline constexpr std::chrono::seconds kExecReadyGrace{1};

enum class ExitReason {
  Requested,  // asked for (shutdown, scale down, restart, forkpoolctl kill): no backoff, no crash
  Clean,      // exit status 0 without being asked: respawn, not a crash
  Crashed,    // non-zero status or a signal: respawn with backoff, counts as a crash
  Fatal,      // EX_CONFIG before it was ready: the pool is marked failed
};

struct ExitFacts {
  int wait_status = 0;
  bool stop_requested = false;
  bool was_ready = false;
  std::chrono::milliseconds uptime{0};
  bool exec_readiness = true;  // ready = "exec": "before ready" means "within kExecReadyGrace"
  bool operator_signalled = false;  // `forkpoolctl kill` sent it a signal: its exit was asked for
};

ExitReason classify_exit(const ExitFacts& facts);

std::string_view to_string(ExitReason r);

// "exited with status 1", "exited on signal 9", "exited on signal 11 (core dumped)".
std::string describe_wait_status(int wait_status);

// "worker web[3] pid 1234 exited on signal 9 (after 12.3s)"
std::string describe_exit(std::string_view pool, unsigned worker, pid_t pid, int wait_status,
                          std::chrono::milliseconds uptime);

// The facts of an exit as event fields: reason, status (the text above), exit_code or
// signal (+ core_dumped), uptime_s.
nlohmann::json exit_fields(ExitReason reason, int wait_status, std::chrono::milliseconds uptime);

// "12.3s", "850ms", "3m12s"
std::string format_uptime(std::chrono::milliseconds d);

}  // namespace forkpool::supervisor
