#pragma once
// Which control socket forkpoolctl talks to when -s is not given.

#include <filesystem>
#include <string>

namespace forkpool::ctl {

struct SocketChoice {
  std::string path;
  // Where the path came from, for error messages ("-s", "FORKPOOL_SOCKET",
  // "./forkpool.toml", "default").
  std::string source;
  // Set when ./forkpool.toml exists but could not be loaded: why, to append to a failed
  // connection's message.
  std::string note;
};

// `explicit_path` (from -s) wins, then $FORKPOOL_SOCKET, then the control_socket of
// `config_file` (default ./forkpool.toml), then ./forkpool.sock.
SocketChoice choose_socket(const std::string& explicit_path,
                           const std::filesystem::path& config_file = "forkpool.toml");

}  // namespace forkpool::ctl
