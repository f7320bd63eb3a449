// SPDX-License-Identifier: Apache-2.0
#pragma once
// Takes snapshots of a scoreboard whose header has already been validated: the master's
// own view and forkpoolctl's read-only view both read through this class, so the
// validation of worker-written fields lives in one place.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "shm/layout.hpp"
#include "shm/snapshot.hpp"

namespace forkpool::shm {

class Reader {
 public:
  Reader() = default;
  // `region` holds a header that passed check_header(); `pages[i]` is slot i's activity
  // page, or nullptr when it is not mapped (its activity is then reported as zero).
  Reader(const std::byte* region, std::vector<const SlotActivity*> pages);

  std::uint32_t slot_count() const { return static_cast<std::uint32_t>(pages_.size()); }
  std::uint32_t pool_count() const { return pool_count_; }

  WorkerSnapshot read_worker(std::uint32_t slot);
  PoolSnapshot read_pool(std::uint32_t pool) const;
  ScoreboardSnapshot snapshot();

  // For a reader whose page fds were handed over at some instant (forkpoolctl): the epoch
  // each page belonged to then. A slot whose epoch has moved on is flagged
  // kAnomalyStalePage and its activity is not read, since it is an earlier worker's page.
  void set_page_epochs(std::vector<std::uint64_t> epochs) { page_epochs_ = std::move(epochs); }
  // The master maps slot pages as slots are first used; `page` becomes readable here.
  void set_page(std::uint32_t slot, const SlotActivity* page) { pages_[slot] = page; }

 private:
  // A slot copied out of shared memory but not yet validated.
  struct Copy {
    WorkerSnapshot worker;
    std::uint32_t lifecycle = 0;
    std::optional<RawActivity> raw;
    bool mapped = false;
    bool stale = false;
    bool record_settled = true;  // the master-written record was read consistently
    // Master dispatch: the master's account (SlotRecord::held and the rest), trusted,
    // shown instead of the worker's page.
    bool master_counts = false;
    std::uint32_t held = 0;
    std::uint64_t handed_back = 0;
    std::int64_t held_since_ns = 0;
  };
  Copy copy_worker(std::uint32_t slot) const;
  WorkerSnapshot finish_worker(Copy& c, std::int64_t now_ns);

  const Header* header_ = nullptr;
  const PoolBlock* pools_ = nullptr;
  const SlotRecord* records_ = nullptr;
  std::uint32_t pool_count_ = 0;
  std::vector<const SlotActivity*> pages_;
  std::vector<ActivityHistory> history_;
  std::vector<std::uint64_t> page_epochs_;
};

}  // namespace forkpool::shm
