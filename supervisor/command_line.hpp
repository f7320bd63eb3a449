// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's command line: what to do, or what to print and the exit status. Parsed by
// hand rather than with CLI11: the master has five options, and CLI11 (string streams)
// would link the C++ locale machinery into it, ~400 KiB of text resident in every master
// (docs/performance.md, master memory). forkpoolctl keeps CLI11.

#include <optional>
#include <string>

namespace forkpool::supervisor {

struct CommandLine {
  std::string config_file;  // -c, --config; empty: the default search paths
  bool check_only = false;  // --check
  bool upgrade_info = false;  // --upgrade-info
  int state_fd = -1;        // --upgrade-state-fd (internal: the new image of a binary upgrade)
};

struct CommandLineResult {
  std::optional<CommandLine> run;  // set: go on with these; unset: print and exit
  int exit_code = 0;
  std::string out;  // for stdout (--help, --version)
  std::string err;  // for stderr (what was wrong, and a pointer to --help)
};

// Accepts "-c FILE", "-cFILE", "--config FILE" and "--config=FILE"; "--" ends the
// options. Anything unknown, a missing or bad value, or a stray argument: exit_code 2
// (the exit status of a config error) with a message naming it.
CommandLineResult parse_command_line(int argc, const char* const* argv);

}  // namespace forkpool::supervisor
