// SPDX-License-Identifier: Apache-2.0
#pragma once
// Wakes the master of a shared-dispatch pool when a connection waits on one of its
// listeners, without touching the listeners. libuv's uv_poll_init makes the fd it watches
// non-blocking, and a listener's O_NONBLOCK belongs to the open file every worker shares:
// a worker that chose a non-blocking listener and accepts until EAGAIN would block in
// accept(2) if the flag changed under it, and one that chose a blocking one would see
// EAGAIN. So the listeners go into an epoll set of their own (level-triggered EPOLLIN), and
// libuv watches that set's descriptor, which nobody else holds.
//
// The watch must go before the listeners close: an epoll registration lives as long as
// the open file, which the workers keep open.

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "base/owned_fd.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

class ListenerWatch {
 public:
  // nullptr with errno when the set cannot be made (out of descriptors): the caller then
  // has to look by other means.
  static std::unique_ptr<ListenerWatch> create(uv_loop_t* loop, const std::vector<int>& listeners);
  ListenerWatch(const ListenerWatch&) = delete;
  ListenerWatch& operator=(const ListenerWatch&) = delete;

  // `on_readable` runs on each loop turn while a connection waits on any listener and the
  // watch is started (level-triggered).
  void start(std::function<void()> on_readable);
  void stop();

 private:
  ListenerWatch(uv_loop_t* loop, base::OwnedFd set);
  base::OwnedFd set_;  // declared first: closed after the watch on it is gone
  FdWatch watch_;
};

}  // namespace forkpool::supervisor
