#pragma once
// Running one forkpoolctl command once the command line is parsed: pick the socket, talk
// to the master, print the outcome, and map it to an exit status (client.hpp).

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace forkpool::ctl {

struct Invocation {
  std::string socket;  // from -s; empty = choose (socket_path.hpp)
  bool json = false;
  std::chrono::milliseconds timeout{5000};
};

// Sends `request` and prints the reply: raw with --json, else as text (a table for
// `status`). Streams for `events`.
int run_request(const Invocation& inv, const nlohmann::json& request);

// `forkpoolctl top`.
int run_top_command(const Invocation& inv, bool once, std::chrono::milliseconds interval);

}  // namespace forkpool::ctl
