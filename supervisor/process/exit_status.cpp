// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/exit_status.hpp"

#include <sys/wait.h>

#include <cstring>

#include <fmt/format.h>

namespace forkpool::supervisor {

ExitReason classify_exit(const ExitFacts& f) {
  if (f.stop_requested || f.operator_signalled) return ExitReason::Requested;
  if (WIFEXITED(f.wait_status)) {
    const int code = WEXITSTATUS(f.wait_status);
    if (code == 0) return ExitReason::Clean;
    const bool early = f.exec_readiness ? f.uptime < kExecReadyGrace : !f.was_ready;
    if (code == kExitConfig && early) return ExitReason::Fatal;
  }
  return ExitReason::Crashed;
}

std::string_view to_string(ExitReason r) {
  switch (r) {
    case ExitReason::Requested: return "requested";
    case ExitReason::Clean: return "clean";
    case ExitReason::Crashed: return "crashed";
    case ExitReason::Fatal: return "fatal";
  }
  return "unknown";
}

std::string describe_wait_status(int s) {
  if (WIFEXITED(s)) return fmt::format("exited with status {}", WEXITSTATUS(s));
  if (WIFSIGNALED(s))
    return fmt::format("exited on signal {}{}", WTERMSIG(s), WCOREDUMP(s) ? " (core dumped)" : "");
  return fmt::format("changed state (wait status {:#x})", s);
}

nlohmann::json exit_fields(ExitReason reason, int wait_status, std::chrono::milliseconds uptime) {
  nlohmann::json f = {{"reason", to_string(reason)}, {"status", describe_wait_status(wait_status)}};
  if (WIFEXITED(wait_status)) f["exit_code"] = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) {
    f["signal"] = WTERMSIG(wait_status);
    if (const char* name = sigabbrev_np(WTERMSIG(wait_status))) f["signal_name"] = std::string("SIG") + name;
    f["core_dumped"] = WCOREDUMP(wait_status) != 0;
  }
  f["uptime_s"] = static_cast<double>(uptime.count()) / 1000.0;
  return f;
}

std::string format_uptime(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms < 1000) return fmt::format("{}ms", ms);
  if (ms < 60'000) return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000.0);
  const auto s = ms / 1000;
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string describe_exit(std::string_view pool, unsigned worker, pid_t pid, int wait_status,
                          std::chrono::milliseconds uptime) {
  return fmt::format("worker {}[{}] pid {} {} (after {})", pool, worker, pid, describe_wait_status(wait_status),
                     format_uptime(uptime));
}

}  // namespace forkpool::supervisor
