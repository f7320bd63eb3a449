// SPDX-License-Identifier: Apache-2.0
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

TEST_CASE("a flood of malformed records is logged five times, then counted in summaries",
          "[channel][flood]") {
  constexpr int kFlood = 20000;
  TempDir dir;
  write_file(dir / "f.toml",
             channel_pool(R"(, "--channel-junk", ")" + std::to_string(kFlood) +
                          R"(", "--junk-size", "1", "--channel-ready", "--serve")"));
  MasterProcess master(dir / "f.toml");
  const std::string addr = master.wait_listen_address("web");
  // READY follows the whole flood on the channel, so once ready every record was read.
  REQUIRE(!master.wait_log("\\[master.ready\\]", 30s).empty());
  const pid_t pid = master.wait_worker_started("web", 0);
  const auto r = http_get(addr, "/", 10s);  // and the worker still serves
  REQUIRE(r.has_value());
  CHECK(r->status == 200);

  // Stopping the pool ends the worker; what was still counted is summed up then.
  ControlClient c(dir / "ctl.sock");
  REQUIRE(c.request({{"cmd", "stop"}, {"pool", "web"}}).value("ok", false));
  const std::string who = "worker web\\[0\\] pid " + std::to_string(pid);
  std::size_t full = 0;
  std::uint64_t suppressed = 0;
  std::size_t summaries = 0;
  auto count = [&] {
    full =
        master.all_matches("\\[channel.bad_message\\] (" + who + " sent a 1-byte record)").size();
    const auto sums = master.all_matches("\\[channel.bad_message\\] " + who +
                                         ": ([0-9]+) more suppressed in the last");
    summaries = sums.size();
    suppressed = 0;
    for (const auto& s : sums) suppressed += std::stoull(s);
    return full + suppressed == kFlood;
  };
  CHECK(wait_until(count, 20s));
  INFO("full lines: " << full << ", summaries: " << summaries << ", suppressed: " << suppressed);
  CHECK(full == 5);
  CHECK(full + suppressed == kFlood);
  // A summary a window at most, plus the last one: a handful of lines, not thousands.
  CHECK(summaries >= 1);
  CHECK(master.all_matches("(\\[channel.bad_message\\])").size() < 20);
}
