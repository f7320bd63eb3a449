// SPDX-License-Identifier: Apache-2.0
#pragma once
// `forkpoolctl top`: attach to the scoreboard once, then redraw from shared memory several
// times a second until `q`, SIGINT or SIGTERM, restoring the terminal however it ends.

#include <chrono>
#include <string>

namespace forkpool::ctl {

struct TopOptions {
  std::string socket;
  std::chrono::milliseconds interval{250};
  // Print one frame to stdout and return (implied when stdout is not a terminal).
  bool once = false;
  bool colour = false;
};

// Returns the exit status. Throws ConnectionError or ReplyError when the first attach
// fails; later failures to refresh are shown on screen instead.
int run_top(const TopOptions& options);

}  // namespace forkpool::ctl
