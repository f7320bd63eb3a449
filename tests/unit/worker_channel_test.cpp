// SPDX-License-Identifier: Apache-2.0
// WorkerChannel::receive on a real SOCK_SEQPACKET pair: a record whose descriptor the
// master had no room to receive stands (its descriptor is reported dropped), while one
// carrying more descriptors than a record may is refused as malformed.

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <vector>

#include "base/owned_fd.hpp"
#include "supervisor/dispatch/worker_channel.hpp"
#include "worker/protocol.h"

using forkpool::base::OwnedFd;
using forkpool::supervisor::WorkerChannel;

namespace {

// Sends a PARK for connection `id` from the worker's end with `fds` attached.
void send_park(int worker_end, std::uint64_t id, const std::vector<int>& fds) {
  fp_msg m{};
  m.type = FP_MSG_PARK;
  m.id = id;
  iovec iov{&m, sizeof m};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  REQUIRE(::sendmsg(worker_end, &msg, 0) == static_cast<ssize_t>(sizeof m));
}

struct Pair {
  uv_loop_t loop{};
  OwnedFd worker;
  std::unique_ptr<WorkerChannel> channel;
  Pair() {
    REQUIRE(uv_loop_init(&loop) == 0);
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    worker = OwnedFd(sv[1]);
    channel = std::make_unique<WorkerChannel>(&loop, OwnedFd(sv[0]));
  }
  ~Pair() {
    channel.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }
};

}  // namespace

TEST_CASE("a PARK whose descriptor the master has no room for is a record with its descriptor dropped",
          "[channel]") {
  Pair p;
  int connection[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, connection) == 0);
  send_park(p.worker.get(), 42, {connection[0]});
  ::close(connection[0]);

  // Every descriptor number below the limit taken: the receive cannot install one.
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  std::vector<OwnedFd> filler;
  for (;;) {
    const int fd = ::dup(connection[1]);
    if (fd < 0) break;
    filler.emplace_back(fd);
    if (filler.size() > 4096) break;
  }
  const rlimit tight{static_cast<rlim_t>(filler.back().get() + 1), saved.rlim_max};
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
  fp_msg m{};
  WorkerChannel::Passed passed;
  const auto got = p.channel->receive(m, passed);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
  filler.clear();
  ::close(connection[1]);

  REQUIRE(got == WorkerChannel::Received::Record);
  CHECK(m.type == FP_MSG_PARK);
  CHECK(m.id == 42);
  CHECK(passed.dropped);
  CHECK(!passed.first);
}

TEST_CASE("a record with more descriptors than a record may carry is malformed", "[channel]") {
  Pair p;
  std::vector<OwnedFd> held;
  std::vector<int> fds;
  for (int i = 0; i < WorkerChannel::kMaxPassed + 1; ++i) {
    held.emplace_back(::dup(0));
    fds.push_back(held.back().get());
  }
  send_park(p.worker.get(), 7, fds);
  fp_msg m{};
  WorkerChannel::Passed passed;
  CHECK(p.channel->receive(m, passed) == WorkerChannel::Received::Malformed);
  CHECK(!passed.first);
}
