// SPDX-License-Identifier: Apache-2.0
#pragma once
// The lifecycle of one worker process, in one place: its names are the ones status,
// logs and tests use.
//
//   Starting --ready--> Ready --stop--> Stopping --reaped--> Reaped
//       \__________________stop____________^   (a worker stopped before it was ready)
//
// Whether its exit was asked for (a stop by the pool, an operator's kill) is not a phase
// but a fact about the exit, kept beside it.

#include <cstdlib>
#include <string_view>

namespace forkpool::supervisor {

enum class WorkerPhase { Starting, Ready, Stopping, Reaped };

constexpr std::string_view to_string(WorkerPhase p) {
  switch (p) {
    case WorkerPhase::Starting: return "starting";
    case WorkerPhase::Ready: return "ready";
    case WorkerPhase::Stopping: return "stopping";
    case WorkerPhase::Reaped: return "reaped";
  }
  return "unknown";
}

// The only legal moves; anything else is a bug in the master.
constexpr bool phase_transition_allowed(WorkerPhase from, WorkerPhase to) {
  switch (to) {
    case WorkerPhase::Starting: return false;
    case WorkerPhase::Ready: return from == WorkerPhase::Starting;
    case WorkerPhase::Stopping: return from == WorkerPhase::Starting || from == WorkerPhase::Ready;
    case WorkerPhase::Reaped: return from != WorkerPhase::Reaped;
  }
  return false;
}

}  // namespace forkpool::supervisor
