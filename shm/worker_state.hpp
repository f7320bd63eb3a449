// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one list of worker states and their names. Logs, status output, `forkpoolctl top`
// and tests all print states through to_string() so the spelling never diverges.

#include <cstdint>
#include <optional>
#include <string_view>

namespace forkpool::shm {

// Stored in shared memory as a uint32_t, so the numeric values are part of the layout
// (changing them requires bumping kLayoutVersion). Empty is a slot no worker has used yet.
enum class WorkerState : std::uint32_t {
  Empty = 0,
  Starting = 1,
  Idle = 2,
  Busy = 3,
  Stopping = 4,
  Exited = 5,
};

inline constexpr std::uint32_t kWorkerStateCount = 6;

constexpr std::string_view to_string(WorkerState s) {
  switch (s) {
    case WorkerState::Empty:
      return "empty";
    case WorkerState::Starting:
      return "starting";
    case WorkerState::Idle:
      return "idle";
    case WorkerState::Busy:
      return "busy";
    case WorkerState::Stopping:
      return "stopping";
    case WorkerState::Exited:
      return "exited";
  }
  return "unknown";
}

// Raw values come from shared memory, so they are checked rather than cast.
constexpr std::optional<WorkerState> worker_state_from_raw(std::uint32_t raw) {
  if (raw >= kWorkerStateCount) return std::nullopt;
  return static_cast<WorkerState>(raw);
}

constexpr std::optional<WorkerState> parse_worker_state(std::string_view name) {
  for (std::uint32_t i = 0; i < kWorkerStateCount; ++i) {
    if (to_string(static_cast<WorkerState>(i)) == name) return static_cast<WorkerState>(i);
  }
  return std::nullopt;
}

}  // namespace forkpool::shm
