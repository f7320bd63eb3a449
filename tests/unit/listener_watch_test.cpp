// SPDX-License-Identifier: Apache-2.0
// ListenerWatch on real listening sockets and a real libuv loop: it wakes when a connection
// waits on any of its listeners, and never changes a listener's O_NONBLOCK, which belongs
// to the open file the workers of a shared-dispatch pool share.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <vector>

#include "base/owned_fd.hpp"
#include "supervisor/dispatch/listener_watch.hpp"

using forkpool::base::OwnedFd;
using forkpool::supervisor::ListenerWatch;

namespace {

struct TcpListener {
  OwnedFd fd;
  sockaddr_in address{};
  explicit TcpListener(bool nonblocking) {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
    REQUIRE(fd);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t len = sizeof address;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &len) == 0);
    REQUIRE(::listen(fd.get(), 16) == 0);
  }
  bool nonblocking() const { return (::fcntl(fd.get(), F_GETFL) & O_NONBLOCK) != 0; }
  OwnedFd connect() const {
    OwnedFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(c.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
    return c;
  }
};

struct Loop {
  uv_loop_t loop{};
  Loop() { REQUIRE(uv_loop_init(&loop) == 0); }
  ~Loop() {
    uv_run(&loop, UV_RUN_NOWAIT);  // lets closed handles finish
    uv_loop_close(&loop);
  }
  // One turn that polls without blocking.
  void turn() { uv_run(&loop, UV_RUN_NOWAIT); }
};

}  // namespace

TEST_CASE("a listener watch wakes when a connection waits and leaves each listener's O_NONBLOCK as it was",
          "[listener_watch]") {
  Loop l;
  TcpListener blocking(false), nonblocking(true);
  int woken = 0;
  {
    auto watch = ListenerWatch::create(&l.loop, {blocking.fd.get(), nonblocking.fd.get()});
    REQUIRE(watch != nullptr);
    watch->start([&] { ++woken; });
    l.turn();
    CHECK(woken == 0);  // nothing waits
    CHECK_FALSE(blocking.nonblocking());
    CHECK(nonblocking.nonblocking());

    // A connection on either listener wakes it, level-triggered until it is accepted.
    for (TcpListener* listener : {&blocking, &nonblocking}) {
      const int before = woken;
      OwnedFd client = listener->connect();
      l.turn();
      CHECK(woken == before + 1);
      l.turn();
      CHECK(woken == before + 2);
      OwnedFd taken(::accept4(listener->fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      REQUIRE(taken);
      l.turn();
      CHECK(woken == before + 2);
    }

    // Stopped, it does not wake.
    watch->stop();
    OwnedFd client = blocking.connect();
    l.turn();
    CHECK(woken == 4);
    watch->start([&] { ++woken; });
    l.turn();
    CHECK(woken == 5);
  }
  CHECK_FALSE(blocking.nonblocking());
  CHECK(nonblocking.nonblocking());
}

TEST_CASE("no listener watch is made of a descriptor that is not open", "[listener_watch]") {
  Loop l;
  CHECK(ListenerWatch::create(&l.loop, {-1}) == nullptr);
}
