// SPDX-License-Identifier: Apache-2.0
// forkpool-wsgi (SPEC section 1, issue 13) through the real master: a real Flask app, a
// minimal Django project and plain WSGI callables, served over TCP and Unix listeners,
// with keep-alive, bodies both ways, errors, and the pool's lifecycle (graceful stop,
// max_requests, request_timeout, rolling restart, reload, a broken deploy).

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/test_common.hpp"
#include "support/http_client.hpp"
#include "support/http_connection.hpp"
#include "support/run_command.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;

namespace {

const std::string kApps = std::string(FORKPOOL_SOURCE_DIR) + "/tests/integration/wsgi_apps";
const std::string kFlaskHello = "Hello from Flask\n";

void require_python_module(const std::string& module) {
  const auto r = run_command({"/usr/bin/python3", "-c", "import " + module}, 30s);
  if (!r.exited || r.exit_code != 0)
    skip_test("python3-" + module + " is not installed (scripts/install-deps.sh installs it)");
}

// A pool running forkpool-wsgi from the build tree. `args`: more arguments before the app,
// each already quoted and followed by ", ". ready = "notify": a worker gets connections
// once its app is imported (forkpool-wsgi sends READY after the import), as docs/wsgi.md
// recommends.
std::string wsgi_pool(const std::string& name, const std::string& app, int workers, const std::string& extra = "",
                      const std::string& args = "", const std::string& listen = "\"tcp://127.0.0.1:0\"") {
  return "[pools." + name + "]\ncommand = [" + quoted(std::string(FORKPOOL_BINARY_DIR) + "/forkpool-wsgi") + ", " +
         args + "\"--pythonpath\", " + quoted(kApps) + ", " + quoted(app) + "]\nlisten = [" + listen +
         "]\nworkers = " + std::to_string(workers) + "\nready = \"notify\"\n" + extra + "\n";
}

// A master running `config`, its pools ready.
struct Wsgi : Setup {
  std::string addr;
  explicit Wsgi(const std::string& config, const std::string& pool = "app") : Setup(config) {
    addr = master->wait_listen_address(pool);
    REQUIRE(!addr.empty());
    REQUIRE(!master->wait_log("every pool has its workers ready", 60s).empty());
  }
};

// 300 KB that are not all alike, so a lost or moved block shows.
std::string test_body(std::size_t size) {
  std::string s(size, '\0');
  std::uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string chunked(const std::string& body, std::size_t piece) {
  std::string out;
  char size[32];
  for (std::size_t at = 0; at < body.size(); at += piece) {
    const std::string part = body.substr(at, piece);
    std::snprintf(size, sizeof size, "%zx\r\n", part.size());
    out += size + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

std::optional<HttpResponse> get(HttpConnection& c, const std::string& path, const std::string& extra = "") {
  if (!c.request("GET", path, extra)) return std::nullopt;
  return c.read_response();
}

// Plain GETs in a loop from `clients` threads until stop(); every answer must be 200 with
// `body`. Bounded by `limit` even if the test forgets to stop it.
class FlaskLoad {
 public:
  FlaskLoad(std::string address, int clients, std::string body = kFlaskHello)
      : address_(std::move(address)), body_(std::move(body)), until_(std::chrono::steady_clock::now() + 150s) {
    for (int i = 0; i < clients; ++i)
      threads_.emplace_back([this] {
        while (!stop_ && std::chrono::steady_clock::now() < until_) {
          const auto r = http_get(address_, "/", 15s);
          if (r && r->status == 200 && r->body == body_) {
            ++answered_;
          } else {
            ++failed_;
            std::lock_guard lock(mutex_);
            last_failure_ = r ? "status " + std::to_string(r->status) + ": " + r->body.substr(0, 200) : "no answer";
          }
        }
      });
  }
  ~FlaskLoad() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  bool advance(std::uint64_t n) {
    const auto base = answered_.load();
    return wait_until([&] { return answered_ >= base + n; }, 60s);
  }
  std::uint64_t answered() const { return answered_; }
  std::uint64_t failed() const { return failed_; }
  std::string last_failure() {
    std::lock_guard lock(mutex_);
    return last_failure_;
  }

 private:
  std::string address_, body_;
  std::chrono::steady_clock::time_point until_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> answered_{0}, failed_{0};
  std::mutex mutex_;
  std::string last_failure_;
  std::vector<std::thread> threads_;
};

std::set<pid_t> worker_pids(const json& pool) {
  std::set<pid_t> pids;
  if (pool.is_object())
    for (const auto& w : pool["workers"])
      if (w.value("role", "") == "serving" && (w.value("state", "") == "idle" || w.value("state", "") == "busy"))
        pids.insert(w["pid"].get<pid_t>());
  return pids;
}

bool disjoint(const std::set<pid_t>& a, const std::set<pid_t>& b) {
  for (const pid_t p : a)
    if (b.contains(p)) return false;
  return true;
}

}  // namespace

TEST_CASE("forkpool-wsgi serves a Flask app: GET, HEAD, POST bodies of 300 KB, streaming, 404 and 500", "[wsgi]") {
  require_python_module("flask");
  Wsgi w(supervisor_section() + wsgi_pool("app", "flask_app:app", 2));

  HttpConnection c(w.addr);
  REQUIRE(c.connected());
  auto r = get(c, "/");
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->body == kFlaskHello);
  CHECK(r->headers["server"] == "forkpool-wsgi");
  CHECK(r->headers.contains("date"));

  REQUIRE(c.request("HEAD", "/"));
  r = c.read_response(true);
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->headers["content-length"] == "17");
  CHECK(c.buffered().empty());  // no body after the head, or the next answer would be garbled

  const std::string body = test_body(300 * 1024);
  SECTION("a body with Content-Length") { REQUIRE(c.request("POST", "/echo", "", body)); }
  SECTION("a chunked body") {
    REQUIRE(c.request("POST", "/echo", "Transfer-Encoding: chunked\r\n", chunked(body, 7000)));
  }
  SECTION("a body sent after 100 Continue") {
    REQUIRE(c.request("POST", "/echo", "Content-Length: " + std::to_string(body.size()) + "\r\nExpect: 100-continue\r\n"));
    // Nothing of the body is sent before the interim answer arrives.
    REQUIRE(c.wait_for("HTTP/1.1 100 Continue\r\n\r\n"));
    REQUIRE(c.send(body));
  }
  r = c.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->headers["x-length"] == std::to_string(body.size()));
  CHECK(r->body.size() == body.size());
  CHECK(r->body == body);

  r = get(c, "/stream?n=1000");
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->headers["transfer-encoding"] == "chunked");
  std::string parts;
  for (int i = 0; i < 1000; ++i) parts += "part " + std::to_string(i) + "\n";
  CHECK(r->body == parts);

  r = get(c, "/nope");
  REQUIRE(r.has_value());
  CHECK(r->status == 404);
  r = get(c, "/fail");
  REQUIRE(r.has_value());
  CHECK(r->status == 500);
  CHECK(!w.master->wait_log("RuntimeError: deliberate failure in /fail").empty());

  r = get(c, "/environ?x=1");
  REQUIRE(r.has_value());
  const json env = json::parse(r->body);
  CHECK(env["REMOTE_ADDR"] == "127.0.0.1");
  CHECK(env["SERVER_NAME"] == "127.0.0.1");
  CHECK(env["SERVER_PORT"] == w.addr.substr(w.addr.rfind(':') + 1));
  CHECK(env["PATH_INFO"] == "/environ");
  CHECK(env["QUERY_STRING"] == "x=1");
  CHECK(env["SERVER_PROTOCOL"] == "HTTP/1.1");
}

TEST_CASE("forkpool-wsgi keeps a connection alive across requests, pipelined ones too", "[wsgi]") {
  require_python_module("flask");
  Wsgi w(supervisor_section() + wsgi_pool("app", "flask_app:app", 1));
  auto ctl = w.client();

  HttpConnection c(w.addr);
  auto first = get(c, "/pid");
  REQUIRE(first.has_value());
  for (int i = 0; i < 20; ++i) {
    const auto r = get(c, "/pid");
    REQUIRE(r.has_value());
    CHECK(r->body == first->body);
  }
  // Three requests in one write: three answers, in order.
  REQUIRE(c.send("GET /stream?n=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read_response();
  REQUIRE(r.has_value());
  CHECK(r->body == "part 0\npart 1\n");
  r = c.read_response();
  REQUIRE(r.has_value());
  CHECK(r->body == first->body);
  r = c.read_response();
  REQUIRE(r.has_value());
  CHECK(r->body == kFlaskHello);

  // One connection for all of them, still held by the worker.
  json pool = pool_status(ctl, "app");
  CHECK(counter(pool, "accepted") == 1);
  CHECK(counter(pool, "completed") == 0);

  r = get(c, "/", "Connection: close\r\n");
  REQUIRE(r.has_value());
  CHECK(r->headers["connection"] == "close");
  CHECK(c.closed_by_peer());
  CHECK(wait_until([&] { return counter(pool_status(ctl, "app"), "completed") == 1; }));

  // HTTP/1.0 closes unless asked to keep the connection.
  HttpConnection old(w.addr);
  REQUIRE(old.send("GET / HTTP/1.0\r\n\r\n"));
  r = old.read_response();
  REQUIRE(r.has_value());
  CHECK(r->body == kFlaskHello);
  CHECK(old.closed_by_peer());
}

TEST_CASE("ab -k through forkpool-wsgi with 4 workers of 2 threads answers 2000 requests with no failure",
          "[wsgi]") {
  require_python_module("flask");
  Wsgi w(supervisor_section() + wsgi_pool("app", "flask_app:app", 4, "max_inflight = 2\n", "\"--threads\", \"2\", "));
  const auto ab = run_command({"/usr/bin/ab", "-q", "-k", "-n", "2000", "-c", "8", "http://" + w.addr + "/"}, 120s);
  INFO(ab.describe());
  REQUIRE(ab.exited);
  CHECK(ab.exit_code == 0);
  CHECK(std::regex_search(ab.out, std::regex("Complete requests:\\s+2000\\n")));
  CHECK(std::regex_search(ab.out, std::regex("Failed requests:\\s+0\\n")));
  CHECK(std::regex_search(ab.out, std::regex("Keep-Alive requests:\\s+2000\\n")));
  CHECK(ab.out.find("Non-2xx") == std::string::npos);
}

TEST_CASE("forkpool-wsgi parks keep-alive connections with keepalive = master: ab -k through one worker per client "
          "slot, counters exact",
          "[wsgi][keepalive]") {
  require_python_module("flask");
  // Two single-threaded workers, eight keep-alive clients: held by workers, six clients
  // would wait; parked between requests, all take turns.
  Wsgi w(supervisor_section() + wsgi_pool("app", "flask_app:app", 2, "keepalive = \"master\"\n"));
  const auto ab = run_command({"/usr/bin/ab", "-q", "-k", "-n", "2000", "-c", "8", "http://" + w.addr + "/"}, 120s);
  INFO(ab.describe());
  REQUIRE(ab.exited);
  CHECK(std::regex_search(ab.out, std::regex("Complete requests:\\s+2000\\n")));
  CHECK(std::regex_search(ab.out, std::regex("Failed requests:\\s+0\\n")));
  auto c = w.client();
  REQUIRE(wait_until([&] {
    const json p = pool_status(c, "app");
    return counter(p, "parked_now") == 0 && counter(p, "in_flight") == 0;
  }));
  const json p = pool_status(c, "app");
  INFO(p.dump());
  CHECK(counter(p, "parked") >= 2000 - 8);
  CHECK(counter(p, "resumed") > 0);
  CHECK(counter(p, "protocol_errors") == 0);
  CHECK(counter(p, "accepted") + counter(p, "resumed") ==
        counter(p, "dispatched") + p["queue"]["length"].get<std::uint64_t>() + counter(p, "queue_timeouts") +
            counter(p, "closed"));
  CHECK(counter(p, "dispatched") ==
        counter(p, "completed") + counter(p, "parked") + counter(p, "lost") + counter(p, "in_flight"));
  CHECK(counter(p, "parked") == counter(p, "resumed") + counter(p, "keepalive_timeouts") +
                                   counter(p, "keepalive_closed") + counter(p, "parked_closed") +
                                   counter(p, "parked_now"));
}

TEST_CASE("a minimal Django project runs under forkpool-wsgi", "[wsgi]") {
  require_python_module("django");
  const std::string site = kApps + "/djangosite";
  Wsgi w(supervisor_section() + wsgi_pool("site", "mysite.wsgi:application", 2, "cwd = " + quoted(site) + "\n"),
         "site");
  HttpConnection c(w.addr);
  auto r = get(c, "/");
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->body == "Hello from Django\n");
  r = get(c, "/hello/ann?x=1");
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  const json j = json::parse(r->body);
  CHECK(j["hello"] == "ann");
  CHECK(j["method"] == "GET");
  CHECK(j["host"] == w.addr);
  r = get(c, "/missing");
  REQUIRE(r.has_value());
  CHECK(r->status == 404);
}

TEST_CASE("an app that cannot be imported exits 78 and marks its pool failed at once", "[wsgi]") {
  Setup s(supervisor_section() + wsgi_pool("app", "broken_app:application", 2));
  auto c = s.client();
  CHECK(wait_until([&] { return pool_state(c, "app") == "failed"; }, 30s));
  CHECK(!s.master->wait_log("No module named 'this_module_does_not_exist'").empty());
  CHECK(!s.master->wait_log("forkpool-wsgi: cannot load broken_app:application").empty());
  const json pool = pool_status(c, "app");
  INFO(pool.dump());
  CHECK(counter(pool, "spawned") <= 2);  // no crash loop: one start per slot at most
  CHECK(!s.master->all_matches("(exited with status 78)").empty());
}

TEST_CASE("an exception in a WSGI app is a 500 with its traceback in the log, and the worker serves on",
          "[wsgi]") {
  TempDir logs;
  Wsgi w(supervisor_section() +
         wsgi_pool("app", "plain_app", 1, "", "\"--access-log\", " + quoted((logs / "access.log").string()) + ", "));
  HttpConnection c(w.addr);
  const auto pid = get(c, "/pid");
  REQUIRE(pid.has_value());

  auto r = get(c, "/raise");
  REQUIRE(r.has_value());
  CHECK(r->status == 500);
  CHECK(!w.master->wait_log("RuntimeError: deliberate failure in /raise").empty());
  CHECK(!w.master->wait_log("error handling GET /raise").empty());
  r = get(c, "/pid");  // the same connection, the same process
  REQUIRE(r.has_value());
  CHECK(r->body == pid->body);

  // A failure after the response began cannot become a 500: the answer is cut short
  // (no last chunk) and the connection closed, so the client knows it is incomplete.
  REQUIRE(c.request("GET", "/late-failure"));
  CHECK(c.wait_for("begun \r\n"));
  CHECK(c.closed_by_peer());
  CHECK(c.buffered().find("0\r\n\r\n") == std::string::npos);
  HttpConnection again(w.addr);
  r = get(again, "/pid");
  REQUIRE(r.has_value());
  CHECK(r->body == pid->body);
  // Each request has its access log line, the one cut short too: the status that went
  // out and the bytes of the body sent ("begun " is 6).
  REQUIRE(wait_until([&] { return read_text(logs / "access.log").find("/late-failure") != std::string::npos; }));
  const std::string log = read_text(logs / "access.log");
  INFO(log);
  CHECK(log.find("\"GET /raise HTTP/1.1\" 500 ") != std::string::npos);
  CHECK(log.find("\"GET /late-failure HTTP/1.1\" 200 6 ") != std::string::npos);
}

TEST_CASE("forkpool-wsgi: close() on the iterable, wsgi.file_wrapper, write(), 204, wsgi.errors, head limits",
          "[wsgi]") {
  TempDir marks;
  Wsgi w(supervisor_section() +
         wsgi_pool("app", "plain_app", 1, "env = { PLAIN_APP_CLOSED_LOG = " + quoted((marks / "closed").string()) + " }\n",
                   "\"--access-log\", " + quoted((marks / "access.log").string()) + ", "));
  std::optional<HttpResponse> r;
  {  // One keep-alive connection; it holds the only worker until it is closed.
    HttpConnection c(w.addr);
    r = get(c, "/tracked", "User-Agent: wsgi-test\r\nReferer: http://here/\r\n");
    REQUIRE(r.has_value());
    CHECK(r->body == "one two three\n");
    CHECK(r->headers["transfer-encoding"] == "chunked");
    r = get(c, "/tracked?second");
    REQUIRE(r.has_value());
    CHECK(wait_until([&] { return read_text(marks / "closed") == "closed \nclosed second\n"; }));

    r = get(c, "/file");
    REQUIRE(r.has_value());
    CHECK(r->headers["content-length"] == "100000");
    CHECK(r->body == std::string(100000, 'x'));
    r = get(c, "/write");
    REQUIRE(r.has_value());
    CHECK(r->body == "written and returned\n");
    r = get(c, "/errors");
    REQUIRE(r.has_value());
    CHECK(r->status == 204);
    CHECK(!r->headers.contains("content-length"));
    CHECK(!r->headers.contains("transfer-encoding"));
    CHECK(!w.master->wait_log("a line to wsgi.errors").empty());
    r = get(c, "/nothing-here");
    REQUIRE(r.has_value());
    CHECK(r->status == 404);

    // A body the app does not read is read and dropped: the connection goes on.
    REQUIRE(c.request("POST", "/pid", "", std::string(50000, 'p')));
    const auto unread = c.read_response();
    REQUIRE(unread.has_value());
    CHECK(unread->status == 200);
    r = get(c, "/pid");
    REQUIRE(r.has_value());
    CHECK(r->body == unread->body);

    r = get(c, "/hop");
    REQUIRE(r.has_value());
    CHECK(r->body == "hop\n");
    CHECK(r->headers["connection"] == "close");
    CHECK(!r->headers.contains("keep-alive"));
    CHECK(c.closed_by_peer());
  }

  // gunicorn's access log format, one line a request.
  REQUIRE(wait_until([&] { return read_text(marks / "access.log").find("/nothing-here") != std::string::npos; }));
  const std::string log = read_text(marks / "access.log");
  INFO(log);
  CHECK(std::regex_search(log, std::regex(R"(^127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] )"
                                          R"("GET /tracked HTTP/1\.1" 200 14 "http://here/" "wsgi-test"\n)")));
  CHECK(log.find("\"GET /file HTTP/1.1\" 200 100000 \"-\" \"-\"\n") != std::string::npos);
  CHECK(log.find("\"GET /nothing-here HTTP/1.1\" 404 10 ") != std::string::npos);

  HttpConnection long_line(w.addr);
  REQUIRE(long_line.send("GET /" + std::string(5000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = long_line.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 400);
  CHECK(long_line.closed_by_peer());

  HttpConnection many(w.addr);
  std::string head = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 150; ++i) head += "X-Field-" + std::to_string(i) + ": v\r\n";
  REQUIRE(many.send(head + "\r\n"));
  r = many.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 431);

  HttpConnection big(w.addr);
  REQUIRE(big.send("GET / HTTP/1.1\r\nX-Big: " + std::string(9000, 'b') + "\r\n\r\n"));
  r = big.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 431);

  HttpConnection garbage(w.addr);
  REQUIRE(garbage.send("NOT HTTP AT ALL\r\n\r\n"));
  r = garbage.read_response();
  REQUIRE(r.has_value());
  CHECK(r->status == 400);
}

TEST_CASE("forkpool-wsgi on a Unix listener: REMOTE_ADDR is empty", "[wsgi]") {
  require_python_module("flask");
  TempDir sockdir;
  const std::string path = (sockdir / "app.sock").string();
  Setup s(supervisor_section() + wsgi_pool("app", "flask_app:app", 1, "", "", quoted("unix:" + path)));
  REQUIRE(!s.master->wait_log("every pool has its workers ready", 60s).empty());
  HttpConnection c("unix:" + path);
  REQUIRE(c.connected());
  auto r = get(c, "/environ");
  REQUIRE(r.has_value());
  const json env = json::parse(r->body);
  CHECK(env["REMOTE_ADDR"] == "");
  CHECK(env["SERVER_NAME"] == "localhost");
  CHECK(env["SERVER_PORT"] == "80");
}

TEST_CASE("stopping forkpool-wsgi lets the request in progress finish", "[wsgi]") {
  require_python_module("flask");
  const bool by_master = GENERATE(true, false);
  const bool threads = GENERATE(false, true);
  INFO((by_master ? "SIGTERM to the master" : "TERM to the worker only") << (threads ? ", --threads 2" : ""));
  Wsgi w(supervisor_section() + (threads ? wsgi_pool("app", "flask_app:app", 1, "max_inflight = 2\n", "\"--threads\", \"2\", ")
                                         : wsgi_pool("app", "flask_app:app", 1)));
  // With threads, an idle keep-alive connection held by the worker does not keep it from ending.
  std::unique_ptr<HttpConnection> idle;
  if (threads) {
    idle = std::make_unique<HttpConnection>(w.addr);
    REQUIRE(get(*idle, "/").has_value());
  }
  auto ctl = w.client();
  const pid_t before = *worker_pids(pool_status(ctl, "app")).begin();
  auto slow = std::async(std::launch::async, [addr = w.addr] { return http_get(addr, "/sleep?ms=1500", 20s); });
  REQUIRE(wait_until([&] { return counter(pool_status(ctl, "app"), "in_flight") == (threads ? 2u : 1u); }));
  if (by_master) {
    w.master->signal(SIGTERM);
  } else {
    const json reply = ctl.request({{"cmd", "kill"}, {"pool", "app"}, {"worker", 0}, {"signal", "TERM"}});
    REQUIRE(reply.value("ok", false));
  }
  const auto r = slow.get();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(r->body == "slept\n");
  if (by_master) {
    stop_master(*w.master);
  } else {
    // The worker leaves after its request, exits 0, and a new one takes its place.
    CHECK(!w.master->wait_log("pid " + std::to_string(before) + " exited with status 0").empty());
    REQUIRE(wait_until([&] {
      const auto pids = worker_pids(pool_status(ctl, "app"));
      return pids.size() == 1 && !pids.contains(before);
    }, 30s));
    const auto next = http_get(w.addr, "/");
    REQUIRE(next.has_value());
    CHECK(next->body == kFlaskHello);
  }
}

TEST_CASE("max_requests recycles forkpool-wsgi workers without losing a request", "[wsgi]") {
  require_python_module("flask");
  Wsgi w(supervisor_section() + wsgi_pool("app", "flask_app:app", 2, "max_requests = 5\n"));
  auto ctl = w.client();
  // A replacement takes over once its app is imported; requests go on meanwhile.
  std::set<std::string> pids;
  int requests = 0, failed = 0;
  CHECK(wait_until([&] {
    const auto r = http_get(w.addr, "/pid", 20s);
    ++requests;
    if (r && r->status == 200) pids.insert(r->body);
    else ++failed;
    return pids.size() >= 4;
  }, 90s));
  INFO(requests << " requests");
  CHECK(failed == 0);
  CHECK(counter(pool_status(ctl, "app"), "recycled") >= 2);
  CHECK(counter(pool_status(ctl, "app"), "crashed") == 0);
}

TEST_CASE("request_timeout kills a stuck forkpool-wsgi request and the pool serves on", "[wsgi]") {
  require_python_module("flask");
  Wsgi w(supervisor_section() + wsgi_pool("app", "flask_app:app", 1, "request_timeout = \"1s\"\n"));
  auto ctl = w.client();
  const auto stuck = http_get(w.addr, "/sleep?ms=30000", 25s);
  CHECK((!stuck.has_value() || stuck->status == 0));
  CHECK(wait_until([&] { return counter(pool_status(ctl, "app"), "killed") == 1; }));
  REQUIRE(wait_until([&] { return pool_status(ctl, "app").value("ready", 0) == 1; }, 30s));
  const auto r = http_get(w.addr, "/");
  REQUIRE(r.has_value());
  CHECK(r->body == kFlaskHello);
}

TEST_CASE("rolling restart and reload of forkpool-wsgi workers under load lose no request", "[wsgi]") {
  require_python_module("flask");
  const auto config = [](const std::string& mark) {
    return supervisor_section() + wsgi_pool("app", "flask_app:app", 3, "env = { MARK = \"" + mark + "\" }\n");
  };
  Wsgi w(config("one"));
  auto ctl = w.client();
  const auto first = worker_pids(pool_status(ctl, "app"));
  REQUIRE(first.size() == 3);
  FlaskLoad load(w.addr, 3);
  REQUIRE(load.advance(50));

  const json reply = ctl.request({{"cmd", "restart"}, {"pool", "app"}});
  REQUIRE(reply.value("ok", false));
  std::set<pid_t> second;
  REQUIRE(wait_until([&] {
    second = worker_pids(pool_status(ctl, "app"));
    return second.size() == 3 && disjoint(first, second);
  }, 90s));
  REQUIRE(load.advance(50));

  write_file(w.dir / "f.toml", config("two"));
  w.master->signal(SIGHUP);
  REQUIRE(wait_until([&] {
    const auto third = worker_pids(pool_status(ctl, "app"));
    return third.size() == 3 && disjoint(second, third) && disjoint(first, third);
  }, 90s));
  REQUIRE(load.advance(50));
  load.stop();
  INFO(load.last_failure());
  CHECK(load.failed() == 0);
  stop_master(*w.master);
}

TEST_CASE("examples/wsgi.toml passes --check", "[wsgi]") {
  const auto r = run_command({forkpool_binary().string(), "--check", "-c", FORKPOOL_SOURCE_DIR "/examples/wsgi.toml"}, 30s);
  INFO(r.describe());
  CHECK(r.exited);
  CHECK(r.exit_code == 0);
}
