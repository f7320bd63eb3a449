// SPDX-License-Identifier: Apache-2.0
// A reload that switches a pool between master and shared dispatch (docs/master.md, "A
// reload that switches dispatch"): who accepts follows who is ready. The master accepts
// while a worker that reads its channel is ready and none that accepts by itself runs; what
// it queued goes to the workers that read their channels, the last of them staying for it;
// a deploy that fails leaves the old workers serving as the old design did. Each test would
// hang until its deadline without that (the clients waited in a queue nobody read, or in
// a backlog nobody accepted from).

#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <string>

#include <fcntl.h>

#include "reload_support.hpp"
#include "support/fd_flags.hpp"
#include "support/held_request.hpp"
#include "support/http_connection.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reload_support;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::uint64_t counter_of(const json& pool, const char* name) {
  if (!pool.is_object() || !pool.contains("counters") || !pool["counters"].contains(name)) return ~0ull;
  return pool["counters"][name].get<std::uint64_t>();
}

// A pool whose program never starts: it exits 78 (EX_CONFIG) before it is ready, which
// fails the pool at once. (Not ready = "exec", which takes a program for ready once it
// runs, and so replaces the old workers before it exits.)
std::string broken_pool(const std::string& dispatch, const std::string& listen) {
  return "[pools.web]\ncommand = [\"/bin/sh\", \"-c\", \"exit 78\"]\nlisten = [\"" + listen + "\"]\nworkers = 1\n" +
         "dispatch = \"" + dispatch + "\"\n" + (dispatch == "shared" ? "ready = \"notify\"\n\n" : "\n");
}

bool served(const std::string& address) {
  const auto r = http_get(address, "/", 20s);
  return r.has_value() && r->status == 200 && r->body == kHelloBody;
}

// A command for a pool of forkpool-hello whose processes wait for `gate` to exist before
// they become forkpool-hello; the first one started (the one that makes `first`) does not.
std::string gated_hello(const std::filesystem::path& gate, const std::filesystem::path& first) {
  return "command = [\"/bin/sh\", \"-c\", \"if mkdir " + first.string() + " 2>/dev/null; then exec " +
         hello_binary().string() + "; fi; while [ ! -e " + gate.string() + " ]; do sleep 0.02; done; exec " +
         hello_binary().string() + "\"]\n";
}

bool nonblocking(pid_t pid, int fd) { return (fd_flags(pid, fd).value_or(0) & O_NONBLOCK) != 0; }

// Reloads the pool "web" on `addr` to master dispatch halfway: its first new worker is
// ready at once, the second waits at a gate (m.dir / "gate"), so one old shared worker
// runs on. Returns that worker's pid.
pid_t switch_to_master_halfway(Master& m, ControlClient& c, const std::string& addr) {
  m.rewrite(supervisor_section() + "[pools.web]\n" + gated_hello(m.dir / "gate", m.dir / "first") +
            "listen = [\"tcp://" + addr + "\"]\nworkers = 2\ndispatch = \"master\"\n\n");
  require_reloaded(m.reload(), 2);
  pid_t old_shared = 0;
  REQUIRE(wait_until([&] {
    const json p = pool_status(c, "web");
    int master_ready = 0;
    old_shared = 0;
    for (const auto& w : p["workers"]) {
      if (w.value("generation", 0u) == 2 && w["state"] != "starting" && w["role"] == "serving") ++master_ready;
      if (w.value("generation", 0u) == 1 && w["role"] == "serving") old_shared = w["pid"].get<pid_t>();
    }
    return master_ready == 1 && old_shared > 0;
  }, kSettle));
  return old_shared;
}

}  // namespace

TEST_CASE("a reload from master to shared dispatch serves what the master queued and parked, each connection once more",
          "[reload][dispatch]") {
  const auto config = [](const std::string& dispatch) {
    const std::string master_only =
        dispatch == "master" ? "max_inflight = 1\nkeepalive = \"master\"\nqueue_timeout = \"120s\"\n" : "";
    return supervisor_section() + hello_pool("web", 1, "dispatch = \"" + dispatch + "\"\n" + master_only);
  };
  Master m(config("master"));
  const std::string addr = m.process->wait_listen_address("web");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }));

  // A keep-alive connection that waits in the master between requests.
  HttpConnection parked(addr, 20s);
  REQUIRE(parked.request("GET", "/"));
  const auto first = parked.read_response();
  REQUIRE(first.has_value());
  CHECK(first->status == 200);
  REQUIRE(wait_until([&] { return counter_of(pool_status(c, "web"), "parked_now") == 1; }));

  // The only worker holds a request; two more clients wait in the master's queue.
  HeldRequest held(addr);
  REQUIRE(wait_until([&] { return pool_status(c, "web").value("busy", 0) == 1; }));
  auto queued_a = std::async(std::launch::async, [&] { return http_get(addr, "/", 60s); });
  auto queued_b = std::async(std::launch::async, [&] { return http_get(addr, "/", 60s); });
  REQUIRE(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.is_object() && p["queue"]["length"] == 2;
  }));

  m.rewrite(config("shared"));
  require_reloaded(m.reload(), 2);
  // The new worker accepts by itself; the old one, still holding the request, stays for
  // the queue.
  REQUIRE(wait_until([&] {
    const json p = pool_status(c, "web");
    if (!p.is_object()) return false;
    bool retiring = false, serving_ready = false;
    for (const auto& w : p["workers"]) {
      if (w["role"] == "retiring") retiring = true;
      if (w["role"] == "serving" && w["state"] != "starting") serving_ready = true;
    }
    return retiring && serving_ready;
  }, kSettle));
  CHECK(served(addr));  // a new client goes to the new worker meanwhile

  const auto held_reply = held.release();
  REQUIRE(held_reply.has_value());
  CHECK(held_reply->status == 200);
  for (auto* queued : {&queued_a, &queued_b}) {
    const auto r = queued->get();
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
    CHECK(r->body == kHelloBody);
  }
  // The parked connection's next request is answered too, by the old worker, which closes
  // it after saying so (FP_FD_LAST: the master will not hold it again); then the old
  // worker goes.
  REQUIRE(parked.request("GET", "/"));
  const auto again = parked.read_response();
  REQUIRE(again.has_value());
  CHECK(again->status == 200);
  CHECK(again->headers.count("connection") == 1);
  if (again->headers.count("connection") == 1) CHECK(again->headers.at("connection") == "close");
  CHECK(parked.closed_by_peer());
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }, kSettle));
  const json p = pool_status(c, "web");
  INFO(p.dump());
  CHECK(counter_of(p, "queue_timeouts") == 0);
  CHECK(counter_of(p, "lost") == 0);
  CHECK(counter_of(p, "parked_closed") == 0);
  CHECK(counter_of(p, "parked_now") == 0);
  CHECK(m.log_count("queue\\.timeout") == 0);
  CHECK(served(addr));
}

namespace {

// A pool in dispatch `from` reloaded to a program that fails in dispatch `to`: the pool is
// failed, its old workers run on, and they still get every client.
void check_failed_switch_keeps_old_workers(const std::string& from, const std::string& to) {
  // A port of its own: the reload names the same address, which the master keeps open.
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  Master m(supervisor_section() + hello_pool("web", 1, "dispatch = \"" + from + "\"\n", "tcp://" + addr));
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }));
  const auto before = serving_pids(pool_status(c, "web"));

  m.rewrite(supervisor_section() + broken_pool(to, "tcp://" + addr));
  require_reloaded(m.reload(), 2);
  REQUIRE(wait_until([&] { return pool_status(c, "web").value("state", "") == "failed"; }, kSettle));
  CHECK(serving_pids(pool_status(c, "web")) == before);
  for (int i = 0; i < 3; ++i) CHECK(served(addr));
  // Nothing queued for workers that never came.
  CHECK(pool_status(c, "web")["queue"]["length"] == 0);
}

}  // namespace

TEST_CASE("a reload from master to shared dispatch whose program fails leaves the old workers serving",
          "[reload][dispatch]") {
  check_failed_switch_keeps_old_workers("master", "shared");
}

TEST_CASE("a reload from shared to master dispatch whose program fails leaves the old workers serving",
          "[reload][dispatch]") {
  check_failed_switch_keeps_old_workers("shared", "master");
}

TEST_CASE("a reload from shared to master dispatch leaves the old workers accepting until a new one is ready",
          "[reload][dispatch]") {
  // A port of its own: the reload names the same address, which the master keeps open.
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  Master m(supervisor_section() + hello_pool("web", 1, "dispatch = \"shared\"\n", "tcp://" + addr));
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }));

  // The new program waits for a file before it becomes forkpool-hello: it cannot be
  // ready before the test says so, however fast the machine.
  const auto gate = m.dir / "gate";
  m.rewrite(supervisor_section() + "[pools.web]\ncommand = [\"/bin/sh\", \"-c\", \"while [ ! -e " + gate.string() +
            " ]; do sleep 0.02; done; exec " + hello_binary().string() + "\"]\nlisten = [\"tcp://" + addr +
            "\"]\nworkers = 1\ndispatch = \"master\"\n\n");
  require_reloaded(m.reload(), 2);
  REQUIRE(wait_until([&] {
    const json p = pool_status(c, "web");
    return p.is_object() && p["workers"].size() == 2;  // the replacement has started
  }));
  // By the old worker: the master takes none of them (it did, and queued them for a
  // worker that was not ready, when it raced the old worker for every connection).
  for (int i = 0; i < 20; ++i) CHECK(served(addr));
  CHECK(counter_of(pool_status(c, "web"), "accepted") == 0);

  replace_file(gate, "");
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 1); }, kSettle));
  CHECK(served(addr));
  CHECK(counter_of(pool_status(c, "web"), "dispatched") >= 1);  // the master's turn now
}

TEST_CASE("an unchanged reload after a switch to shared dispatch leaves the workers accepting", "[reload][dispatch]") {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  const auto config = [&](const std::string& dispatch) {
    return supervisor_section() + hello_pool("web", 2, "dispatch = \"" + dispatch + "\"\n", "tcp://" + addr);
  };
  Master m(config("master"));
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  m.rewrite(config("shared"));
  require_reloaded(m.reload(), 2);
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }, kSettle));
  const auto accepted = counter_of(pool_status(c, "web"), "accepted");
  // The pool is unchanged by this one: the master took its listeners up again.
  require_reloaded(m.reload(), 3);
  for (int i = 0; i < 6; ++i) CHECK(served(addr));
  const json p = pool_status(c, "web");
  CHECK(counter_of(p, "accepted") == accepted);
  CHECK(p["queue"]["length"] == 0);
}

TEST_CASE("switching back to shared dispatch halfway leaves the listener non-blocking under the workers that set it",
          "[reload][dispatch]") {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  const auto shared = supervisor_section() + hello_pool("web", 2, "dispatch = \"shared\"\n", "tcp://" + addr);
  Master m(shared);
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  // Halfway to master dispatch, one old shared worker (forkpool-hello: it made the
  // listener non-blocking) runs on.
  const pid_t old_shared = switch_to_master_halfway(m, c, addr);
  REQUIRE(nonblocking(old_shared, 3));
  // And back to shared before the switch is done: the master gives back what it set, not
  // the flag the old worker accepts by.
  m.rewrite(shared);
  require_reloaded(m.reload(), 3);
  CHECK(nonblocking(old_shared, 3));
  for (int i = 0; i < 6; ++i) CHECK(served(addr));
  replace_file(m.dir / "gate", "");
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }, kSettle));
  for (int i = 0; i < 4; ++i) CHECK(served(addr));
  CHECK(counter_of(pool_status(c, "web"), "crashed") == 0);
}

TEST_CASE("a switch to master dispatch leaves the listener blocking while a worker that accepts in blocking mode runs",
          "[reload][dispatch]") {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  Master m(supervisor_section() + "[pools.web]\ncommand = [\"python3\", \"-c\", " + json(kBlockingServer).dump() +
           "]\nlisten = [\"tcp://" + addr + "\"]\nworkers = 2\ndispatch = \"shared\"\n\n");
  REQUIRE(m.ready());
  auto c = m.client();
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }));
  CHECK(served(addr));
  // Halfway to master dispatch: the master may not accept (its listener would be
  // non-blocking) while the other old worker runs.
  const pid_t old_shared = switch_to_master_halfway(m, c, addr);
  for (int i = 0; i < 6; ++i) CHECK(served(addr));  // the old worker accepts them
  CHECK_FALSE(nonblocking(old_shared, 3));
  CHECK(counter_of(pool_status(c, "web"), "accepted") == 0);
  // Once it is gone, the master accepts for the new workers.
  replace_file(m.dir / "gate", "");
  REQUIRE(wait_until([&] { return settled(pool_status(c, "web"), 2); }, kSettle));
  for (int i = 0; i < 4; ++i) CHECK(served(addr));
  CHECK(wait_until([&] { return counter_of(pool_status(c, "web"), "accepted") >= 1; }));
  CHECK(counter_of(pool_status(c, "web"), "crashed") == 0);
  CHECK(m.log_count("exited with status 1") == 0);
}
