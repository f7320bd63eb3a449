// SPDX-License-Identifier: Apache-2.0
// Issue 10, defect 1: at a low descriptor limit the master must serve (its reserve sized
// from what it needs), refuse to start when the limit cannot hold the pools, say when a
// pool cannot accept, and accept again as soon as a descriptor is freed.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>

#include "integration/test_common.hpp"
#include "support/http_client.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;

namespace {

// Notify readiness and captured output: each worker keeps five descriptors in the master.
const std::string kHungry = "ready = \"notify\"\nstdout = \"log\"\nstderr = \"log\"\n";

std::string metrics_address(MasterProcess& m) {
  const auto match = m.wait_log("metrics on http://([^/ ]+)/metrics");
  return match.size() > 1 ? match[1].str() : "";
}

int connect_to(const std::string& address) {
  const auto colon = address.rfind(':');
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_text(int fd, const std::string& text) {
  return ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
}

// Reads until `until` appears in what arrived, the peer closes, or the receive timeout.
std::string read_until(int fd, const std::string& until) {
  std::string got;
  char buf[4096];
  while (got.find(until) == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

}  // namespace

TEST_CASE("at a low descriptor limit the master keeps serving: its reserve fits what it needs",
          "[supervisor][descriptors]") {
  Setup s(supervisor_section("metrics_listen = \"127.0.0.1:0\"") + hello_pool("web", 4, kHungry),
          {"prlimit", "--nofile=72:72", "--"});  // a few above what the budget asks for
  const std::string web = s.master->wait_listen_address("web");
  const std::string metrics = metrics_address(*s.master);
  REQUIRE(!s.master->wait_log("\\[master.ready\\] every pool has its workers ready").empty());
  for (int i = 0; i < 30; ++i) {
    INFO("request " << i);
    const auto r = http_get(web, "/", 20s);
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
  }
  const auto health = http_get(metrics, "/healthz");
  REQUIRE(health.has_value());
  CHECK(health->status == 200);
  CHECK(s.master->all_matches("(could not be started)").empty());
  stop_master(*s.master);
}

TEST_CASE("a descriptor limit that cannot hold the configured pools is refused at start",
          "[supervisor][descriptors]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("web", 16, kHungry));
  MasterProcess master(dir / "f.toml", {"prlimit", "--nofile=40:40", "--"});
  const auto status = master.wait_exit(15s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 1);
  CHECK(!master.wait_log("\\[master.start_failed\\] the descriptor limit \\(RLIMIT_NOFILE 40\\) cannot hold the "
                         "configured pools: they need at least [0-9]+")
             .empty());
  CHECK(master.all_matches("(worker.spawn)").empty());
}

TEST_CASE("a pool out of descriptors says so in /healthz and status and accepts again once one is freed",
          "[supervisor][descriptors]") {
  Setup s(supervisor_section("metrics_listen = \"127.0.0.1:0\"") +
              hello_pool("web", 1, "queue_timeout = \"0\"\n"),
          {"prlimit", "--nofile=72:72", "--"});  // a few above what the budget asks for
  const std::string web = s.master->wait_listen_address("web");
  const std::string metrics = metrics_address(*s.master);
  REQUIRE(!s.master->wait_log("\\[master.ready\\]").empty());

  // A keep-alive client holds the only worker (max_inflight = 1)...
  const int holder = connect_to(web);
  REQUIRE(holder >= 0);
  REQUIRE(send_text(holder, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
  REQUIRE(read_until(holder, "Hello, world\n").find("200 OK") != std::string::npos);
  // ...so every other connection waits in the master's queue, each on a descriptor, until
  // accepting must stop to keep the reserve free.
  std::vector<int> waiting;
  for (int i = 0; i < 60; ++i) {
    const int fd = connect_to(web);
    REQUIRE(fd >= 0);
    REQUIRE(send_text(fd, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    waiting.push_back(fd);
  }
  REQUIRE(!s.master->wait_log("\\[listener.accept_paused\\] pool web").empty());
  std::optional<HttpResponse> health;
  REQUIRE(wait_until([&] {
    health = http_get(metrics, "/healthz");
    return health && health->status == 503;
  }));
  CHECK_THAT(health->body, Catch::Contains("pool web cannot accept: out of descriptors"));
  ControlClient c = s.client();
  REQUIRE(c.connected());
  const json p = pool_status(c, "web");
  REQUIRE(p["accept_paused"].is_string());
  CHECK_THAT(p["accept_paused"].get<std::string>(), Catch::Contains("out of descriptors"));

  // The holder leaves: the worker takes queued connections, each one handed over frees a
  // descriptor, and accepting resumes without any timer.
  ::close(holder);
  for (int fd : waiting) {
    const std::string reply = read_until(fd, "Hello, world\n");
    CHECK(reply.find("200 OK") != std::string::npos);
    ::close(fd);
  }
  REQUIRE(wait_until([&] {
    health = http_get(metrics, "/healthz");
    return health && health->status == 200;
  }));
  CHECK(pool_status(c, "web")["accept_paused"].is_null());
  const json after = pool_status(c, "web");
  CHECK(counter(after, "accepted") == counter(after, "completed"));
  CHECK(counter(after, "lost") == 0);
  stop_master(*s.master);
}
