// SPDX-License-Identifier: Apache-2.0
#pragma once
// Deadline-bounded waiting on an observable condition, instead of sleeping.

#include <chrono>
#include <thread>

namespace forkpool::test {

// Polls `cond` until it returns true or `deadline` passes; returns the last result.
template <typename Cond>
bool wait_until(Cond&& cond, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= end) return cond();
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(20)) pause *= 2;
  }
}

}  // namespace forkpool::test
