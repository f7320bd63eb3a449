// SPDX-License-Identifier: Apache-2.0
#pragma once
// recvmsg/sendmsg boilerplate for one data buffer plus ancillary data (SCM_RIGHTS,
// SCM_CREDENTIALS), shared by the worker channel and the notify sockets.

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

namespace forkpool::base {

// A msghdr over one buffer with room for `ControlBytes` of ancillary data. It points
// into itself, so it is neither copied nor moved.
template <std::size_t ControlBytes>
struct UnixMessage {
  UnixMessage(void* data, std::size_t length) : iov{data, length} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  UnixMessage(const UnixMessage&) = delete;
  UnixMessage& operator=(const UnixMessage&) = delete;

  // Attaches one descriptor to send (SCM_RIGHTS).
  void attach_fd(int fd) {
    static_assert(ControlBytes >= CMSG_SPACE(sizeof(int)));
    msg.msg_controllen = CMSG_SPACE(sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }

  iovec iov;
  alignas(cmsghdr) char control[ControlBytes] = {};
  msghdr msg{};
};

// Closes every descriptor an SCM_RIGHTS message carried: the master never keeps what a
// worker sends it (a notify BARRIER=1 fd is answered by closing it).
inline void close_passed_fds(const cmsghdr* c) {
  if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return;
  const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  for (std::size_t i = 0; i < count; ++i) {
    int fd;
    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
    ::close(fd);
  }
}

}  // namespace forkpool::base
