#pragma once
// The listening sockets of every pool: bound here, or adopted from systemd socket
// activation (LISTEN_FDS) when a passed socket has the configured address.

#include <string>
#include <vector>

#include "config/config.hpp"
#include "base/owned_fd.hpp"

namespace forkpool::supervisor {

using base::OwnedFd;

struct Listener {
  config::ListenAddress address;  // as configured
  OwnedFd fd;
  std::string bound;       // the real address, "tcp://127.0.0.1:41234" when port 0 was asked
  bool adopted = false;    // passed in by systemd; never unlinked by us
  bool created_file = false;  // a Unix socket file we made and remove at exit
};

// Sockets passed by systemd (or systemd-socket-activate) at start-up.
class InheritedSockets {
 public:
  // Takes LISTEN_FDS/LISTEN_PID from the environment and unsets them.
  static InheritedSockets from_environment();
  // The passed socket bound to `address`, if any (ownership moves to the caller).
  OwnedFd take(const config::ListenAddress& address);
  // Closes the passed sockets nobody claimed and returns how many there were.
  std::size_t close_unclaimed();
  std::size_t count() const { return fds_.size(); }

 private:
  std::vector<OwnedFd> fds_;
};

// Binds or adopts one listener. Throws std::runtime_error naming the syscall and address.
Listener open_listener(const config::ListenAddress& address, int backlog, InheritedSockets& inherited);

// Removes a stale Unix socket file at `path` (nobody accepts on it); throws
// std::runtime_error if a live process listens there or the path is not a socket.
void prepare_socket_path(const std::filesystem::path& path);

// Removes Unix socket files this master created.
void remove_socket_file(const Listener& listener);

}  // namespace forkpool::supervisor
