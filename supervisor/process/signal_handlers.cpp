// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/signal_handlers.hpp"

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/proc_text.hpp"

namespace forkpool::supervisor {

std::optional<bool> catches_signal(pid_t pid, int signo) {
  if (signo < 1 || signo > 64) return false;
  const auto status = base::read_proc_text("/proc/" + std::to_string(pid) + "/status");
  if (!status) return std::nullopt;
  const auto rest = base::status_value(*status, "SigCgt");
  if (!rest) return std::nullopt;
  std::uint64_t mask = 0;
  const auto [end, ec] = std::from_chars(rest->data(), rest->data() + rest->size(), mask, 16);
  if (ec != std::errc() || end == rest->data()) return std::nullopt;
  return ((mask >> (signo - 1)) & 1u) != 0;
}

}  // namespace forkpool::supervisor
