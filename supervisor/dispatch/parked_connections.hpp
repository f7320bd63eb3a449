// SPDX-License-Identifier: Apache-2.0
#pragma once
// keepalive = "master": idle keep-alive connections that workers handed back (PARK),
// held by the master until the client's next request arrives, the client closes, or
// keepalive_timeout passes.
//
// Cost per parked connection: its descriptor and one map entry. They are watched in an
// epoll set of their own, which is one descriptor in the master's loop, and share one
// timer: connections are parked in time order under one timeout, so the one parked
// longest ago is always the first due.

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>

#include "base/owned_fd.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

using Clock = std::chrono::steady_clock;

class ParkedConnections {
 public:
  struct Connection {
    base::OwnedFd fd;
    std::uint64_t id = 0;
    std::uint16_t listener = 0;
    sockaddr_storage peer{};
    socklen_t peer_len = 0;
    Clock::time_point parked_at;
    std::uint32_t fd_flags = 0;  // FP_FD_* the worker's PARK gave, passed on at the resume
  };

  // Why the master closed a parked connection.
  enum class Ending {
    PeerClosed,  // the client closed it (or reset it)
    TimedOut,    // idle for keepalive_timeout
    Evicted,     // max_parked reached, or descriptors short: the oldest goes first
  };

  struct Handlers {
    std::function<void(Connection)> request;                       // bytes arrived: dispatch it again
    std::function<void(const Connection&, Ending)> closed;  // after the master closed it
  };

  // Throws std::system_error when the epoll set cannot be made.
  ParkedConnections(uv_loop_t* loop, Handlers handlers);
  ~ParkedConnections();
  ParkedConnections(const ParkedConnections&) = delete;
  ParkedConnections& operator=(const ParkedConnections&) = delete;

  // `timeout` zero: parked connections wait until the client closes them.
  void set_limits(std::chrono::milliseconds timeout, std::size_t max_parked);
  // Watches `c`; evicts the oldest first when max_parked are parked already. A
  // connection that cannot be watched (epoll_ctl failed) is closed as evicted.
  void park(Connection c);
  // A binary upgrade: parks `c` as it was, keeping its parked_at (the deadline stays).
  void adopt(Connection c);
  // Each parked connection, oldest first (for the upgrade state).
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& [at, id] : order_) {
      auto it = parked_.find(id);
      if (it != parked_.end() && it->second.parked_at == at) f(it->second);
    }
  }
  // Closes the oldest parked connection (Evicted); false when none is parked.
  bool evict_oldest();
  // Closes every parked connection without calling `closed`; returns how many.
  std::size_t close_all();
  std::size_t size() const { return parked_.size(); }

 private:
  void on_events();
  void on_timer();
  void arm_timer();
  void end(std::unordered_map<std::uint64_t, Connection>::iterator it, Ending why);
  void watch(Connection c);
  // The oldest live entry of `order_` (stale ones dropped), or parked_.end().
  std::unordered_map<std::uint64_t, Connection>::iterator oldest();

  Handlers handlers_;
  base::OwnedFd epoll_;
  std::unique_ptr<FdWatch> watch_;
  Timer timer_;
  std::chrono::milliseconds timeout_{0};
  std::size_t max_parked_ = 0;
  std::unordered_map<std::uint64_t, Connection> parked_;
  // (parked_at, id) in parking order; an entry whose connection left or was parked again
  // later is stale and skipped.
  std::deque<std::pair<Clock::time_point, std::uint64_t>> order_;
};

}  // namespace forkpool::supervisor
