// SPDX-License-Identifier: Apache-2.0
#pragma once
// The listening sockets of every pool: bound here, or adopted from systemd socket
// activation (LISTEN_FDS) when a passed socket has the configured address.

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "base/owned_fd.hpp"
#include "base/socket_file.hpp"

namespace forkpool::supervisor {

using base::OwnedFd;

// One listening socket. Shared (std::shared_ptr) by the configuration generation that
// bound it and every pool that uses it: it stays open, the very same socket, for as long
// as any of them needs it, across reloads, and closes (removing its socket file) when the
// last one lets go.
struct Listener {
  Listener() = default;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();

  config::ListenAddress address;  // as configured
  OwnedFd fd;
  std::string bound;       // the real address, "tcp://127.0.0.1:41234" when port 0 was asked
  int backlog = 0;         // as last passed to listen(2)
  bool adopted = false;    // passed in by systemd; never unlinked by us
  bool created_file = false;  // a Unix socket file we made and remove when closing
  base::SocketFile file;      // that file, removed only while its path still names it
  bool nodelay = false;    // TCP_NODELAY set by this master (master dispatch)
  bool nonblocking = false;  // O_NONBLOCK set by this master (master dispatch)
  int defer_accept = 0;    // TCP_DEFER_ACCEPT seconds set by this master (keepalive = "master")

  // Applies a changed backlog to the open socket (listen(2) again); false with errno.
  bool set_backlog(int backlog);
  // Non-blocking while only the master accepts (master dispatch); blocking again when the
  // workers take over (shared dispatch), as socket-activated programs expect. The flag
  // belongs to the open file every worker shares, so once they accept the master leaves
  // it as they set it and only undoes its own setting, `nonblocking` (docs/configuration.md,
  // "What a worker receives").
  void set_nonblocking(bool on);
  // TCP only: sets or clears TCP_NODELAY, which the connections it accepts inherit. Set
  // for master dispatch (docs/protocol.md, FP_FD_NODELAY); true if the socket now has it
  // as asked, false for a Unix socket or a failure.
  bool set_nodelay(bool on);
  // TCP only: TCP_DEFER_ACCEPT, so a client that connects and sends nothing stays in the
  // kernel, not in the master's queue or a worker, for about `seconds` (0: off). Set for
  // keepalive = "master", whose pools wait for a request before taking a worker.
  bool set_defer_accept(int seconds);
  // Clears what master dispatch set (`nonblocking`, `nodelay`, `defer_accept`): when the
  // workers take the socket over (shared dispatch), and when a socket systemd passed is let go.
  void undo_master_settings();
  // The same but O_NONBLOCK, which a worker that accepts may depend on: what may be undone
  // while such workers run.
  void undo_master_options();
  // Whether the open file has O_NONBLOCK now (whoever set it).
  bool is_nonblocking() const;
  // Closes the socket now and removes its file (shutdown).
  void close();
};

using ListenerRef = std::shared_ptr<Listener>;

// Sockets passed by systemd (or systemd-socket-activate) at start-up.
class InheritedSockets {
 public:
  // Takes LISTEN_FDS/LISTEN_PID from the environment and unsets them; only descriptors
  // that are open sockets count. Called first thing in main() (before anything of the
  // master's own is open, so a LISTEN_FDS naming descriptors that were never passed
  // cannot take the master's own for sockets); from_environment() does it if not.
  static void claim_at_start();
  // The sockets claim_at_start() found (and a warning for what it ignored).
  static InheritedSockets from_environment();
  // The passed socket bound to `address`, if any (ownership moves to the caller).
  OwnedFd take(const config::ListenAddress& address);
  // Closes the passed sockets nobody claimed and returns their addresses, in the order
  // they were passed ("tcp://127.0.0.1:8081", "unix:/run/app.sock").
  std::vector<std::string> close_unclaimed();
  std::size_t count() const { return fds_.size(); }

 private:
  std::vector<OwnedFd> fds_;
};

// Binds or adopts one listener. Throws std::runtime_error naming the syscall and address.
ListenerRef open_listener(const config::ListenAddress& address, int backlog, InheritedSockets& inherited);

// The `listener.open` line of a listener `pool` got (at start or from a reload): the port
// the kernel chose for port 0 is only known from it and from status.
void log_opened(const std::string& pool, const Listener& listener);

// Removes a stale Unix socket file at `path` (nobody accepts on it); throws
// std::runtime_error if a live process listens there or the path is not a socket.
void prepare_socket_path(const std::filesystem::path& path);


}  // namespace forkpool::supervisor
