// SPDX-License-Identifier: Apache-2.0
#pragma once
// A single-writer sequence lock over blocks whose fields are all std::atomic, so there is
// no data race even when a reader overlaps a writer; the counter only tells the reader
// whether its copy mixes two updates. Each block has exactly one writing party, so the
// writer never needs a read-modify-write: it knows the counter is its own.

#include <sched.h>

#include <atomic>
#include <cstdint>

namespace forkpool::shm {

class SeqlockWrite {
 public:
  // Marks the block as being written (odd counter) for the lifetime of this object.
  explicit SeqlockWrite(std::atomic<std::uint64_t>& seq)
      : seq_(seq), start_(seq.load(std::memory_order_relaxed) | 1u) {
    seq_.store(start_, std::memory_order_relaxed);
    // Orders the odd counter before the field stores that follow.
    std::atomic_thread_fence(std::memory_order_release);
  }
  ~SeqlockWrite() { seq_.store(start_ + 1, std::memory_order_release); }
  SeqlockWrite(const SeqlockWrite&) = delete;
  SeqlockWrite& operator=(const SeqlockWrite&) = delete;

 private:
  std::atomic<std::uint64_t>& seq_;
  std::uint64_t start_;
};

// Retries bounded so a writer that died or stalls mid-update (or a hostile worker that
// leaves its counter odd) can never hang the reader: spin briefly, then yield the CPU so a
// preempted writer can finish, then give up and let the caller fall back.
inline constexpr int kSeqlockSpins = 64;
inline constexpr int kSeqlockAttempts = 256;

// Runs `copy` until it observes an even, unchanged counter; false if it never did.
// `attempts` <= kSeqlockSpins means spinning only, never yielding.
template <typename Copy>
bool seqlock_read(const std::atomic<std::uint64_t>& seq, Copy&& copy,
                  int attempts = kSeqlockAttempts) {
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt >= kSeqlockSpins) ::sched_yield();
    const std::uint64_t before = seq.load(std::memory_order_acquire);
    if (before & 1u) continue;
    copy();
    // Keeps the relaxed field loads in copy() before the second counter load.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (seq.load(std::memory_order_relaxed) == before) return true;
  }
  return false;
}

}  // namespace forkpool::shm
