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
  std::optional<std::size_t> pick(std::span<const Candidate> candidates) {
    return pick(candidates.size(), [&](std::size_t i) { return candidates[i]; });
  }
  // The same over `count` candidates made on demand by candidate(i): round-robin makes
  // only the ones it passes.
  template <class Make>
  std::optional<std::size_t> pick(std::size_t count, Make&& candidate);

 private:
  config::Balance balance_;
  std::size_t cursor_ = 0;
};

template <class Make>
std::optional<std::size_t> WorkerChoice::pick(std::size_t count, Make&& candidate) {
  if (count == 0) return std::nullopt;
  if (balance_ == config::Balance::RoundRobin) {
    for (std::size_t step = 0; step < count; ++step) {
      const std::size_t i = (cursor_ + step) % count;
      if (candidate(i).accepts_work) {
        cursor_ = i + 1;
        return i;
      }
    }
    return std::nullopt;
  }
  std::optional<std::size_t> best;
  Candidate b{};
  for (std::size_t i = 0; i < count; ++i) {
    const Candidate c = candidate(i);
    if (!c.accepts_work) continue;
    if (!best || c.in_flight < b.in_flight || (c.in_flight == b.in_flight && c.idle_order > b.idle_order)) {
      best = i;
      b = c;
    }
  }
  return best;
}

}  // namespace forkpool::supervisor
