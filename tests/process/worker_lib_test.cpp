// SPDX-License-Identifier: Apache-2.0
// libforkpool-worker against a fake master: a forked child runs a worker loop with the
// library (it never asserts, it _exit()s a code), the test plays the master with raw
// protocol records and checks what comes back, the scoreboard and the exit code.

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "forkpool/worker.h"
#include "process/fake_master.hpp"

using forkpool::test::exchange;
using forkpool::test::FakeMaster;

namespace {

// Descriptors open in this process; the same way of counting both times cancels out the
// descriptor opendir() itself uses.
int count_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

// Serves one ping/pong exchange on a blocking connection.
bool serve_ping(int fd) {
  char buf[4];
  std::size_t got = 0;
  while (got < sizeof buf) {
    const ssize_t n = ::read(fd, buf + got, sizeof buf - got);
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return std::memcmp(buf, "ping", 4) == 0 && ::write(fd, "pong", 4) == 4;
}

int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + status;
}

// An abstract datagram socket standing in for the master's NOTIFY_SOCKET.
struct NotifyListener {
  int fd = -1;
  std::string address;
  NotifyListener() {
    address = "@forkpool-worker-lib-test-" + std::to_string(::getpid());
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, address.data() + 1, address.size() - 1);
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) std::abort();
  }
  ~NotifyListener() { ::close(fd); }
  std::string receive() {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return "";
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
  }
};

}  // namespace

TEST_CASE("worker lib: READY, CONN served, DONE with the same id, scoreboard, end of work",
          "[worker][process]") {
  FakeMaster master;
  NotifyListener notify;
  const std::string address = master.listen_address();
  master.fork_worker(
      [&]() -> int {
        fp_worker* w = fp_worker_open();
        if (w == nullptr) return 10;
        if (std::strcmp(fp_worker_pool(w), "web") != 0 || fp_worker_number(w) != 0 ||
            fp_worker_generation(w) != 1 || fp_worker_listener_count(w) != 2 ||
            address != fp_worker_listener(w, 0) || fp_worker_listener(w, 2) != nullptr)
          return 11;
        if (fp_worker_ready(w) != 0) return 12;
        int served = 0;
        fp_conn c;
        int r;
        while ((r = fp_worker_next(w, &c)) == 0) {
          if (c.listener != 1 || fp_worker_in_flight(w) != 1) return 13;
          if ((::fcntl(c.fd, F_GETFD) & FD_CLOEXEC) == 0) return 14;
          if (!serve_ping(c.fd)) return 15;
          if (fp_worker_done(w, &c) != 0) return 16;
          if (fp_worker_done(w, &c) != -1 || errno != EINVAL) return 17;  // twice: refused
          ++served;
        }
        if (r != FP_WORKER_END || served != 2) return 18;
        if (fp_worker_next(w, &c) != FP_WORKER_END || fp_worker_try_next(w, &c) != FP_WORKER_END)
          return 19;
        if (fp_worker_rejected(w) != 0) return 20;
        fp_worker_close(w);
        return 0;
      },
      {{"NOTIFY_SOCKET", notify.address}});

  auto ready = master.receive();
  REQUIRE(ready);
  CHECK(ready->type == FP_MSG_READY);
  CHECK(ready->reserved == 0);  // a blocking worker does not ask for non-blocking connections
  CHECK(notify.receive() == "READY=1");
  master.scoreboard().mark_ready(0);

  for (std::uint64_t id : {42ull, 0x1234567890abcdefull}) {
    const int client = master.pass_connection(id, 1);
    CHECK(exchange(client, "ping", 4) == "pong");
    auto done = master.receive();
    REQUIRE(done);
    CHECK(done->type == FP_MSG_DONE);
    CHECK(done->id == id);
    // The worker closed its end before DONE: the client sees EOF.
    CHECK(exchange(client, "", 1, std::chrono::seconds(5)).empty());
    ::close(client);
  }
  const auto snap = master.scoreboard().read_worker(0);
  CHECK(snap.connections_handled == 2);
  CHECK(snap.in_flight == 0);
  CHECK(snap.anomalies == 0);

  master.close_master();
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("worker lib: malformed records are dropped and their descriptors closed",
          "[worker][process]") {
  FakeMaster master;
  constexpr unsigned long kRejected = 8;
  master.fork_worker([]() -> int {
    fp_worker* w = fp_worker_open();
    if (w == nullptr) return 10;
    const int before = count_fds();
    if (fp_worker_ready(w) != 0) return 11;
    fp_conn c;
    int served = 0;
    int r;
    while ((r = fp_worker_next(w, &c)) == 0) {
      if (c.id != 200 || !serve_ping(c.fd)) return 12;
      if (fp_worker_done(w, &c) != 0) return 13;
      ++served;
    }
    if (r != FP_WORKER_END || served != 1) return 14;
    if (fp_worker_rejected(w) != kRejected) return 15;
    if (fp_worker_in_flight(w) != 0) return 16;
    const int after = count_fds();
    if (after != before) return 30 + (after - before);  // descriptors leaked
    fp_worker_close(w);
    return 0;
  });
  REQUIRE(master.receive());  // READY

  auto spare = [&] {
    auto [client, accepted] = master.connect_pair();
    ::close(client);
    return accepted;
  };
  auto send_and_close = [&](std::uint16_t type, std::uint64_t id, std::vector<int> fds,
                            std::size_t size) {
    CHECK(master.send(type, 0, id, fds, size));
    for (int fd : fds) ::close(fd);
  };
  send_and_close(FP_MSG_CONN, 100, {}, 16);                  // CONN without a descriptor
  send_and_close(FP_MSG_CONN, 101, {spare(), spare()}, 16);  // CONN with two
  send_and_close(FP_MSG_CONN, 102, {spare()}, 8);            // truncated, with a descriptor
  send_and_close(FP_MSG_CONN, 103, {}, 8);                   // truncated
  send_and_close(FP_MSG_READY, 0, {spare()}, 16);            // a descriptor on READY
  send_and_close(FP_MSG_CONN, 104, {spare()}, 32);           // oversized, with a descriptor
  send_and_close(FP_MSG_CONN, 105, {spare()}, 0);            // empty record, with a descriptor
  send_and_close(FP_MSG_CONN, 106, {}, 0);                   // empty record: not end of work
  send_and_close(99, 0, {}, 16);                             // unknown type: ignored
  send_and_close(FP_MSG_DONE, 7, {}, 16);                    // wrong direction: ignored

  // CONNs that cannot be delivered are still answered, so the master's count is right.
  auto d100 = master.receive();
  auto d101 = master.receive();
  REQUIRE(d100);
  REQUIRE(d101);
  CHECK((d100->type == FP_MSG_DONE && d100->id == 100));
  CHECK((d101->type == FP_MSG_DONE && d101->id == 101));

  const int client = master.pass_connection(200);
  CHECK(exchange(client, "ping", 4) == "pong");
  auto done = master.receive();
  REQUIRE(done);
  CHECK(done->id == 200);
  ::close(client);
  master.close_master();
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("worker lib: a non-blocking worker asks for non-blocking connections and sets the mode only when the CONN does not say it is",
          "[worker][process]") {
  FakeMaster master;
  master.fork_worker([]() -> int {
    fp_worker* w = fp_worker_open();
    if (w == nullptr) return 10;
    fp_worker_set_nonblocking(w, 1);
    if (fp_worker_ready(w) != 0) return 11;
    fp_conn c;
    // CONN 1 without FP_FD_NONBLOCK: its mode is unknown, so the library sets it.
    if (fp_worker_next(w, &c) != 0 || c.id != 1) return 12;
    if ((::fcntl(c.fd, F_GETFL) & O_NONBLOCK) == 0) return 13;
    if (::write(c.fd, "one!", 4) != 4 || fp_worker_done(w, &c) != 0) return 14;
    // CONN 2 says FP_FD_NONBLOCK: the library believes it and leaves the descriptor as
    // it came (the fake master's is blocking, so the skipped ioctl shows).
    if (fp_worker_next(w, &c) != 0 || c.id != 2) return 15;
    if ((::fcntl(c.fd, F_GETFL) & O_NONBLOCK) != 0) return 16;
    if (::write(c.fd, "two!", 4) != 4 || fp_worker_done(w, &c) != 0) return 17;
    if (fp_worker_next(w, &c) != FP_WORKER_END) return 18;
    fp_worker_close(w);
    return 0;
  });
  const auto ready = master.receive();
  REQUIRE(ready);
  CHECK(ready->type == FP_MSG_READY);
  CHECK(ready->reserved == FP_FD_NONBLOCK);
  const int a = master.pass_connection(1);
  CHECK(exchange(a, "", 4) == "one!");
  REQUIRE(master.receive());  // DONE 1
  const int b = master.pass_connection(2, 0, FP_FD_NONBLOCK);
  CHECK(exchange(b, "", 4) == "two!");
  REQUIRE(master.receive());  // DONE 2
  ::close(a);
  ::close(b);
  master.close_master();
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("worker lib: fp_conn_nodelay tells what the CONN said of TCP_NODELAY, and a PARK repeats it",
          "[worker][process]") {
  FakeMaster master;
  master.fork_worker(
      []() -> int {
        fp_worker* w = fp_worker_open();
        if (w == nullptr) return 10;
        if (fp_worker_ready(w) != 0) return 11;
        if (fp_conn_nodelay(nullptr) != 0) return 12;
        fp_conn a, b;
        // CONN 1 without FP_FD_NODELAY: unknown. CONN 2 with it.
        if (fp_worker_next(w, &a) != 0 || a.id != 1 || fp_conn_nodelay(&a) != 0) return 13;
        if (fp_worker_next(w, &b) != 0 || b.id != 2 || fp_conn_nodelay(&b) != 1) return 14;
        // Parked, each says what it was told; a parked conn is no longer live.
        if (fp_worker_park(w, &a) != 0 || fp_worker_park(w, &b) != 0) return 15;
        if (fp_conn_nodelay(&b) != 0) return 16;
        if (fp_worker_next(w, &a) != FP_WORKER_END) return 17;
        fp_worker_close(w);
        return 0;
      },
      {{"FORKPOOL_KEEPALIVE", "master"}});
  const auto ready = master.receive();
  REQUIRE(ready);
  CHECK(ready->type == FP_MSG_READY);
  const int a = master.pass_connection(1);
  const int b = master.pass_connection(2, 0, FP_FD_NODELAY);
  const auto park_a = master.receive();
  const auto park_b = master.receive();
  REQUIRE(park_a);
  REQUIRE(park_b);
  CHECK(park_a->type == FP_MSG_PARK);
  CHECK(park_a->id == 1);
  CHECK((park_a->reserved & FP_FD_NODELAY) == 0);
  CHECK(park_b->type == FP_MSG_PARK);
  CHECK(park_b->id == 2);
  CHECK((park_b->reserved & FP_FD_NODELAY) == FP_FD_NODELAY);
  ::close(a);
  ::close(b);
  master.close_master();
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("worker lib: try_next, and connections held at end of work are finished",
          "[worker][process]") {
  FakeMaster master;
  master.fork_worker([]() -> int {
    fp_worker* w = fp_worker_open();
    if (w == nullptr) return 10;
    fp_worker_set_nonblocking(w, 1);
    fp_conn c;
    if (fp_worker_try_next(w, &c) != FP_WORKER_PENDING) return 11;
    if (fp_worker_ready(w) != 0) return 12;
    // Wait until both connections and the EOF are queued, then take them.
    pollfd p{fp_worker_fd(w), POLLRDHUP, 0};
    if (::poll(&p, 1, 10000) != 1) return 13;
    fp_conn held[2];
    for (auto& h : held) {
      if (fp_worker_try_next(w, &h) != 0) return 14;
      if ((::fcntl(h.fd, F_GETFL) & O_NONBLOCK) == 0) return 15;
    }
    if (fp_worker_in_flight(w) != 2) return 16;
    // The master is gone: DONE cannot be delivered, which is not an error, before the
    // end of work was read (the send fails with EPIPE) and after.
    if (::write(held[0].fd, "bye!", 4) != 4 || fp_worker_done(w, &held[0]) != 0) return 17;
    if (fp_worker_try_next(w, &c) != FP_WORKER_END) return 18;
    if (::write(held[1].fd, "bye!", 4) != 4 || fp_worker_done(w, &held[1]) != 0) return 19;
    if (fp_worker_next(w, &c) != FP_WORKER_END) return 20;
    fp_worker_close(w);
    return 0;
  });
  REQUIRE(master.receive());  // READY
  const int a = master.pass_connection(1);
  const int b = master.pass_connection(2);
  master.close_master();
  CHECK(exchange(a, "", 4) == "bye!");
  CHECK(exchange(b, "", 4) == "bye!");
  ::close(a);
  ::close(b);
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("worker lib: fp_worker_refuse_more delivers what was sent, then ends, and the master's next send fails",
          "[worker][process]") {
  FakeMaster master;
  int gate[2];
  REQUIRE(::pipe2(gate, O_CLOEXEC) == 0);
  master.fork_worker([gate]() -> int {
    fp_worker* w = fp_worker_open();
    if (w == nullptr) return 10;
    if (fp_worker_ready(w) != 0) return 11;
    fp_conn c;
    // The read that brings connection 1 takes everything pending: the library would
    // answer the next try_next "pending" without asking the kernel.
    if (fp_worker_next(w, &c) != 0 || c.id != 1) return 12;
    if (fp_worker_done(w, &c) != 0) return 13;
    // Connection 2 is queued when the worker decides to stop on its own.
    pollfd p{fp_worker_fd(w), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return 14;
    if (fp_worker_refuse_more(w) != 0) return 15;
    if (fp_worker_try_next(w, &c) != 0 || c.id != 2) return 16;
    if (fp_worker_done(w, &c) != 0) return 17;  // DONE still goes out
    if (fp_worker_try_next(w, &c) != FP_WORKER_END) return 18;
    if (fp_worker_refuse_more(w) != 0) return 19;  // again, after the end: nothing to do
    // Stay until the master has seen its send fail.
    char byte;
    if (::read(gate[0], &byte, 1) != 1) return 20;
    fp_worker_close(w);
    return 0;
  });
  REQUIRE(master.receive());  // READY
  ::close(master.pass_connection(1));
  auto done = master.receive();
  REQUIRE(done);
  CHECK((done->type == FP_MSG_DONE && done->id == 1));
  ::close(master.pass_connection(2));
  done = master.receive();
  REQUIRE(done);
  CHECK((done->type == FP_MSG_DONE && done->id == 2));
  // The worker runs still (it waits on the gate), and its channel refuses a CONN.
  CHECK(!master.send(FP_MSG_CONN, 0, 3));
  CHECK(errno == EPIPE);
  int status = 0;
  CHECK(::waitpid(master.pid(), &status, WNOHANG) == 0);
  CHECK(::write(gate[1], "x", 1) == 1);
  CHECK(exit_code(master.wait_exit()) == 0);
  ::close(gate[0]);
  ::close(gate[1]);
}

TEST_CASE("worker lib: fp_worker_open refuses what is not a forkpool channel", "[worker]") {
  struct Saved {
    std::string channel, protocol;
    bool had_channel, had_protocol;
  } saved{};
  if (const char* v = std::getenv("FORKPOOL_CHANNEL_FD"))
    saved.had_channel = true, saved.channel = v;
  if (const char* v = std::getenv("FORKPOOL_PROTOCOL"))
    saved.had_protocol = true, saved.protocol = v;

  auto open_errno = [](const char* channel, const char* protocol) {
    if (channel != nullptr)
      ::setenv("FORKPOOL_CHANNEL_FD", channel, 1);
    else
      ::unsetenv("FORKPOOL_CHANNEL_FD");
    if (protocol != nullptr)
      ::setenv("FORKPOOL_PROTOCOL", protocol, 1);
    else
      ::unsetenv("FORKPOOL_PROTOCOL");
    errno = 0;
    fp_worker* w = fp_worker_open();
    const int e = errno;
    fp_worker_close(w);
    return w == nullptr ? e : 0;
  };
  int pipefd[2];
  REQUIRE(::pipe2(pipefd, O_CLOEXEC) == 0);
  const int stream = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);

  CHECK(open_errno(nullptr, nullptr) == ENOENT);
  CHECK(open_errno("", nullptr) == ENOENT);
  CHECK(open_errno("abc", nullptr) == EBADF);
  CHECK(open_errno("-3", nullptr) == EBADF);
  CHECK(open_errno("99999999999", nullptr) == EBADF);
  CHECK(open_errno("1000000", nullptr) == EBADF);
  CHECK(open_errno(std::to_string(pipefd[0]).c_str(), nullptr) == ENOTSOCK);
  CHECK(open_errno(std::to_string(stream).c_str(), nullptr) == EPROTOTYPE);
  CHECK(open_errno(std::to_string(pair[1]).c_str(), "2") == EPROTONOSUPPORT);
  // A good channel without scoreboard or identity still opens.
  ::unsetenv("FORKPOOL_SCOREBOARD_FD");
  const int dup = ::fcntl(pair[1], F_DUPFD_CLOEXEC, 0);
  CHECK(open_errno(std::to_string(dup).c_str(), "1") == 0);  // closes dup

  ::close(pipefd[0]);
  ::close(pipefd[1]);
  ::close(stream);
  ::close(pair[0]);
  ::close(pair[1]);
  if (saved.had_channel)
    ::setenv("FORKPOOL_CHANNEL_FD", saved.channel.c_str(), 1);
  else
    ::unsetenv("FORKPOOL_CHANNEL_FD");
  if (saved.had_protocol)
    ::setenv("FORKPOOL_PROTOCOL", saved.protocol.c_str(), 1);
  else
    ::unsetenv("FORKPOOL_PROTOCOL");
}
