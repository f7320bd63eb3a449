// SPDX-License-Identifier: Apache-2.0
#pragma once
// One frame of `forkpoolctl top`, rendered from a scoreboard snapshot (no terminal I/O
// here), and the connection rates computed from successive snapshots.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "shm/snapshot.hpp"

namespace forkpool::ctl {

struct PoolRates {
  double accepted_per_s = 0;
  double completed_per_s = 0;
};

// Remembers a few seconds of pool counters and reports the rates over the last second or
// so (over whatever history there is, at first).
class RateTracker {
 public:
  void add(const shm::ScoreboardSnapshot& snapshot);
  PoolRates rates(std::uint32_t pool) const;
  void clear() { samples_.clear(); }

 private:
  struct Sample {
    std::int64_t t_ns;
    std::vector<std::uint64_t> accepted;
    std::vector<std::uint64_t> completed;
  };
  std::deque<Sample> samples_;
};

struct TopFrame {
  const shm::ScoreboardSnapshot* snapshot = nullptr;
  const std::vector<std::string>* pool_names = nullptr;
  const RateTracker* rates = nullptr;
  std::string notice;      // second header line: refresh problems, master gone, ...
  std::string clock;       // wall-clock time for the header, e.g. "12:03:04"
  std::size_t width = 0;   // 0: no limit
  std::size_t height = 0;  // 0: no limit
  bool colour = false;
};

// The frame's lines, without newlines, each at most `width` columns, at most `height` of
// them (the last says how many were left out).
std::vector<std::string> render_top_frame(const TopFrame& frame);

}  // namespace forkpool::ctl
