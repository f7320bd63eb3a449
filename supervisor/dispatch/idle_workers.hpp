// SPDX-License-Identifier: Apache-2.0
#pragma once
// The idle workers of a master-dispatch pool, most recently idle on top: what least-busy
// dispatch picks from without looking at every worker (docs/master.md, "Choosing a
// worker").
//
// A stack of (worker, idle_order) entries, pushed when a worker becomes idle (ready, its
// last connection DONE or PARKed), so it is ordered by idle_order. An entry is only a hint:
// `take` skips and drops entries whose worker no longer stands where the entry says (it
// took work, became idle again later, stopped, its channel filled), judged by the
// caller's `still_idle`. Every worker that is idle and can take work has an entry with its
// current idle_order, as long as the owner pushes at each of those moments and rebuilds
// (`reset`) whenever a worker may have come or gone or become able to take work another
// way (a channel writable again, a reload). Entries hold plain pointers: the owner resets
// before any worker they name can have been destroyed.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace forkpool::supervisor {

template <class Worker>
class IdleWorkers {
 public:
  struct Entry {
    Worker* worker;
    std::uint64_t idle_order;
  };

  // A worker became idle, more recently than every entry so far. Stale entries are
  // dropped first once there are `limit` (a pool whose workers go idle far more often than
  // they are taken keeps a bounded stack).
  template <class StillIdle>
  void push(Worker* w, std::uint64_t idle_order, std::size_t limit, StillIdle&& still_idle) {
    if (entries_.size() >= limit)
      std::erase_if(entries_, [&](const Entry& e) { return !still_idle(e.worker, e.idle_order); });
    entries_.push_back({w, idle_order});
  }

  // Starts again from `idle` (any order): the workers that are idle now with their orders.
  void reset(std::vector<Entry> idle) {
    std::sort(idle.begin(), idle.end(), [](const Entry& a, const Entry& b) { return a.idle_order < b.idle_order; });
    entries_ = std::move(idle);
  }

  // The most recently idle worker for which still_idle(worker, idle_order) holds, or
  // nullptr; the stale entries above it are dropped, and so is its own (it is about to get
  // work). Entries below it that went stale stay until they surface or a push compacts.
  template <class StillIdle>
  Worker* take(StillIdle&& still_idle) {
    while (!entries_.empty()) {
      const Entry e = entries_.back();
      entries_.pop_back();
      if (still_idle(e.worker, e.idle_order)) return e.worker;
    }
    return nullptr;
  }

  std::size_t size() const { return entries_.size(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace forkpool::supervisor
