// SPDX-License-Identifier: Apache-2.0
// ListenerWatch on real listening sockets and a real libuv loop: it wakes when a connection
// waits on any of its listeners, and never changes a listener's O_NONBLOCK, which belongs
// to the open file the workers of a shared-dispatch pool share.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "base/owned_fd.hpp"
#include "supervisor/dispatch/listener_watch.hpp"
#include "supervisor/generation/listeners.hpp"

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

TEST_CASE("a listener systemd passed gets back what master dispatch set on it when the master lets it go",
          "[listener]") {
  TcpListener socket_unit(false);  // the socket unit's own copy, which outlives the master
  auto l = std::make_unique<forkpool::supervisor::Listener>();
  l->address.kind = forkpool::config::ListenAddress::Kind::Tcp;
  l->fd.reset(::fcntl(socket_unit.fd.get(), F_DUPFD_CLOEXEC, 3));
  REQUIRE(l->fd);
  l->adopted = true;
  REQUIRE(l->set_defer_accept(5));
  REQUIRE(l->set_nodelay(true));
  l->set_nonblocking(true);
  auto option = [&](int name) {
    int value = -1;
    socklen_t len = sizeof value;
    REQUIRE(::getsockopt(socket_unit.fd.get(), IPPROTO_TCP, name, &value, &len) == 0);
    return value;
  };
  CHECK(option(TCP_DEFER_ACCEPT) > 0);
  CHECK(option(TCP_NODELAY) != 0);
  CHECK(socket_unit.nonblocking());
  l.reset();  // the master exits, or a reload drops the listener
  CHECK(option(TCP_DEFER_ACCEPT) == 0);
  CHECK(option(TCP_NODELAY) == 0);
  CHECK(!socket_unit.nonblocking());

  // One the master bound itself is closed as it is (nobody else holds it).
  TcpListener own(false);
  auto mine = std::make_unique<forkpool::supervisor::Listener>();
  mine->address.kind = forkpool::config::ListenAddress::Kind::Tcp;
  mine->fd.reset(::fcntl(own.fd.get(), F_DUPFD_CLOEXEC, 3));
  REQUIRE(mine->set_defer_accept(5));
  mine.reset();
  int value = -1;
  socklen_t len = sizeof value;
  REQUIRE(::getsockopt(own.fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &value, &len) == 0);
  CHECK(value > 0);
}
