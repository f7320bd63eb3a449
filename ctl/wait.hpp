// SPDX-License-Identifier: Apache-2.0
#pragma once
// Waiting for a change the master accepted (restart, stop, start, scale, reload, ...)
// to be done: status is asked again and again on one connection (a master that moved its
// control socket in a reload keeps answering it there); when that connection ends (a
// master that re-executed itself), a new one is made to the socket found again, and a
// plan says how far the change is. Progress goes to a terminal as one line that updates in place, and
// anywhere else as a plain line each time it changes.

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ctl/client.hpp"

namespace forkpool::ctl {

struct Progress {
  enum class Outcome { Pending, Done, Failed };
  Outcome outcome = Outcome::Pending;
  std::string line;  // how far it is ("restart web: 2 of 4 workers replaced, 2 left"), or the result
  // A change of several pools (all_of): the outcome of each one settled so far, done or
  // failed, in the order of the requests. One that failed does not end the wait for the
  // others; when it ends with a failure, each of these is told.
  std::vector<Progress> parts;
};

// Reads one status reply (the whole {"ok":true,"pools":[...]} object).
using ProgressCheck = std::function<Progress(const nlohmann::json& status)>;

struct WaitPlan {
  std::string what;  // "restart web", for messages
  ProgressCheck check;
};

struct WaitOptions {
  std::string socket;
  // Finds the socket again for a new connection (the config file may name a new one
  // after a reload); empty: `socket` as it is.
  std::function<std::string()> find_socket;
  std::chrono::milliseconds timeout{120'000};  // for the whole change
  std::chrono::milliseconds reply_timeout{5'000};
  bool progress = true;  // false: say nothing until the end (--json)
  bool tty = false;      // stdout is a terminal: one updating line
};

// forkpoolctl's exit statuses for a waited change: kExitOk when done, kExitErrorReply
// when it failed (the reason printed), kExitNotDone when the time ran out or the master
// went away (nothing listening at its socket for a second) before it was done.
inline constexpr int kExitNotDone = 3;

// `connection`: the one the request went over, asked first.
int wait_for(const WaitPlan& plan, const WaitOptions& options, std::optional<Client> connection = std::nullopt);

}  // namespace forkpool::ctl
