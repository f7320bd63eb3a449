// A worker that misbehaves on its channel, against the real master: an empty record is
// malformed, not the end of the channel; malformed records are named by their size; and
// a flood of them is logged a few times and then summed up, not line by line.

#include <catch2/catch.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "support/control_client.hpp"
#include "support/http_client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait_until.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// One master-dispatch pool of one fp-testworker with `args`, ready by its READY record.
std::string channel_pool(const std::string& args) {
  return "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
         testworker_binary().string() + "\"" + args +
         "]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\nready = \"notify\"\nready_timeout = "
         "\"60s\"\n";
}

json web_status(const TempDir& dir) {
  ControlClient c(dir / "ctl.sock");
  const json r = c.request({{"cmd", "status"}});
  return r.is_object() && r.value("ok", false) ? r["pools"][0] : json();
}

}  // namespace

TEST_CASE("an empty channel record is malformed and the master keeps reading that worker",
          "[channel]") {
  TempDir dir;
  // An empty record first, then READY; and an empty record before each DONE.
  write_file(dir / "f.toml",
             channel_pool(
                 R"(, "--channel-junk", "1", "--channel-ready", "--serve", "--junk-before-done")"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  REQUIRE(!addr.empty());
  // READY came after the empty record: the master read on.
  REQUIRE(!master.wait_log("\\[master.ready\\]", 20s).empty());
  for (int i = 0; i < 3; ++i) {
    const auto r = http_get(addr, "/", 10s);
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
    CHECK(r->body == "ok\n");
  }
  // Each DONE came after an empty record too, and was counted.
  REQUIRE(wait_until([&] { return web_status(dir)["counters"].value("completed", 0) == 3; }));
  const json p = web_status(dir);
  INFO(p.dump(2));
  CHECK(p["counters"]["lost"] == 0);
  CHECK(p["counters"]["in_flight"] == 0);
  CHECK(p["ready"] == 1);
  CHECK(master.all_matches("(worker web\\[0\\] pid [0-9]+ sent an empty record)").size() == 4);
  CHECK(master.all_matches("(\\[worker.exit\\])").empty());
}

TEST_CASE("a malformed channel record is described by its size", "[channel]") {
  TempDir dir;
  write_file(dir / "f.toml",
             channel_pool(R"(, "--channel-junk", "1", "--junk-size", "100", "--channel-ready")"));
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]", 20s).empty());
  CHECK(!master
             .wait_log(
                 "\\[channel.bad_message\\] worker web\\[0\\] pid [0-9]+ sent a 100-byte record "
                 "\\(a record is 16 bytes\\); ignored")
             .empty());
  CHECK(master.all_matches("(16-byte message)").empty());
}

TEST_CASE("a flood of malformed records is logged five times, summed up, and its worker recycled",
          "[channel][flood]") {
  constexpr int kFlood = 20000;
  TempDir dir;
  write_file(dir / "f.toml",
             channel_pool(R"(, "--channel-junk", ")" + std::to_string(kFlood) +
                          R"(", "--junk-size", "1", "--channel-ready", "--serve")"));
  MasterProcess master(dir / "f.toml");
  const pid_t pid = master.wait_worker_started("web", 0);
  REQUIRE(pid > 0);
  // After kProtocolErrorLimit (16) malformed records the worker is taken out of service
  // and replaced (each replacement floods again: the pool never gets a ready worker).
  const std::string who = "worker web\\[0\\] pid " + std::to_string(pid);
  REQUIRE(!master.wait_log(who + ".*sent 16 malformed channel records", 30s).empty());
  REQUIRE(master.wait_worker_started_after("web", 0, pid) > 0);
  // The flood is not a flood in the log: five full lines for that worker, then sums.
  CHECK(wait_until([&] {
    return !master.all_matches("\\[channel.bad_message\\] " + who + ": ([0-9]+) more suppressed").empty();
  }, 30s));
  CHECK(master.all_matches("\\[channel.bad_message\\] (" + who + " sent a 1-byte record)").size() == 5);
  CHECK(master.all_matches("(\\[channel.bad_message\\] " + who + ")").size() < 20);
  // And the master still answers.
  ControlClient c(dir / "ctl.sock");
  CHECK(c.request({{"cmd", "status"}}).value("ok", false));
}
