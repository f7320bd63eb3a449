// SPDX-License-Identifier: Apache-2.0
#include "supervisor/dispatch/worker_choice.hpp"

namespace forkpool::supervisor {

std::optional<std::size_t> WorkerChoice::pick(std::span<const Candidate> c) {
  if (c.empty()) return std::nullopt;
  if (balance_ == config::Balance::RoundRobin) {
    for (std::size_t step = 0; step < c.size(); ++step) {
      const std::size_t i = (cursor_ + step) % c.size();
      if (c[i].accepts_work) {
        cursor_ = i + 1;
        return i;
      }
    }
    return std::nullopt;
  }
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (!c[i].accepts_work) continue;
    if (!best || c[i].in_flight < c[*best].in_flight ||
        (c[i].in_flight == c[*best].in_flight && c[i].idle_order > c[*best].idle_order))
      best = i;
  }
  return best;
}

}  // namespace forkpool::supervisor
