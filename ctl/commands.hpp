// SPDX-License-Identifier: Apache-2.0
#pragma once
// Running one forkpoolctl command once the command line is parsed: pick the socket, talk
// to the master, print the outcome, and map it to an exit status (client.hpp, wait.hpp).

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace forkpool::ctl {

struct Invocation {
  std::string socket;  // from -s; empty = choose (socket_path.hpp)
  std::string config;  // from -c
  bool json = false;
  std::chrono::milliseconds timeout{5000};  // for one reply
  // For a change that is waited for (--timeout when given, else this default).
  std::chrono::milliseconds wait_timeout{120'000};
  bool wait = true;  // false: --no-wait
};

// Sends `request` and prints the reply: raw with --json, else as text (a table for
// `status`). Streams for `events`. Commands that change something (restart, stop,
// start, scale, reload) then wait until the change is done, unless --no-wait; for
// restart, stop and start, a request without a pool (or pool "all") acts on every pool.
int run_request(const Invocation& inv, const nlohmann::json& request);

// `forkpoolctl top`.
int run_top_command(const Invocation& inv, bool once, std::chrono::milliseconds interval);

// Whether `cmd` is one that run_request waits for.
bool waits_for_change(const std::string& cmd);

}  // namespace forkpool::ctl
