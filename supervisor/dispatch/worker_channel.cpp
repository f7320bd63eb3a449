#include "supervisor/dispatch/worker_channel.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>

#include "base/unix_message.hpp"

namespace forkpool::supervisor {

WorkerChannel::WorkerChannel(uv_loop_t* loop, base::OwnedFd fd) : fd_(std::move(fd)) {
  ::fcntl(fd_.get(), F_SETFL, O_NONBLOCK);
  watch_ = std::make_unique<FdWatch>(loop, fd_.get());
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

SendResult WorkerChannel::send_connection(int fd, std::uint16_t listener, std::uint64_t id) {
  if (!can_send()) return state_ == State::Blocked ? SendResult::WouldBlock : SendResult::Gone;
  fp_msg m{FP_MSG_CONN, listener, 0, id};
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
  if (!fd_) return Received::EndOfFile;
  base::UnixMessage<CMSG_SPACE(sizeof(int) * 4)> in(&out, sizeof out);
  msghdr& msg = in.msg;
  ssize_t n;
  do {
    n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Received::Nothing;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) base::close_passed_fds(c);
  if (n <= 0) {  // EOF or error: the worker closed its end or is gone
    if (watch_) watch_->stop();
    if (state_ != State::Closed) transition(State::Gone);
    return Received::EndOfFile;
  }
  if (n != static_cast<ssize_t>(sizeof out) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0)
    return Received::Malformed;
  return Received::Record;
}

void WorkerChannel::end_work() {
  if (state_ != State::Open && state_ != State::Blocked) return;
  transition(State::Ended);
  ::shutdown(fd_.get(), SHUT_WR);
  rewatch();  // no more interest in writability
}

void WorkerChannel::close() {
  watch_.reset();
  fd_.reset();
  transition(State::Closed);
}

}  // namespace forkpool::supervisor
