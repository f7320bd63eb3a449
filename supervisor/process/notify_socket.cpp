// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/notify_socket.hpp"

#include <fcntl.h>
#include "base/unix_message.hpp"
#include "supervisor/process/notify_message.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

namespace forkpool::supervisor {

using base::close_passed_fds;
using base::UnixMessage;
namespace {

// sd_notify messages are small; anything longer than this is not a notification.
constexpr std::size_t kMaxMessage = 4096;
constexpr std::size_t kMaxFds = 16;

}  // namespace

NotifySocket::NotifySocket(uv_loop_t* loop, uid_t worker_uid, NotifyHandlers handlers)
    : worker_uid_(worker_uid), handlers_(std::move(handlers)) {
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd_) throw std::system_error(errno, std::generic_category(), "socket(AF_UNIX, SOCK_DGRAM)");
  // Binding only the family asks the kernel for a unique abstract name (unix(7) autobind).
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)) != 0)
    throw std::system_error(errno, std::generic_category(), "bind (autobind) of a notify socket");
  const int one = 1;
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    throw std::system_error(errno, std::generic_category(), "setsockopt(SO_PASSCRED)");
  name_and_watch(loop);
}

NotifySocket::NotifySocket(uv_loop_t* loop, uid_t worker_uid, NotifyHandlers handlers, shm::OwnedFd socket)
    : worker_uid_(worker_uid), handlers_(std::move(handlers)), fd_(std::move(socket)) {
  ::fcntl(fd_.get(), F_SETFL, O_NONBLOCK);
  name_and_watch(loop);
}

void NotifySocket::name_and_watch(uv_loop_t* loop) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      len <= offsetof(sockaddr_un, sun_path) + 1)
    throw std::system_error(errno, std::generic_category(), "getsockname of a notify socket");
  address_ = "@" + std::string(addr.sun_path + 1, len - offsetof(sockaddr_un, sun_path) - 1);
  watch_ = std::make_unique<FdWatch>(loop, fd_.get());
  watch_->start(UV_READABLE, [this](int, int) { drain(); });
}

void NotifySocket::drain() {
  // A handler may destroy this object (a READY that completes a restart, say), so each
  // datagram is read fully before its handler runs, and the loop stops after a handler.
  for (int budget = 0; budget < 64; ++budget) {
    char buf[kMaxMessage + 1];
    UnixMessage<CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * kMaxFds)> in(buf, kMaxMessage);
    msghdr& msg = in.msg;
    const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) return;  // EAGAIN: drained
    bool trusted = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_RIGHTS) {
        close_passed_fds(c);  // BARRIER=1 passes an fd; closing it is the whole answer
      } else if (c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred;
        std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
        trusted = cred.uid == 0 || cred.uid == ::getuid() || cred.uid == worker_uid_;
      }
    }
    if (!trusted || (msg.msg_flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(n) > kMaxMessage) continue;
    handle(std::string_view(buf, static_cast<std::size_t>(n)));
    return;  // See above: `this` may be gone. Remaining datagrams wake the loop again.
  }
}

void NotifySocket::handle(std::string_view message) {
  // Collect first, act after, so a handler that destroys us ends the parsing cleanly.
  const NotifyMessage m = parse_notify_message(message);
  auto h = handlers_;  // copies: the callbacks may destroy this object
  if (m.status && h.status) h.status(*m.status);
  if (m.watchdog && h.watchdog) h.watchdog();
  if (m.stopping && h.stopping) h.stopping();
  if (m.ready && h.ready) h.ready();
}

}  // namespace forkpool::supervisor
