// SPDX-License-Identifier: Apache-2.0
#pragma once
// How many connections wait in a listening socket's accept queue: what the master of a
// shared-dispatch pool, which never accepts, knows of connections its workers have not
// taken yet. TCP reads it with TCP_INFO (for a listener, tcpi_unacked is the accept queue
// length), a Unix socket with a netlink sock_diag UNIX_DIAG query (UDIAG_SHOW_RQLEN).

#include <cstdint>
#include <optional>

namespace forkpool::supervisor {

// The accept queue length of listening socket `fd`; nullopt if it cannot be read (not a
// listener, a kernel without sock_diag for Unix sockets).
std::optional<std::uint32_t> listen_backlog(int fd);

}  // namespace forkpool::supervisor
