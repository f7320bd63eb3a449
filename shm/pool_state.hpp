// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one list of pool states (master-written into each pool block) and their names.

#include <cstdint>
#include <optional>
#include <string_view>

namespace forkpool::shm {

// Stored as a uint32_t in shared memory: the numeric values are part of the layout.
enum class PoolState : std::uint32_t {
  Stopped = 0,
  Starting = 1,
  Running = 2,
  Stopping = 3,
  Failed = 4,
};

inline constexpr std::uint32_t kPoolStateCount = 5;

constexpr std::string_view to_string(PoolState s) {
  switch (s) {
    case PoolState::Stopped:
      return "stopped";
    case PoolState::Starting:
      return "starting";
    case PoolState::Running:
      return "running";
    case PoolState::Stopping:
      return "stopping";
    case PoolState::Failed:
      return "failed";
  }
  return "unknown";
}

constexpr std::optional<PoolState> pool_state_from_raw(std::uint32_t raw) {
  if (raw >= kPoolStateCount) return std::nullopt;
  return static_cast<PoolState>(raw);
}

}  // namespace forkpool::shm
