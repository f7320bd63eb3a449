// SPDX-License-Identifier: Apache-2.0
// Master dispatch with the real binary, real clients and real workers: every connection
// accounted for, least-busy choice, the queue, per-connection policies, recycling,
// resource exhaustion, and a worker in Python.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/control_client.hpp"
#include "support/fd_flags.hpp"
#include "support/held_request.hpp"
#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string hello_pool(const std::string& extra) {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" + hello_binary().string() +
         "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\n" + extra;
}

json pool_status(const TempDir& dir) {
  ControlClient c(dir / "ctl.sock");
  json r = c.request({{"cmd", "status"}});
  return r.is_object() && r.value("ok", false) ? r["pools"][0] : json();
}

json counters(const TempDir& dir) {
  json p = pool_status(dir);
  return p.is_object() ? p["counters"] : json();
}

// Occupies one worker with a request held until release() (support/held_request.hpp),
// whatever the machine's load, and returns once the master shows it busy.
std::unique_ptr<HeldRequest> occupy_one_worker(const TempDir& dir, const std::string& addr) {
  auto held = std::make_unique<HeldRequest>(addr);
  REQUIRE(wait_until([&] { return pool_status(dir).value("busy", 0) == 1; }));
  return held;
}

// Both accounting identities of the dispatcher hold in `p` (a pool status object).
void check_balanced(const json& p) {
  const json& c = p["counters"];
  INFO(p.dump());
  CHECK(c["accepted"].get<std::uint64_t>() == c["dispatched"].get<std::uint64_t>() +
                                                  p["queue"]["length"].get<std::uint64_t>() +
                                                  c["queue_timeouts"].get<std::uint64_t>() +
                                                  c["closed"].get<std::uint64_t>());
  CHECK(c["dispatched"].get<std::uint64_t>() ==
        c["completed"].get<std::uint64_t>() + c["in_flight"].get<std::uint64_t>() + c["lost"].get<std::uint64_t>());
}

// Connections waiting in the kernel's accept queue of the listener on 127.0.0.1:port.
int backlog_length(int port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  char want[32];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string slot, local, remote, state, queues;
    ss >> slot >> local >> remote >> state >> queues;
    if (local == want && state == "0A") return std::stoi(queues.substr(queues.find(':') + 1), nullptr, 16);
  }
  return -1;
}

int port_of(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

std::string ab_output(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/ab", "-q"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, 120s).out;
}

}  // namespace

TEST_CASE("10000 connections through 4 workers are all answered and every one is counted", "[dispatch]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 4\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());

  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&] {
      for (int i = 0; i < 1250; ++i) {
        auto r = http_get(addr, "/");
        if (r && r->status == 200 && r->body == "Hello, world\n") ++answered;
      }
    });
  for (auto& t : clients) t.join();
  CHECK(answered == 10000);

  // DONE follows the worker's close, so the last ones may still be on their way.
  REQUIRE(wait_until([&] { return counters(dir).value("completed", 0) == 10000; }));
  const json p = pool_status(dir);
  check_balanced(p);
  CHECK(p["counters"]["accepted"] == 10000);
  CHECK(p["counters"]["lost"] == 0);
  std::uint64_t handled = 0;
  for (const auto& w : p["workers"]) handled += w["handled"].get<std::uint64_t>();
  CHECK(handled == 10000);
  CHECK(p["duration_ms"]["count"] == 10000);
  CHECK(p["queue_wait_ms"]["count"] == 10000);
}

TEST_CASE("ab through the master has no failed request and the counters balance", "[dispatch]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 4\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const std::string out = ab_output({"-n", "10000", "-c", "16", "http://" + addr + "/"});
  INFO(out);
  CHECK(out.find("Complete requests:      10000") != std::string::npos);
  CHECK(out.find("Failed requests:        0") != std::string::npos);
  REQUIRE(wait_until([&] {
    const json c = counters(dir);
    return c.is_object() && c["completed"] == c["accepted"] && c["in_flight"] == 0;
  }));
  const json p = pool_status(dir);
  check_balanced(p);
  // ab opens up to concurrency-1 spare connections that it closes without a request;
  // the master counts those too, as it must.
  CHECK(p["counters"]["completed"].get<std::uint64_t>() >= 10000);
  CHECK(p["counters"]["completed"].get<std::uint64_t>() <= 10015);
  CHECK(p["counters"]["lost"] == 0);
}

namespace {

// Two workers, one held by a slow request: every one of 20 fast requests must go to the
// other. `settle` waits after each answer until the master has read its DONE, so the
// rule is judged on the counts the master has (the client sees its answer first).
void check_fast_requests_pass_the_busy_worker(int max_inflight, bool settle) {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 2\nmax_inflight = " + std::to_string(max_inflight) + "\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  auto slow = occupy_one_worker(dir, addr);
  std::set<std::string> fast_pids;
  for (int i = 0; i < 20; ++i) {
    auto r = http_get(addr, "/", 10s);
    REQUIRE(r.has_value());
    fast_pids.insert(r->headers["x-worker-pid"]);
    if (settle) REQUIRE(wait_until([&] { return pool_status(dir)["counters"]["in_flight"] == 1; }));
  }
  const auto s = slow->release();
  REQUIRE(s.has_value());
  CHECK(fast_pids.size() == 1);
  CHECK(fast_pids.count(s->headers.at("x-worker-pid")) == 0);
}

}  // namespace

TEST_CASE("least-busy sends fast requests past a worker busy with a slow one", "[dispatch][balance]") {
  check_fast_requests_pass_the_busy_worker(1, false);
}

// With max_inflight = 1 the busy worker is excluded whatever the rule, so this is the
// test of the rule itself: the busy worker could take more, and least-busy still picks
// the one with fewer connections in flight (round-robin or a reversed comparison would
// send some or all of them to the worker stuck in /sleep).
TEST_CASE("least-busy prefers the worker with fewer connections in flight when both could take more",
          "[dispatch][balance]") {
  check_fast_requests_pass_the_busy_worker(4, true);
}

// The tie-break of least-busy among idle workers (the idle stack, docs/master.md): the
// worker that finished last takes the next connection, then the one that finished before
// it. Each step waits for the master to have counted the DONE, so the order is the test's.
TEST_CASE("least-busy hands the next connection to the worker that became idle last", "[dispatch][balance]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 4\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  auto settled = [&](int completed, int in_flight = 0) {
    return wait_until([&] {
      const json c = counters(dir);
      return c.value("completed", -1) == completed && c.value("in_flight", -1) == in_flight;
    });
  };
  // One held request per worker (max_inflight 1), then released in an order of our own.
  std::vector<std::unique_ptr<HeldRequest>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<HeldRequest>(addr));
    REQUIRE(wait_until([&] { return pool_status(dir).value("busy", -1) == i + 1; }));
  }
  std::vector<std::string> finished;  // worker numbers, in the order they became idle
  int completed = 0;
  for (const int i : {2, 0, 3, 1}) {
    const auto r = held[static_cast<std::size_t>(i)]->release();
    REQUIRE(r.has_value());
    finished.push_back(r->headers.at("x-worker"));
    ++completed;
    REQUIRE(settled(completed, 4 - completed));
  }
  REQUIRE(std::set<std::string>(finished.begin(), finished.end()).size() == 4);
  // One request at a time: always the worker that finished last (it is again, each time).
  for (int i = 0; i < 5; ++i) {
    const auto r = http_get(addr, "/");
    REQUIRE(r.has_value());
    CHECK(r->headers.at("x-worker") == finished[3]);
    REQUIRE(settled(++completed));
  }
  // While it is held, the next goes to the one that finished before it.
  HeldRequest busy(addr);
  REQUIRE(wait_until([&] { return pool_status(dir).value("busy", -1) == 1; }));
  const auto r = http_get(addr, "/");
  REQUIRE(r.has_value());
  CHECK(r->headers.at("x-worker") == finished[2]);
  const auto b = busy.release();
  REQUIRE(b.has_value());
  CHECK(b->headers.at("x-worker") == finished[3]);
  check_balanced(pool_status(dir));
}

TEST_CASE("round-robin hands connections to the workers in turn", "[dispatch][balance]") {
  TempDir dir;
  // Room for more than one connection each: the client's next request may arrive before
  // the previous worker's DONE, and a worker at max_inflight would be skipped.
  write_file(dir / "f.toml", hello_pool("workers = 3\nbalance = \"round-robin\"\nmax_inflight = 4\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  std::vector<std::string> order;
  for (int i = 0; i < 9; ++i) {
    auto r = http_get(addr, "/");
    REQUIRE(r.has_value());
    order.push_back(r->headers["x-worker"]);
  }
  CHECK(std::set<std::string>(order.begin(), order.begin() + 3).size() == 3);
  for (int i = 3; i < 9; ++i) CHECK(order[static_cast<std::size_t>(i)] == order[static_cast<std::size_t>(i - 3)]);
}

TEST_CASE("a worker killed while holding a connection loses only that connection", "[dispatch][crash]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 2\nmax_inflight = 1\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  HeldRequest slow(addr);  // in flight until the worker dies, however loaded the machine
  int busy_pid = 0;
  REQUIRE(wait_until([&] {
    const json p = pool_status(dir);
    for (const auto& w : p["workers"])
      if (w["state"] == "busy") busy_pid = w["pid"];
    return busy_pid > 0;
  }));
  ::kill(busy_pid, SIGKILL);
  CHECK(!slow.release().has_value());  // that client sees its connection end without an answer
  int ok = 0;
  for (int i = 0; i < 50; ++i) {
    auto r = http_get(addr, "/");
    ok += (r && r->status == 200) ? 1 : 0;
  }
  CHECK(ok == 50);
  REQUIRE(wait_until([&] { return counters(dir).value("lost", 0) == 1 && counters(dir).value("in_flight", 1) == 0; }));
  const json p = pool_status(dir);
  check_balanced(p);
  CHECK(p["counters"]["crashed"] == 1);
}

TEST_CASE("a worker stopped by a SIGTERM from someone else loses no connection under load", "[dispatch][crash]") {
  // The master did not end the worker's work, so it goes on sending it connections until
  // the worker's channel refuses them; each must be answered, by it or by another worker.
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 2\nmax_inflight = 1\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const pid_t worker = master.wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::future<void>> clients;
  for (int i = 0; i < 4; ++i)
    clients.push_back(std::async(std::launch::async, [&] {
      while (!stop) {
        auto r = http_get(addr, "/");
        ++((r && r->status == 200) ? ok : failed);
      }
    }));
  REQUIRE(wait_until([&] { return ok >= 100; }));
  REQUIRE(::kill(worker, SIGTERM) == 0);
  CHECK(!master.wait_log("worker web\\[0\\] pid " + std::to_string(worker) + " exited with status 0").empty());
  const int after_exit = ok;
  CHECK(wait_until([&] { return ok >= after_exit + 100; }));
  stop = true;
  for (auto& c : clients) c.get();
  CHECK(failed == 0);
  REQUIRE(wait_until([&] { return counters(dir).value("in_flight", 1) == 0; }));
  const json p = pool_status(dir);
  check_balanced(p);
  CHECK(p["counters"]["lost"] == 0);
}

TEST_CASE("a full queue stops accepting and no accepted connection is dropped", "[dispatch][queue]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 1\nmax_inflight = 1\nqueue_limit = 2\nqueue_timeout = \"0\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  auto slow = occupy_one_worker(dir, addr);
  std::vector<std::future<std::optional<HttpResponse>>> waiting;
  for (int i = 0; i < 6; ++i)
    waiting.push_back(std::async(std::launch::async, [&] { return http_get(addr, "/", 20s); }));
  // Two wait in the master's queue; the master stops accepting, and the other four wait
  // in the kernel's backlog.
  CHECK(wait_until([&] {
    const json p = pool_status(dir);
    return p["queue"]["length"] == 2 && p["counters"]["accepted"] == 3 && backlog_length(port_of(addr)) == 4;
  }));
  CHECK(pool_status(dir)["queue"]["peak"] == 2);
  REQUIRE(slow->release().has_value());
  int ok = 0;
  for (auto& f : waiting) {
    auto r = f.get();
    ok += (r && r->status == 200) ? 1 : 0;
  }
  CHECK(ok == 6);
  REQUIRE(wait_until([&] { return counters(dir).value("completed", 0) == 7; }));
  const json p = pool_status(dir);
  check_balanced(p);
  CHECK(p["counters"]["closed"] == 0);
  CHECK(p["counters"]["queue_timeouts"] == 0);
  CHECK(p["counters"]["accepted"] == 7);
}

TEST_CASE("queue_timeout closes a connection that waited too long and counts it", "[dispatch][queue]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 1\nmax_inflight = 1\nqueue_timeout = \"200ms\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  auto slow = occupy_one_worker(dir, addr);
  CHECK(!http_get(addr, "/", 10s).has_value());  // closed by the master, unanswered
  CHECK(counters(dir)["queue_timeouts"] == 1);
  REQUIRE(slow->release().has_value());
  check_balanced(pool_status(dir));
}

TEST_CASE("request_timeout kills a worker stuck in a request and the pool recovers", "[dispatch][timeout]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 1\nrequest_timeout = \"300ms\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  const pid_t first = master.wait_worker_started("web", 0);
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  CHECK(!http_get(addr, "/sleep?ms=10000", 8s).has_value());
  CHECK(!master.wait_log("worker web\\[0\\] pid " + std::to_string(first) +
                         " held a connection from 127\\.0\\.0\\.1:[0-9]+ longer than request_timeout 300ms; "
                         "sending SIGKILL").empty());
  REQUIRE(master.wait_worker_started_after("web", 0, first) > 0);
  const auto r = http_get(addr, "/");
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  const json c = counters(dir);
  CHECK(c["killed"] == 1);
  CHECK(c["lost"] == 1);
}

TEST_CASE("max_requests recycles workers under load with zero failed requests", "[dispatch][recycle]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 2\nmax_requests = 100\nmax_requests_jitter = 20\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const std::string out = ab_output({"-n", "3000", "-c", "4", "http://" + addr + "/"});
  INFO(out);
  CHECK(out.find("Failed requests:        0") != std::string::npos);
  CHECK(master.all_matches("pid [0-9]+ (replaces) pid").size() >= 10);
  REQUIRE(wait_until([&] { return counters(dir).value("in_flight", 1) == 0; }));
  const json p = pool_status(dir);
  check_balanced(p);
  CHECK(p["counters"]["recycled"].get<int>() >= 10);
  CHECK(p["counters"]["lost"] == 0);
  CHECK(p["counters"]["crashed"] == 0);
}

// Shared dispatch: the master passes no connection, so max_requests reads what each worker
// counted on its scoreboard page (it was silently ignored there).
TEST_CASE("max_requests recycles shared-dispatch workers from their scoreboard counts with zero failed requests",
          "[dispatch][recycle][shared]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 2\ndispatch = \"shared\"\nmax_requests = 100\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  // Rounds of traffic until two workers were recycled: the kernel may wake the same worker
  // for most connections (EPOLLEXCLUSIVE), so one round may leave the other under the limit.
  std::string failed;
  const bool recycled = wait_until(
      [&] {
        const std::string out = ab_output({"-n", "1000", "-c", "4", "http://" + addr + "/"});
        if (out.find("Failed requests:        0") == std::string::npos) failed += out;
        return pool_status(dir)["counters"].value("recycled", 0) >= 2;
      },
      60s);
  INFO(failed);
  CHECK(failed.empty());
  REQUIRE(recycled);
  CHECK(!master.wait_log("replaces pid [0-9]+ after [0-9]+ connections \\(max_requests\\)").empty());
  // Once the traffic stopped, every worker at the limit is replaced within a check and each
  // replacement starts counting afresh: a worker left past the limit would be one the
  // master never looked at.
  json p;
  CHECK(wait_until([&] {
    p = pool_status(dir);
    for (const auto& w : p["workers"])
      if (w.value("handled", 0) >= 100) return false;
    return true;
  }));
  INFO(p.dump());
  CHECK(p["counters"]["crashed"] == 0);
}

TEST_CASE("running out of descriptors pauses accepting without spinning", "[dispatch][emfile]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 1\nmax_inflight = 1\nqueue_timeout = \"0\"\n"));
  MasterProcess master(dir / "f.toml", {"prlimit", "--nofile=96:96", "--"});
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  auto slow = occupy_one_worker(dir, addr);
  std::vector<int> held;
  for (int i = 0; i < 80; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port_of(addr)));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) held.push_back(fd);
    else ::close(fd);
  }
  REQUIRE(!master.wait_log("pausing accepts, keeping [0-9]+ descriptors free").empty());
  // Paused, the master sleeps in epoll_wait: a freed descriptor ends it (a 1 s look is the only timer).
  int in_wait = 0;
  for (int i = 0; i < 20; ++i) {
    std::ifstream sc("/proc/" + std::to_string(master.pid()) + "/syscall");
    std::string nr;
    sc >> nr;
    in_wait += (nr == std::to_string(SYS_epoll_wait) || nr == std::to_string(SYS_epoll_pwait)) ? 1 : 0;
    std::this_thread::yield();
  }
  CHECK(in_wait >= 18);
  for (int fd : held) ::close(fd);
  REQUIRE(slow->release().has_value());
  CHECK(wait_until([&] {
    auto r = http_get(addr, "/", 2s);
    return r && r->status == 200;
  }));
  CHECK(!master.wait_log("accepting again").empty());
  // Logged once per episode, not once per retry: each pause line has its resume line.
  const auto pauses = master.all_matches("(pausing accepts)").size();
  const auto resumes = master.all_matches("(accepting again)").size();
  CHECK(pauses >= 1);
  CHECK((pauses == resumes || pauses == resumes + 1));
  // The pool never lost its worker for want of a descriptor.
  CHECK(master.all_matches("(could not be started)").empty());
}

TEST_CASE("a master hovering at its descriptor limit logs one pause, not one per pause", "[dispatch][emfile]") {
  // 200 clients at once against 64 descriptors: accepts go on at the edge of the reserve,
  // pausing every few connections. The pause and the resume were logged each time (about
  // one pair per six requests); the episode now ends only with room clearly back.
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 2\n"));
  MasterProcess master(dir / "f.toml", {"prlimit", "--nofile=64:64", "--"});
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const RunResult ab = run_command({"/usr/bin/ab", "-q", "-n", "5000", "-c", "200", "http://" + addr + "/"}, 120s);
  INFO(ab.out << ab.err);
  REQUIRE(ab.exit_code == 0);
  CHECK(ab.out.find("Failed requests:        0") != std::string::npos);
  const auto pauses = master.all_matches("(pausing accepts)").size();
  INFO(pauses << " pauses logged");
  CHECK(pauses >= 1);
  CHECK(pauses <= 10);
  // The pauses not logged are counted and summed up once their 10 s window ends, also
  // when the storm is over by then (the count was only carried by the next logged pause).
  const auto summary = master.wait_log(
      "pool web: accept pauses for want of descriptors: ([0-9]+) more suppressed in the last", 25s);
  REQUIRE(!summary.empty());
  CHECK(std::stoul(summary[1].str()) >= 1);
}

TEST_CASE("a worker written in Python serves through the master", "[dispatch][python]") {
  TempDir dir;
  write_file(dir / "f.toml",
             "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.py]\ncommand = [\"python3\", \"" +
                 std::string(FORKPOOL_SOURCE_DIR) + "/examples/hello_worker.py\"]\nlisten = [\"tcp://127.0.0.1:0\"]\n"
                 "workers = 2\nready = \"notify\"\nready_timeout = \"20s\"\n");
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("py");
  REQUIRE(!master.wait_log("every pool has its workers ready", 30s).empty());
  for (int i = 0; i < 20; ++i) {
    auto r = http_get(addr, "/");
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
    CHECK(r->body == "Hello from Python\n");
  }
  REQUIRE(wait_until([&] { return counters(dir).value("completed", 0) == 20; }));
  check_balanced(pool_status(dir));
}

// FP_FD_NONBLOCK (docs/protocol.md): a worker that asks in READY gets connections the
// master accepted non-blocking, and a CONN that says so; one that does not ask gets
// blocking ones. With ready = "exec" the READY record comes after the worker counts as
// ready (this worker sends it after serving its first connection), and the master must
// still take the request into account.
TEST_CASE("a worker that asks in READY gets non-blocking connections, with ready = \"exec\" too",
          "[dispatch][python]") {
  TempDir dir;
  write_file(dir / "worker.py", R"(import array, os, socket, struct
ask = int(os.environ["ASK"])
late = os.environ["READY_LATE"] == "1"
ch = socket.socket(fileno=int(os.environ["FORKPOOL_CHANNEL_FD"]))
if not late:
    ch.send(struct.pack("=HHIQ", 16, 0, ask, 0))  # READY
while True:
    msg, anc, _, _ = ch.recvmsg(16, socket.CMSG_SPACE(4))
    if len(msg) != 16:
        break
    kind, _, flags, conn = struct.unpack("=HHIQ", msg)
    fds = array.array("i")
    for _, _, data in anc:
        fds.frombytes(data[:4])
    nonblocking = not os.get_blocking(fds[0])
    os.set_blocking(fds[0], True)
    c = socket.socket(fileno=fds[0])
    c.recv(65536)
    body = "flag=%d nonblocking=%d\n" % (flags & 1, nonblocking)
    c.sendall(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)).encode())
    c.close()
    ch.send(struct.pack("=HHIQ", 17, 0, 0, conn))  # DONE
    if late:
        ch.send(struct.pack("=HHIQ", 16, 0, ask, 0))  # READY
        late = False
)");
  auto pool = [&](const std::string& name, int ask, const std::string& ready) {
    return "[pools." + name + "]\ncommand = [\"python3\", \"" + (dir / "worker.py").string() +
           "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\nready = \"" + ready + "\"\nenv = { ASK = \"" +
           std::to_string(ask) + "\", READY_LATE = \"" + (ready == "exec" ? "1" : "0") + "\" }\n";
  };
  // The exec pool has a master of its own: another pool's worker becoming ready would
  // tell its dispatcher to look again, and hide what this test is for.
  TempDir exec_dir;  // a folder of its own: a master keeps its log next to its config
  write_file(exec_dir / "f.toml", "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n" + pool("exec", 1, "exec"));
  write_file(dir / "f.toml", "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n" + pool("asks", 1, "protocol") +
                                 pool("plain", 0, "protocol"));
  MasterProcess exec_master(exec_dir / "f.toml");
  MasterProcess master(dir / "f.toml");
  const std::string exec_addr = exec_master.wait_listen_address("exec");
  const std::string asks_addr = master.wait_listen_address("asks");
  const std::string plain_addr = master.wait_listen_address("plain");
  REQUIRE(!exec_master.wait_log("every pool has its workers ready", 30s).empty());
  REQUIRE(!master.wait_log("every pool has its workers ready", 30s).empty());
  auto body = [](const std::string& addr) {
    const auto r = http_get(addr, "/");
    return r ? r->body : std::string("no answer");
  };
  // The exec pool's first connection comes before its READY record, the next ones after.
  CHECK(body(exec_addr) == "flag=0 nonblocking=0\n");
  REQUIRE(wait_until([&] { return body(exec_addr) == "flag=1 nonblocking=1\n"; }, 20s));
  for (int i = 0; i < 5; ++i) {
    CHECK(body(exec_addr) == "flag=1 nonblocking=1\n");
    CHECK(body(asks_addr) == "flag=1 nonblocking=1\n");
    CHECK(body(plain_addr) == "flag=0 nonblocking=0\n");
  }
}

TEST_CASE("master dispatch serves a unix: listener", "[dispatch][unix]") {
  TempDir dir;
  write_file(dir / "f.toml", "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
                                 hello_binary().string() + "\"]\nlisten = [\"unix:web.sock\"]\nworkers = 1\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", (dir / "web.sock").c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  std::string reply;
  char buf[1024];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  CHECK(reply.starts_with("HTTP/1.1 200"));
  CHECK(reply.find("Hello, world") != std::string::npos);
}

TEST_CASE("max_memory replaces a worker whose RSS is over the limit without failing requests", "[dispatch][recycle]") {
  TempDir dir;
  // Any process is bigger than 1 MiB, so each worker is replaced at the first sample.
  write_file(dir / "f.toml", hello_pool("workers = 2\nmax_memory = \"1MiB\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  const pid_t first = master.wait_worker_started("web", 0);
  REQUIRE(!master.wait_log("every pool has its workers ready").empty());
  CHECK(!master.wait_log("worker web\\[0\\] pid " + std::to_string(first) +
                         " uses [0-9]+ bytes, over max_memory; replacing it").empty());
  CHECK(!master.wait_log("worker web\\[0\\] pid [0-9]+ replaces pid " + std::to_string(first) +
                         " after its RSS reached [0-9]+ MiB \\(max_memory\\)").empty());
  for (int i = 0; i < 50; ++i) {
    auto r = http_get(addr, "/");
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
  }
  CHECK(counters(dir)["recycled"].get<int>() >= 1);
  CHECK(counters(dir)["lost"] == 0);
}

// A shared listener's O_NONBLOCK belongs to the open file every process holding it shares,
// so a program other than forkpool may clear it under a worker. forkpool-hello, which
// accepts until EAGAIN, then blocks in accept(2) after the last waiting connection; a stop
// signal must still get it out, and it serves what it had accepted before it exits.
TEST_CASE("forkpool-hello stops at SIGTERM and answers what it accepted when its listener was made blocking under it",
          "[dispatch][shared]") {
  TempDir dir;
  write_file(dir / "f.toml", hello_pool("workers = 1\ndispatch = \"shared\"\n"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  const pid_t worker = master.wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  const auto nonblocking = [&] { return (fd_flags(worker, 3).value_or(0) & O_NONBLOCK) != 0; };
  // Once forkpool-hello has made its listener (fd 3, LISTEN_FDS) non-blocking, clear that
  // through a copy of the same open file.
  REQUIRE(wait_until(nonblocking));
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, worker, 0));
  REQUIRE(pidfd >= 0);
  const int copy = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, 3, 0));
  ::close(pidfd);
  REQUIRE(copy >= 0);
  REQUIRE(::fcntl(copy, F_SETFL, ::fcntl(copy, F_GETFL) & ~O_NONBLOCK) == 0);
  ::close(copy);
  REQUIRE(fd_flags(worker, 3).has_value());
  REQUIRE(!nonblocking());

  // The worker takes the request, then waits in accept4 for another.
  auto request = std::async(std::launch::async, [&] { return http_get(addr, "/", 20s); });
  REQUIRE(wait_until([&] {
    std::ifstream in("/proc/" + std::to_string(worker) + "/syscall");
    std::string nr;
    in >> nr;
    return nr == std::to_string(SYS_accept4);
  }));
  REQUIRE(request.wait_for(200ms) == std::future_status::timeout);  // not answered yet

  ::kill(worker, SIGTERM);
  const auto answer = request.get();
  REQUIRE(answer.has_value());
  CHECK(answer->status == 200);
  CHECK(!master.wait_log("worker web\\[0\\] pid " + std::to_string(worker) + " exited with status 0").empty());
  master.signal(SIGTERM);
  const auto status = master.wait_exit(30s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
}
