// SPDX-License-Identifier: Apache-2.0
// The metrics HTTP server on a real libuv loop in a thread, driven by raw sockets so that
// malformed, oversized, stalled and excess connections can be made on purpose.

#include "supervisor/observe/metrics_http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/observe/prometheus.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::supervisor;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kMetricsBody = "# HELP forkpool_up x\n# TYPE forkpool_up gauge\nforkpool_up 1\n";

// The server runs on its own loop thread; it is created before the thread starts and
// destroyed on the loop thread, after which the loop must end with every handle closed.
class ServerThread {
 public:
  explicit ServerThread(MetricsHttpLimits limits = {}) {
    uv_loop_init(&loop_);
    server_ = std::make_unique<MetricsHttpServer>(
        &loop_, "127.0.0.1:0",
        [this](std::string_view path) -> MetricsHttpServer::Response {
          ++calls_;
          if (path == "/metrics") return {200, "", kMetricsBody};
          if (path == "/healthz") return {200, "", "ok\n"};
          if (path == "/status") return {200, "", R"({"master":{}})"};
          throw std::logic_error("unexpected path");
        },
        limits);
    port_ = server_->port();
    stop_.data = this;
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      auto* self = static_cast<ServerThread*>(a->data);
      self->server_.reset();
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~ServerThread() {
    uv_async_send(&stop_);
    thread_.join();
    const int rc = uv_loop_close(&loop_);  // UV_EBUSY would mean a handle was left open
    CHECK(rc == 0);
  }
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  std::uint16_t port() const { return port_; }
  int calls() const { return calls_; }

 private:
  uv_loop_t loop_{};
  uv_async_t stop_{};
  std::unique_ptr<MetricsHttpServer> server_;
  std::uint16_t port_ = 0;
  std::atomic<int> calls_{0};
  std::thread thread_;
};

class Client {
 public:
  explicit Client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool send(const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Reads until the server closes; false if it did not within `deadline`.
  bool read_to_end(std::string& out, std::chrono::milliseconds deadline = 5s) {
    const auto end = Clock::now() + deadline;
    char buf[4096];
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }

  // Without waiting: has the server closed this connection (EOF or reset pending)?
  bool closed_by_server() {
    char buf[256];
    while (true) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
      // Data without a close yet: keep draining.
    }
  }

 private:
  int fd_;
};

struct Reply {
  int status = 0;
  std::string head;
  std::string body;
  bool closed = false;
};

Reply exchange(std::uint16_t port, const std::string& request,
               std::chrono::milliseconds deadline = 5s) {
  Client c(port);
  Reply r;
  REQUIRE(c.send(request));
  std::string raw;
  r.closed = c.read_to_end(raw, deadline);
  const auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) == 0 && end != std::string::npos) {
    r.status = std::stoi(raw.substr(9, 3));
    r.head = raw.substr(0, end + 2);
    r.body = raw.substr(end + 4);
  }
  return r;
}

bool has_header(const Reply& r, const std::string& line) {
  return r.head.find("\r\n" + line + "\r\n") != std::string::npos;
}

}  // namespace

TEST_CASE("GET and HEAD of the three paths are answered by the handler and closed",
          "[metrics_http]") {
  ServerThread s;
  REQUIRE(s.port() != 0);

  const Reply m = exchange(s.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  CHECK(m.closed);
  CHECK(m.status == 200);
  CHECK(m.body == kMetricsBody);
  CHECK(has_header(m, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  CHECK(has_header(m, "Content-Length: " + std::to_string(kMetricsBody.size())));
  CHECK(has_header(m, "Connection: close"));

  const Reply head = exchange(s.port(), "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(has_header(head, "Content-Length: " + std::to_string(kMetricsBody.size())));

  const Reply status = exchange(s.port(), "GET /status?pool=web HTTP/1.0\r\n\r\n");
  CHECK(status.status == 200);
  CHECK(status.body == R"({"master":{}})");
  CHECK(has_header(status, "Content-Type: application/json"));

  // Bare LF line ends and the absolute form are accepted too.
  const Reply health = exchange(s.port(), "GET http://127.0.0.1/healthz HTTP/1.1\nHost: x\n\n");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");

  // A request split into pieces is put together.
  Client c(s.port());
  REQUIRE(c.send("GE"));
  REQUIRE(c.send("T /metr"));
  REQUIRE(c.send("ics HTTP/1.1\r\nHo"));
  REQUIRE(c.send("st: x\r\n\r\n"));
  std::string raw;
  CHECK(c.read_to_end(raw));
  CHECK(raw.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(s.calls() == 5);
}

TEST_CASE("unknown paths get 404, other methods 405, garbage 400, a huge head 431",
          "[metrics_http]") {
  ServerThread s;
  const Reply nope = exchange(s.port(), "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(nope.closed);
  CHECK(nope.status == 404);
  CHECK(exchange(s.port(), "GET /metrics/ HTTP/1.1\r\n\r\n").status == 404);

  const Reply post =
      exchange(s.port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(post.closed);
  CHECK(post.status == 405);
  CHECK(has_header(post, "Allow: GET, HEAD"));
  CHECK(exchange(s.port(), "DELETE /status HTTP/1.1\r\n\r\n").status == 405);

  // Garbage is refused as soon as it cannot be a request line, not after the timeout.
  const auto t0 = Clock::now();
  const Reply tls =
      exchange(s.port(), std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), 2s);
  CHECK(tls.status == 400);
  CHECK(Clock::now() - t0 < 2s);
  for (const std::string bad :
       {"GET /metrics HTTP/2.0\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
        "\r\n\r\n"}) {
    INFO(bad);
    CHECK(exchange(s.port(), bad, 2s).status == 400);
  }

  const std::string huge =
      "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(16 * 1024, 'a') + "\r\n\r\n";
  const Reply big = exchange(s.port(), huge);
  CHECK(big.closed);
  CHECK(big.status == 431);
  // A head that is just under the limit is fine.
  const std::string near = "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n";
  CHECK(exchange(s.port(), near).status == 200);
  // Just over it, even without the end of the head, is refused without waiting for more.
  Client c(s.port());
  REQUIRE(c.send("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(8200, 'a')));
  std::string raw;
  CHECK(c.read_to_end(raw, 2s));
  CHECK(raw.rfind("HTTP/1.1 431 ", 0) == 0);
  CHECK(s.calls() == 1);
}

TEST_CASE("a client that sends half a request and stalls is closed after 5 seconds",
          "[metrics_http]") {
  ServerThread s;
  Client c(s.port());
  const auto t0 = Clock::now();
  REQUIRE(c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n"));
  CHECK(forkpool::test::wait_until([&] { return c.closed_by_server(); }, 8s));
  const auto waited = Clock::now() - t0;
  CHECK(waited >= 4500ms);
  CHECK(waited < 8s);
  CHECK(s.calls() == 0);
}

TEST_CASE("idle connections beyond the limit cannot keep a scraper out", "[metrics_http]") {
  // A long timeout, so that only the connection limit can free room during the test.
  MetricsHttpLimits limits;
  limits.request_timeout = 30s;
  ServerThread s(limits);
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 100; ++i) idle.push_back(std::make_unique<Client>(s.port()));
  const auto count_closed = [&] {
    int n = 0;
    for (auto& c : idle) n += c->closed_by_server() ? 1 : 0;
    return n;
  };
  // At most 64 stay open: the 36 others are closed at once.
  CHECK(forkpool::test::wait_until([&] { return count_closed() >= 36; }, 5s));

  const auto t0 = Clock::now();
  const Reply r = exchange(s.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 5s);
  CHECK(r.status == 200);
  CHECK(r.body == kMetricsBody);
  CHECK(Clock::now() - t0 < 5s);
  // Room for it was made by closing one more idle connection, still never more than 64.
  CHECK(forkpool::test::wait_until([&] { return count_closed() >= 37; }, 5s));
  CHECK(count_closed() <= 38);

  // And many scrapes in a row each get theirs.
  for (int i = 0; i < 20; ++i)
    CHECK(exchange(s.port(), "GET /healthz HTTP/1.1\r\n\r\n").status == 200);
}

TEST_CASE("the server rejects a bad or busy address at construction", "[metrics_http]") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const auto handler = [](std::string_view) { return MetricsHttpServer::Response{}; };
  CHECK_THROWS_WITH(MetricsHttpServer(&loop, "nonsense", handler),
                    Catch::StartsWith("nonsense: expected HOST:PORT"));  // the master adds where it is written
  CHECK_THROWS_AS(MetricsHttpServer(&loop, "example.com:80", handler), std::runtime_error);
  {
    MetricsHttpServer first(&loop, "localhost:0", handler);
    CHECK(first.address() == "127.0.0.1:" + std::to_string(first.port()));
    CHECK_THROWS_WITH(MetricsHttpServer(&loop, first.address(), handler),
                      Catch::Contains("address already in use"));
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // lets the close callbacks free the handles
  CHECK(uv_loop_close(&loop) == 0);
}
