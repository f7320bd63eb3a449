// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which control socket forkpoolctl talks to: -s SOCKET, else the control_socket of
// -c CONFIG, else $FORKPOOL_SOCKET, else that of ./forkpool.toml, else that of
// /etc/forkpool/forkpool.toml (the files the master itself looks for), else the packaged
// default /run/forkpool/forkpool.sock when it exists.

#include <filesystem>
#include <string>
#include <vector>

namespace forkpool::ctl {

struct SocketSearch {
  std::string socket;  // -s; empty = not given
  std::string config;  // -c; empty = not given
  std::vector<std::filesystem::path> config_files;  // default: config::config_search_paths()
  std::filesystem::path packaged = "/run/forkpool/forkpool.sock";
};

struct SocketChoice {
  std::string path;  // empty: nothing found, or the place that should have said was unusable
  // Where the path came from, for error messages ("-s", "$FORKPOOL_SOCKET",
  // "./forkpool.toml", ...).
  std::string source;
  // Every place looked at, in order, with what was found there, for the message when
  // nothing was found.
  std::vector<std::string> tried;
  // A config file that was named or found but gives no socket: why (a syntax error...).
  std::string problem;
};

SocketChoice choose_socket(SocketSearch search);

}  // namespace forkpool::ctl
