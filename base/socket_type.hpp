// SPDX-License-Identifier: Apache-2.0
#pragma once
// What kind of socket a descriptor is: SOCK_STREAM, SOCK_DGRAM, ...; -1 when it is no
// socket at all (a pipe, a file). One getsockopt(SO_TYPE).

#include <sys/socket.h>

namespace forkpool::base {

inline int socket_type(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 ? type : -1;
}

}  // namespace forkpool::base
