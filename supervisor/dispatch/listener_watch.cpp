// SPDX-License-Identifier: Apache-2.0
#include "supervisor/dispatch/listener_watch.hpp"

#include <sys/epoll.h>

namespace forkpool::supervisor {

std::unique_ptr<ListenerWatch> ListenerWatch::create(uv_loop_t* loop, const std::vector<int>& listeners) {
  base::OwnedFd set(::epoll_create1(EPOLL_CLOEXEC));
  if (!set) return nullptr;
  for (const int fd : listeners) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(set.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return nullptr;
  }
  return std::unique_ptr<ListenerWatch>(new ListenerWatch(loop, std::move(set)));
}

ListenerWatch::ListenerWatch(uv_loop_t* loop, base::OwnedFd set) : set_(std::move(set)), watch_(loop, set_.get()) {}

void ListenerWatch::start(std::function<void()> on_readable) {
  watch_.start(UV_READABLE, [cb = std::move(on_readable)](int, int) { cb(); });
}

void ListenerWatch::stop() { watch_.stop(); }

}  // namespace forkpool::supervisor
