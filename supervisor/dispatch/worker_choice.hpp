// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which worker gets the next connection. Pure policy over a list of candidates, so it
// is tested without processes.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "config/config.hpp"

namespace forkpool::supervisor {

struct Candidate {
  bool accepts_work;         // ready, below max_inflight, channel writable
  std::size_t in_flight;
  std::uint64_t idle_order;  // larger = became idle more recently
};

class WorkerChoice {
 public:
  explicit WorkerChoice(config::Balance balance) : balance_(balance) {}
  // Index into `candidates`, or nothing if none accepts work.
  //   least-busy: fewest in flight; ties go to the most recently idle worker, whose
  //               caches are warm and whose neighbours may be left to sleep.
  //   round-robin: the next accepting candidate after the previous choice.
  std::optional<std::size_t> pick(std::span<const Candidate> candidates);

 private:
  config::Balance balance_;
  std::size_t cursor_ = 0;
};

}  // namespace forkpool::supervisor
