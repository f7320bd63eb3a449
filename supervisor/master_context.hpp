// SPDX-License-Identifier: Apache-2.0
#pragma once
// What every pool shares with the master: the loop, the scoreboard, the live pids.

#include <sys/types.h>
#include <uv.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>

#include "shm/scoreboard.hpp"

namespace forkpool::supervisor {

class Pool;

struct MasterContext {
  uv_loop_t* loop = nullptr;
  shm::Scoreboard* scoreboard = nullptr;
  pid_t pid = 0;
  int dev_null = -1;
  std::mt19937_64 rng{std::random_device{}()};
  std::unordered_map<pid_t, Pool*> owners;  // every worker pid not yet reaped
  std::uint64_t idle_clock = 0;             // orders workers by when they last became idle
  // Moves whenever a worker is made or destroyed, changes phase or settings, moves within
  // its pool's slots, asks for another connection mode in READY, or its channel takes
  // records again: dispatchers rebuild what they keep of their workers then
  // (Dispatcher::refresh_workers).
  std::uint64_t workers_epoch = 0;
  int fd_reserve = 32;                      // descriptors accepting leaves free (sized at start)
  std::function<void()> changed;            // a pool's state or ready count changed
  std::function<void(const nlohmann::json&)> events;  // streams an event to subscribers
};

}  // namespace forkpool::supervisor
