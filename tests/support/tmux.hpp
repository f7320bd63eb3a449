// SPDX-License-Identifier: Apache-2.0
#pragma once
// A private tmux server for tests that need a real terminal (forkpoolctl top): killed with
// everything in it when the test ends. Its one session is "t".

#include <unistd.h>

#include <string>
#include <vector>

#include "support/run_command.hpp"

namespace forkpool::test {

class Tmux {
 public:
  Tmux() : name_("forkpool-test-" + std::to_string(::getpid())) {}
  ~Tmux() { run({"kill-server"}); }
  Tmux(const Tmux&) = delete;
  Tmux& operator=(const Tmux&) = delete;

  RunResult run(std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/tmux", "-L", name_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, std::chrono::seconds(10));
  }
  // Starts `command` (run by the shell) in session "t" on a width x height terminal.
  RunResult start(const std::string& command, int width = 160, int height = 40) {
    return run({"new-session", "-d", "-s", "t", "-x", std::to_string(width), "-y", std::to_string(height), command});
  }
  std::string screen() { return run({"capture-pane", "-p", "-t", "t"}).out; }
  RunResult keys(const std::string& keys) { return run({"send-keys", "-t", "t", keys}); }

 private:
  std::string name_;
};

}  // namespace forkpool::test
