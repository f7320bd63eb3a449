// SPDX-License-Identifier: Apache-2.0
#include "supervisor/dispatch/worker_channel.hpp"

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "base/unix_message.hpp"

namespace forkpool::supervisor {
namespace {

// recvmsg() returns 0 both at the end of the channel and for an empty record, and Linux
// sets no MSG_EOR on AF_UNIX records to tell them apart. It is the end only when the
// worker shut its side down (POLLRDHUP) and no bytes are left queued: records with
// content after an empty one must still be read (a DONE, say). Empty records left
// behind carry nothing.
bool at_end_of_channel(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) < 0 || (p.revents & (POLLRDHUP | POLLHUP)) == 0) return false;
  int queued = 0;
  return ::ioctl(fd, SIOCINQ, &queued) != 0 || queued == 0;
}

}  // namespace

WorkerChannel::WorkerChannel(uv_loop_t* loop, base::OwnedFd fd) : loop_(loop), fd_(std::move(fd)) {
  ::fcntl(fd_.get(), F_SETFL, O_NONBLOCK);
  watch_ = std::make_unique<FdWatch>(loop, fd_.get());
}

WorkerChannel::WorkerChannel(uv_loop_t* loop, base::OwnedFd fd, State state) : WorkerChannel(loop, std::move(fd)) {
  state_ = state == State::Blocked ? State::Open : state;
}

WorkerChannel::~WorkerChannel() = default;

void WorkerChannel::transition(State to) {
  // Closed is final; Gone only moves on to Closed; everything else may end or go.
  const bool allowed = state_ == to || to == State::Closed ||
                       (state_ != State::Closed && state_ != State::Gone) ||
                       (state_ == State::Gone && to == State::Closed);
  if (!allowed) std::abort();
  state_ = to;
}

void WorkerChannel::watch(std::function<void()> readable, std::function<void()> writable) {
  readable_ = std::move(readable);
  writable_ = std::move(writable);
  rewatch();
}

void WorkerChannel::rewatch() {
  if (!watch_) return;
  const int events = UV_READABLE | (state_ == State::Blocked ? UV_WRITABLE : 0);
  watch_->start(events, [this](int status, int ev) {
    if (state_ == State::Blocked && (status < 0 || (ev & UV_WRITABLE) != 0)) {
      transition(State::Open);
      rewatch();
      if (writable_) writable_();
      return;  // the handler may have changed this worker; read on the next wake-up
    }
    if (readable_) readable_();
  });
}

SendResult WorkerChannel::send_connection(int fd, std::uint16_t listener, std::uint64_t id,
                                          std::uint32_t fd_flags) {
  if (!can_send()) return state_ == State::Blocked ? SendResult::WouldBlock : SendResult::Gone;
  fp_msg m{FP_MSG_CONN, listener, fd_flags, id};
  base::UnixMessage<CMSG_SPACE(sizeof(int))> out(&m, sizeof m);
  out.attach_fd(fd);
  ssize_t n;
  do {
    n = ::sendmsg(fd_.get(), &out.msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
    transition(State::Blocked);
    rewatch();
    return SendResult::WouldBlock;
  }
  if (n != static_cast<ssize_t>(sizeof m)) {
    // EPIPE, ECONNRESET, ...: the worker is gone or closed its end. The caller keeps the
    // connection; this worker gets no more.
    transition(State::Gone);
    return SendResult::Gone;
  }
  return SendResult::Sent;
}

WorkerChannel::Received WorkerChannel::receive(fp_msg& out) {
  Passed ignored;
  return receive(out, ignored);  // `ignored` closes whatever came along
}

namespace {

// Takes the descriptors of one SCM_RIGHTS message: the first into `passed` (if it has
// none yet), the rest closed.
void take_passed_fds(const cmsghdr* c, WorkerChannel::Passed& passed) {
  if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return;
  const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  for (std::size_t i = 0; i < count; ++i) {
    int fd;
    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
    if (passed.count++ == 0) passed.first = base::OwnedFd(fd);
    else ::close(fd);
  }
}

}  // namespace

WorkerChannel::Received WorkerChannel::receive(fp_msg& out, Passed& passed) {
  passed = Passed{};
  if (!fd_) return Received::EndOfFile;
  base::UnixMessage<CMSG_SPACE(sizeof(int) * kMaxPassed)> in(&out, sizeof out);
  msghdr& msg = in.msg;
  ssize_t n;
  do {
    // MSG_TRUNC: the size of a longer record as sent, for the warning.
    n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Received::Nothing;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) take_passed_fds(c, passed);
  if (n <= 0 || n != static_cast<ssize_t>(sizeof out) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0)
    passed.first.reset();  // only a well-formed record may hand anything over
  if (n == 0 && !at_end_of_channel(fd_.get())) {
    bad_size_ = 0;
    bad_control_ = false;
    ++malformed_;
    return Received::Malformed;
  }
  if (n <= 0) {  // EOF or error: the worker closed its end or is gone
    if (watch_) watch_->stop();
    if (state_ != State::Closed) transition(State::Gone);
    return Received::EndOfFile;
  }
  // Control data cut short with room left for more descriptors: the master had none free
  // (RLIMIT_NOFILE), not a worker sending too many. The record stands, or a PARK would
  // leave its connection held for ever by a worker that let it go.
  const bool no_room = (msg.msg_flags & MSG_CTRUNC) != 0 && passed.count < kMaxPassed;
  if (n != static_cast<ssize_t>(sizeof out) || (msg.msg_flags & MSG_TRUNC) != 0 ||
      ((msg.msg_flags & MSG_CTRUNC) != 0 && !no_room)) {
    bad_size_ = n;
    bad_control_ = (msg.msg_flags & MSG_CTRUNC) != 0;
    ++malformed_;
    return Received::Malformed;
  }
  passed.dropped = no_room;
  passed.fd_flags = out.reserved & (FP_FD_NONBLOCK | FP_FD_NODELAY);  // the flags this master knows
  return Received::Record;
}

std::string WorkerChannel::describe_malformed() const {
  constexpr auto kSize = sizeof(fp_msg);
  if (bad_size_ == 0) return fmt::format("sent an empty record (a record is {} bytes); ignored", kSize);
  if (bad_size_ != static_cast<ssize_t>(kSize))
    return fmt::format("sent a {}-byte record (a record is {} bytes); ignored", bad_size_, kSize);
  return "sent a record with more descriptors than a record may carry; ignored";
}

void WorkerChannel::warn_malformed(std::string_view pool, unsigned worker, pid_t pid) {
  if (!bad_messages_) {
    bad_messages_ = std::make_unique<log::RepeatedWarning>(loop_, "channel.bad_message");
    bad_subject_ = fmt::format("worker {}[{}] pid {}", pool, worker, pid);  // a flood formats it once
  }
  bad_messages_->warn(bad_subject_, [this] { return bad_subject_ + " " + describe_malformed(); });
}

void WorkerChannel::end_work() {
  if (state_ != State::Open && state_ != State::Blocked) return;
  transition(State::Ended);
  ::shutdown(fd_.get(), SHUT_WR);
  rewatch();  // no more interest in writability
}

void WorkerChannel::close() {
  if (bad_messages_) bad_messages_->flush();  // the worker is gone: sum up what was held back
  watch_.reset();
  fd_.reset();
  transition(State::Closed);
}

}  // namespace forkpool::supervisor
