// SPDX-License-Identifier: Apache-2.0
#include "supervisor/dispatch/parked_connections.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <system_error>

namespace forkpool::supervisor {
namespace {

// Events handled per wake-up, so one burst cannot starve the loop.
constexpr int kEventBatch = 256;

}  // namespace

ParkedConnections::ParkedConnections(uv_loop_t* loop, Handlers handlers)
    : handlers_(std::move(handlers)), epoll_(::epoll_create1(EPOLL_CLOEXEC)), timer_(loop) {
  if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  watch_ = std::make_unique<FdWatch>(loop, epoll_.get());
  watch_->start(UV_READABLE, [this](int, int) { on_events(); });
}

ParkedConnections::~ParkedConnections() {
  watch_.reset();  // before the epoll fd closes
  close_all();
}

void ParkedConnections::set_limits(std::chrono::milliseconds timeout, std::size_t max_parked) {
  timeout_ = timeout;
  max_parked_ = max_parked;
  while (max_parked_ > 0 && parked_.size() > max_parked_ && evict_oldest()) {
  }
  arm_timer();
}

void ParkedConnections::park(Connection c) {
  while (max_parked_ > 0 && parked_.size() >= max_parked_ && evict_oldest()) {
  }
  c.parked_at = Clock::now();
  watch(std::move(c));
}

void ParkedConnections::adopt(Connection c) { watch(std::move(c)); }

void ParkedConnections::watch(Connection c) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = c.id;
  const std::uint64_t id = c.id;
  auto [it, inserted] = parked_.insert_or_assign(id, std::move(c));
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, it->second.fd.get(), &ev) != 0) {
    end(it, Ending::Evicted);
    return;
  }
  order_.emplace_back(it->second.parked_at, id);
  if (order_.size() == 1 || !timer_.active()) arm_timer();
}

auto ParkedConnections::oldest() -> std::unordered_map<std::uint64_t, Connection>::iterator {
  while (!order_.empty()) {
    const auto [at, id] = order_.front();
    auto it = parked_.find(id);
    if (it != parked_.end() && it->second.parked_at == at) return it;
    order_.pop_front();  // stale: resumed, closed, or parked again since
  }
  return parked_.end();
}

bool ParkedConnections::evict_oldest() {
  auto it = oldest();
  if (it == parked_.end()) return false;
  end(it, Ending::Evicted);
  return true;
}

void ParkedConnections::end(std::unordered_map<std::uint64_t, Connection>::iterator it, Ending why) {
  Connection c = std::move(it->second);
  parked_.erase(it);
  // Out of the epoll set before the close: closing removes a registration only with the
  // last reference to the socket, and a worker may have kept a copy of what it parked
  // (one that forked while holding it, say). A registration left behind would report
  // the hang-up for ever, for an id no longer parked: a busy loop.
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
  c.fd.reset();
  if (handlers_.closed) handlers_.closed(c, why);
}

std::size_t ParkedConnections::close_all() {
  const std::size_t n = parked_.size();
  for (const auto& [id, c] : parked_) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);  // as in end()
  parked_.clear();  // closes every descriptor
  order_.clear();
  timer_.stop();
  return n;
}

void ParkedConnections::on_events() {
  epoll_event events[kEventBatch];
  const int n = ::epoll_wait(epoll_.get(), events, kEventBatch, 0);
  for (int i = 0; i < n; ++i) {
    auto it = parked_.find(events[i].data.u64);
    if (it == parked_.end()) continue;  // handled earlier in this batch
    // Readable without a hang-up or error: bytes of the next request, nothing to ask.
    // With one, a peek tells a request sent before the client's FIN from a plain close.
    if ((events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      char byte;
      const ssize_t got = ::recv(it->second.fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;  // spurious
      if (got <= 0) {  // 0: the client closed; < 0: reset or another error on its side
        end(it, Ending::PeerClosed);
        continue;
      }
    }
    // The master's copy closes once the worker has it, but the worker's keeps the
    // registration alive: it must go first. (EPOLLONESHOT instead would leave a disabled
    // registration per fd number the connection ever had in the master until it closes,
    // since the number changes with every round trip; with thousands of parked
    // connections that grows without bound.)
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
    Connection c = std::move(it->second);
    parked_.erase(it);
    if (handlers_.request) handlers_.request(std::move(c));
  }
  arm_timer();
}

void ParkedConnections::arm_timer() {
  auto it = timeout_.count() > 0 ? oldest() : parked_.end();
  if (it == parked_.end()) {
    timer_.stop();  // nothing parked (or no timeout): no wake-ups
    return;
  }
  const auto due = it->second.parked_at + timeout_;
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now());
  timer_.start(std::max(wait, std::chrono::milliseconds(0)) + std::chrono::milliseconds(1), [this] { on_timer(); });
}

void ParkedConnections::on_timer() {
  const auto now = Clock::now();
  for (auto it = oldest(); it != parked_.end() && now - it->second.parked_at >= timeout_; it = oldest())
    end(it, Ending::TimedOut);
  arm_timer();
}

}  // namespace forkpool::supervisor
