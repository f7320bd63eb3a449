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
  const std::string_view text(*status);
  constexpr std::string_view kKey = "\nSigCgt:";
  const auto at = text.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(at + kKey.size());
  while (!rest.empty() && (rest.front() == '\t' || rest.front() == ' ')) rest.remove_prefix(1);
  std::uint64_t mask = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), mask, 16);
  if (ec != std::errc() || end == rest.data()) return std::nullopt;
  return ((mask >> (signo - 1)) & 1u) != 0;
}

}  // namespace forkpool::supervisor
