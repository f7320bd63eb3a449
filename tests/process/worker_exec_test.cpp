// SPDX-License-Identifier: Apache-2.0
// Exec'd workers against a fake master: forkpool-hello in master dispatch and the Python
// module (worker/python/forkpool_worker.py). The end-to-end tests with the real master
// live in tests/integration.

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "process/fake_master.hpp"

#include "support/skip.hpp"

using forkpool::test::skip_test;

using forkpool::test::exchange;
using forkpool::test::FakeMaster;

namespace {

int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + status;
}

std::string find_python() {
  for (const char* p : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// Starts forkpool-hello against `master` and waits for its READY.
void start_hello(FakeMaster& master) {
  master.exec_worker({FORKPOOL_BINARY_DIR "/worker/hello/forkpool-hello"});
  auto ready = master.receive();
  REQUIRE(ready);
  REQUIRE(ready->type == FP_MSG_READY);
}

}  // namespace

TEST_CASE("forkpool-hello in master dispatch serves passed connections and exits at end of work",
          "[worker][hello][process]") {
  FakeMaster master;
  master.exec_worker({FORKPOOL_BINARY_DIR "/worker/hello/forkpool-hello"});
  auto ready = master.receive();
  REQUIRE(ready);
  CHECK(ready->type == FP_MSG_READY);
  master.scoreboard().mark_ready(0);

  // Keep-alive: two requests on one connection, then the client closes.
  const int keep = master.pass_connection(7);
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string r1 = exchange(keep, req, 1);
  CHECK(r1.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(r1.find("X-Worker: web-0") != std::string::npos);
  const std::string r2 = exchange(keep, req, 1);
  CHECK(r2.rfind("HTTP/1.1 200", 0) == 0);
  // Several in flight at once.
  const int a = master.pass_connection(8);
  const int b = master.pass_connection(9);
  const std::string close_req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  CHECK(exchange(a, close_req, 1 << 20, std::chrono::seconds(5)).find("Hello") !=
        std::string::npos);
  CHECK(exchange(b, close_req, 1 << 20, std::chrono::seconds(5)).find("Hello") !=
        std::string::npos);
  ::close(keep);
  std::vector<std::uint64_t> done;
  for (int i = 0; i < 3; ++i) {
    auto m = master.receive();
    REQUIRE(m);
    CHECK(m->type == FP_MSG_DONE);
    done.push_back(m->id);
  }
  std::sort(done.begin(), done.end());
  CHECK(done == std::vector<std::uint64_t>{7, 8, 9});
  CHECK(forkpool::test::wait_until_handled(master.scoreboard(), 3));

  // End of work with a connection held: its request is still answered, then it exits 0.
  const int held = master.pass_connection(10);
  master.close_master();
  // Whether the worker reads the request or the end of work first is a race: the answer
  // may be keep-alive (then the connection closes after the idle grace) or say
  // Connection: close. Either way it is answered in full and the connection ends.
  const std::string last = exchange(held, req, 1 << 20, std::chrono::seconds(5));
  CHECK(last.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(last.ends_with("Hello, world\n"));
  ::close(a);
  ::close(b);
  ::close(held);
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("forkpool-hello idle in master dispatch stops at a SIGTERM from outside, whenever it comes",
          "[worker][hello][process]") {
  // With no connection held, forkpool-hello sleeps in a read of the channel instead of
  // epoll_wait. A stop signal must end that read whenever it arrives, also when the master
  // did not end the work first (someone else sent the signal): the channel stays open here.
  const std::string close_req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (int round = 0; round < 30; ++round) {
    FakeMaster master;
    start_hello(master);
    if (round % 2 == 1) {
      // Back to the wait after a connection.
      const int client = master.pass_connection(static_cast<std::uint64_t>(round));
      CHECK(exchange(client, close_req, 1 << 20, std::chrono::seconds(5)).ends_with("Hello, world\n"));
      ::close(client);
      auto done = master.receive();
      REQUIRE(done);
      CHECK(done->type == FP_MSG_DONE);
    }
    // A different moment each round: before the worker is back in its read, or long after.
    std::this_thread::sleep_for(std::chrono::microseconds(round * 97 % 1500));
    REQUIRE(::kill(master.pid(), SIGTERM) == 0);
    INFO("round " << round);
    CHECK(exit_code(master.wait_exit(std::chrono::seconds(5))) == 0);
  }
}

TEST_CASE("forkpool-hello stopped by a signal from outside serves what the master sent and refuses the rest",
          "[worker][hello][process]") {
  // No end of work from the master here: someone else sent the signal. A CONN the master
  // sends while the worker drains must either be served or fail to send (so the master
  // gives it to another worker); none may wait unread in the channel until the worker
  // exits.
  FakeMaster master;
  start_hello(master);
  // A request half sent keeps the worker draining (alive) for a few seconds.
  const int held = master.pass_connection(1);
  const std::string head = "GET / HTTP/1.1\r\nHost: x\r\n";
  REQUIRE(::send(held, head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size()));
  // The signal comes once the worker holds it and waits in epoll_wait: the drain, not the
  // stop signal's wake-up of a read of the channel, must close the channel to the master.
  // (The slot shows the connection from inside that read already.)
  const auto in_epoll = [pid = master.pid()] {
    std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
    long nr = -1;
    in >> nr;
    return nr == SYS_epoll_wait || nr == SYS_epoll_pwait;
  };
  const auto taken_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!(master.scoreboard().read_worker(0).in_flight == 1 && in_epoll()) &&
         std::chrono::steady_clock::now() < taken_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(master.scoreboard().read_worker(0).in_flight == 1);
  REQUIRE(in_epoll());
  REQUIRE(::kill(master.pid(), SIGTERM) == 0);

  const std::string close_req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  bool refused = false;
  int refused_errno = 0;
  int served = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (std::uint64_t id = 2; !refused && std::chrono::steady_clock::now() < end; ++id) {
    auto [client, accepted] = master.connect_pair();
    const bool sent = master.send(FP_MSG_CONN, 0, id, {accepted});
    refused_errno = errno;
    ::close(accepted);
    if (!sent) {
      refused = true;
    } else {
      INFO("connection " << id << " was sent: it must be answered");
      CHECK(exchange(client, close_req, 1 << 20, std::chrono::seconds(3)).ends_with("Hello, world\n"));
      ++served;
    }
    ::close(client);
  }
  INFO(served << " connection(s) served before the channel refused");
  REQUIRE(refused);
  CHECK(refused_errno == EPIPE);
  // Refused while the worker still runs (it holds the half-sent request).
  int status = 0;
  CHECK(::waitpid(master.pid(), &status, WNOHANG) == 0);
  // The held request is still answered, then the worker exits 0.
  CHECK(exchange(held, "\r\n", 1 << 20, std::chrono::seconds(5)).ends_with("Hello, world\n"));
  ::close(held);
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("forkpool-hello draining gives an idle keep-alive connection its whole grace, however long it was idle",
          "[worker][hello][process]") {
  // docs/protocol.md section 3: an idle keep-alive connection is read on for a grace
  // (forkpool-hello: 1 s) from the moment the drain begins. Counted from its last request
  // instead, a connection idle for longer was closed at the loop's next sweep, anywhere
  // in the first second, and a request on its way met a closed connection.
  FakeMaster master;
  start_hello(master);
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const int asks = master.pass_connection(1);   // sends a request 300 ms into the drain
  const int waits = master.pass_connection(2);  // sends nothing: when does it close?
  CHECK(exchange(asks, req, 1).rfind("HTTP/1.1 200", 0) == 0);
  CHECK(exchange(waits, req, 1).rfind("HTTP/1.1 200", 0) == 0);
  // Idle longer than the grace (and the loop's sweep interval) before the stop.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto stop = std::chrono::steady_clock::now();
  REQUIRE(::kill(master.pid(), SIGTERM) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string answer = exchange(asks, req, 1 << 20, std::chrono::seconds(5));
  CHECK(answer.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(answer.find("Connection: close") != std::string::npos);
  CHECK(exchange(waits, "", 1 << 20, std::chrono::seconds(5)).empty());  // until EOF
  const auto closed_after = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - stop);
  INFO("the idle connection closed " << closed_after.count() << " ms after the stop signal");
  CHECK(closed_after >= std::chrono::milliseconds(950));
  CHECK(closed_after < std::chrono::milliseconds(4000));  // the grace and a sweep, not for ever
  ::close(asks);
  ::close(waits);
  CHECK(exit_code(master.wait_exit()) == 0);
}

TEST_CASE("the Python module receives a connection, sends DONE and ends with the channel",
          "[worker][python][process]") {
  const std::string python = find_python();
  if (python.empty()) {
    skip_test("python3 not found");
  }
  const std::string script =
      "import sys\n"
      "sys.path.insert(0, '" FORKPOOL_SOURCE_DIR
      "/worker/python')\n"
      "import forkpool_worker\n"
      "n = 0\n"
      "with forkpool_worker.Worker() as w:\n"
      "    assert w.pool == 'web' and w.worker == 0 and len(w.listeners) == 2, 'identity'\n"
      "    for conn in w:\n"
      "        assert conn.forkpool_listener == 1 and conn.forkpool_address == w.listeners[1]\n"
      "        data = conn.recv(4)\n"
      "        conn.sendall(b'pong:%d' % conn.forkpool_id)\n"
      "        w.done(conn)\n"
      "        n += 1\n"
      "    assert w.rejected == 2, w.rejected\n"
      "sys.exit(0 if n == 2 else 3)\n";
  FakeMaster master;
  master.exec_worker({python, "-c", script});
  auto ready = master.receive();
  REQUIRE(ready);
  CHECK(ready->type == FP_MSG_READY);
  master.scoreboard().mark_ready(0);

  // Malformed first: a CONN without its fd is answered with DONE, a short record dropped.
  CHECK(master.send(FP_MSG_CONN, 1, 99, {}, 16));
  CHECK(master.send(FP_MSG_CONN, 1, 98, {}, 8));
  auto refused = master.receive();
  REQUIRE(refused);
  CHECK((refused->type == FP_MSG_DONE && refused->id == 99));

  for (std::uint64_t id : {5ull, 6ull}) {
    const int client = master.pass_connection(id, 1);
    CHECK(exchange(client, "ping", 6) == "pong:" + std::to_string(id));
    auto done = master.receive();
    REQUIRE(done);
    CHECK(done->type == FP_MSG_DONE);
    CHECK(done->id == id);
    ::close(client);
  }
#if defined(__x86_64__)
  const auto snap = master.scoreboard().read_worker(0);
  CHECK(snap.connections_handled == 2);
  CHECK(snap.in_flight == 0);
  CHECK(snap.anomalies == 0);
#endif
  master.close_master();
  CHECK(exit_code(master.wait_exit(std::chrono::seconds(20))) == 0);
}
