// SPDX-License-Identifier: Apache-2.0
// forkpoolctl's text output: units, colour-aware widths, tables, and the status, event and
// top renderings from canned input.

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ctl/format.hpp"
#include "ctl/render_reply.hpp"
#include "ctl/render_status.hpp"
#include "ctl/render_top.hpp"
#include "ctl/socket_path.hpp"
#include "support/temp_dir.hpp"

using namespace forkpool::ctl;
namespace shm = forkpool::shm;

namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Index of the line that starts (after spaces) with `prefix`.
std::size_t find_line(const std::vector<std::string>& lines, const std::string& needle) {
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find(needle) != std::string::npos) return i;
  }
  FAIL("no line contains " << needle);
  return 0;
}

const char* kStatus = R"({"ok":true,
 "master":{"pid":123,"version":"0.1.0","config":"/etc/forkpool/forkpool.toml","state":"running","uptime_s":192.4},
 "pools":[{"name":"web","state":"running","dispatch":"master","balance":"least-busy","listeners":["tcp://127.0.0.1:8080"],
   "keepalive":"master",
   "target":3,"live":3,"ready":2,"busy":1,"idle":1,"queue":{"length":0,"peak":3,"limit":1024},
   "counters":{"accepted":1500,"dispatched":1500,"completed":1499,"in_flight":1,"lost":0,"closed":0,"queue_timeouts":2,
               "spawned":4,"crashed":1,"killed":0,"recycled":0,"spawn_failed":2,"parked_now":5,"parked":900,
               "resumed":880,"keepalive_timeouts":12,"keepalive_closed":3,"parked_closed":0},
   "accept_paused":"out of descriptors, 64 of 64 open",
   "duration_ms":{"count":1499,"p50":1.5,"p90":4.0,"p99":12.25,"max":30.0},
   "queue_wait_ms":{"count":1500,"p50":0.0,"p90":0.5,"p99":2.0,"max":3.0},
   "workers":[
     {"worker":0,"slot":0,"pid":1234,"state":"idle","role":"serving","generation":1,"uptime_s":192.0,"handled":1000,
      "in_flight":0,"current_ms":0.0,"restarts":0,"last_exit":null,"rss_bytes":13107200,"cpu_s":0.25,"status":null},
     {"worker":1,"slot":1,"pid":98765,"state":"busy","role":"serving","generation":1,"uptime_s":7500,"handled":499,
      "in_flight":1,"current_ms":1250.0,"restarts":3,"last_exit":"exited on signal 9","rss_bytes":2048,"cpu_s":12.5,
      "status":"warming caches"},
     {"worker":12,"slot":2,"pid":0,"state":"starting","role":"replacement","generation":2,"uptime_s":0.4,"handled":0,
      "in_flight":0,"current_ms":0.0,"restarts":0,"last_exit":null,"rss_bytes":0,"cpu_s":0.0,"status":null}]},
  {"name":"jobs","state":"failed","dispatch":"shared","balance":"least-busy","listeners":["tcp://127.0.0.1:9000"],
   "failed_reason":"its program could not be started 3 times in a row","target":1,"live":0,"ready":0,"busy":0,"idle":0,
   "queue":{"length":0,"peak":0,"limit":0},"counters":{"spawn_failed":3},
   "workers":[{"worker":0,"slot":3,"pid":0,"state":"failed","role":"serving","generation":1,"uptime_s":0,"handled":0,
      "in_flight":0,"current_ms":0.0,"restarts":2,"last_exit":null,"rss_bytes":0,"cpu_s":0.0,"status":null,
      "last_error":"execve /srv/jobs: No such file or directory"}]}]})";

}  // namespace

TEST_CASE("ctl durations read like a person would write them", "[ctl][format]") {
  CHECK(format_duration(0) == "0ms");
  CHECK(format_duration(-3) == "0ms");
  CHECK(format_duration(0.85) == "850ms");
  CHECK(format_duration(1.25) == "1.2s");
  CHECK(format_duration(59.99) == "59.9s");
  CHECK(format_duration(192) == "3m12s");
  CHECK(format_duration(7500) == "2h05m");
  CHECK(format_duration(3 * 86400 + 4 * 3600 + 59) == "3d04h");
  CHECK(format_ms(0) == "0ms");
  CHECK(format_ms(0.42) == "0.42ms");
  CHECK(format_ms(12.25) == "12.2ms");
  CHECK(format_ms(340) == "340ms");
  CHECK(format_ms(1250) == "1.2s");
}

TEST_CASE("ctl sizes and rates use binary units and one decimal", "[ctl][format]") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(13107200) == "12.5 MiB");
  CHECK(format_bytes(200ull << 20) == "200 MiB");
  CHECK(format_bytes(3ull << 40) == "3.00 TiB");
  CHECK(format_rate(0) == "0.0/s");
  CHECK(format_rate(12.34) == "12.3/s");
  CHECK(format_rate(4321.6) == "4322/s");
}

TEST_CASE("ctl widths ignore colour, truncation keeps escapes whole", "[ctl][format]") {
  const std::string red = paint("exited", Colour::Red, true);
  CHECK(red != "exited");
  CHECK(paint("exited", Colour::Red, false) == "exited");
  CHECK(display_width(red) == 6);
  CHECK(display_width("héllo") == 5);
  const std::string cut = truncate_to_width("ab" + red + "cd", 4);
  CHECK(display_width(cut) == 4);
  CHECK(cut.find("\x1b[31m") != std::string::npos);
  CHECK(cut.substr(cut.size() - 4) == "\x1b[0m");  // colour does not leak past the cut
  CHECK(truncate_to_width("abc", 0) == "abc");
  CHECK(truncate_to_width("abc", 10) == "abc");
  CHECK(state_colour("idle") == Colour::Green);
  CHECK(state_colour("busy") == Colour::Yellow);
  CHECK(state_colour("failed") == Colour::Red);
}

TEST_CASE("ctl table pads columns, right-aligns numbers, colour does not shift them",
          "[ctl][format]") {
  Table t({"NAME", "N", "STATE"}, {Align::Left, Align::Right, Align::Left});
  t.add_row({{"a"}, {"1000"}, {"idle", Colour::Green}});
  t.add_row({{"longer"}, {"7"}, {"busy", Colour::Yellow}});
  for (bool colour : {false, true}) {
    auto lines = split_lines(t.render(colour, "  "));
    REQUIRE(lines.size() == 3);
    for (auto& l : lines) l = truncate_to_width(l, 0);
    if (!colour) {
      CHECK(lines[0] == "  NAME       N  STATE");
      CHECK(lines[1] == "  a       1000  idle");
      CHECK(lines[2] == "  longer     7  busy");
    } else {
      for (const auto& l : lines) CHECK(display_width(l) <= 21);
      CHECK(lines[1].find("\x1b[32midle\x1b[0m") != std::string::npos);
    }
  }
}

TEST_CASE("ctl status renders a summary per pool and an aligned worker table", "[ctl][status]") {
  const auto reply = nlohmann::json::parse(kStatus);
  const std::string text = render_status(reply, false);
  const auto lines = split_lines(text);
  CHECK(lines.at(0) ==
        "master pid 123  running  up 3m12s  version 0.1.0  config /etc/forkpool/forkpool.toml");
  CHECK(text.find("pool web  running  dispatch master (least-busy)  listen tcp://127.0.0.1:8080") !=
        std::string::npos);
  CHECK(text.find("target 3  live 3  ready 2  busy 1  idle 1") != std::string::npos);
  CHECK(text.find("queue     0 (peak 3, limit 1024)  timeouts 2") != std::string::npos);
  CHECK(text.find("accepted 1500  dispatched 1500  completed 1499  in flight 1") !=
        std::string::npos);
  CHECK(text.find("spawned 4  crashed 1  spawn failed 2  killed 0") != std::string::npos);
  CHECK(text.find("  parked    5 now  parked 900  resumed 880  timed out 12  closed by client 3  closed 0\n") !=
        std::string::npos);
  CHECK(text.find("accepting paused: out of descriptors, 64 of 64 open") != std::string::npos);
  CHECK(text.find("p50 1.5ms  p90 4.0ms  p99 12.2ms  max 30.0ms  (n=1499)") != std::string::npos);
  CHECK(text.find("pool jobs  failed  dispatch shared  listen tcp://127.0.0.1:9000") != std::string::npos);
  // A failed pool says why; a shared pool has no queue, no connections of the master's and
  // no balance.
  const std::string jobs = text.substr(text.find("pool jobs"));
  CHECK(jobs.find("  failed    its program could not be started 3 times in a row\n") != std::string::npos);
  CHECK(jobs.find("queue") == std::string::npos);
  CHECK(jobs.find("accepted") == std::string::npos);
  CHECK(jobs.find("parked") == std::string::npos);
  CHECK(jobs.find("least-busy") == std::string::npos);
  CHECK(text.substr(0, text.find("pool jobs")).find("failed    ") == std::string::npos);
  // The slot whose start failed stays in the table, with the error in place of an exit.
  const std::size_t failed_row = find_line(lines, "execve /srv/jobs: No such file or directory");
  CHECK(lines[failed_row].find("failed") != std::string::npos);

  const std::size_t h = find_line(lines, "WORKER");
  const std::string& header = lines[h];
  CHECK(header.rfind("  WORKER", 0) == 0);
  const std::vector<std::string> rows{lines.at(h + 1), lines.at(h + 2), lines.at(h + 3)};
  // Left-aligned columns start where their header starts.
  for (const char* col : {"STATE", "ROLE", "LAST-EXIT", "STATUS"}) {
    const auto at = header.find(col);
    REQUIRE(at != std::string::npos);
    for (const auto& r : rows) {
      INFO(col << " in: " << r);
      CHECK(r.at(at - 1) == ' ');
      CHECK(r.at(at) != ' ');
    }
  }
  // Right-aligned columns end where their header ends.
  for (const char* col : {"PID", "GEN", "UPTIME", "HANDLED", "INFLIGHT", "RSS", "CPU"}) {
    const auto end = header.find(std::string(col) + " ") + std::string(col).size() - 1;
    for (const auto& r : rows) {
      INFO(col << " in: " << r);
      CHECK(r.at(end) != ' ');
      CHECK(r.at(end + 1) == ' ');
    }
  }
  CHECK(rows[0].find("1234") != std::string::npos);
  CHECK(rows[0].find("12.5 MiB") != std::string::npos);
  CHECK(rows[0].find("3m12s") != std::string::npos);
  CHECK(rows[0].find("0.25s") != std::string::npos);
  CHECK(rows[1].find("2h05m") != std::string::npos);
  CHECK(rows[1].find("exited on signal 9") != std::string::npos);
  CHECK(rows[1].find("warming caches") != std::string::npos);
  CHECK(rows[1].find("1.2s") != std::string::npos);
  CHECK(rows[2].find("replacement") != std::string::npos);
  CHECK(rows[2].find("starting") != std::string::npos);

  // Colour changes bytes, not columns.
  const std::string coloured = render_status(reply, true);
  CHECK(coloured.find('\x1b') != std::string::npos);
  const auto clines = split_lines(coloured);
  REQUIRE(clines.size() == lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i)
    CHECK(display_width(clines[i]) == display_width(lines[i]));
}

TEST_CASE("ctl status of a pool switched to shared dispatch shows what the master still holds", "[ctl][status]") {
  // A reload from master to shared dispatch: the older worker serves what the master
  // queued and parked before it goes (docs/master.md); until then status says so.
  const auto reply = nlohmann::json::parse(R"({"ok":true,"pools":[{"name":"web","state":"running",
    "dispatch":"shared","listeners":["tcp://127.0.0.1:8080"],"target":1,"live":2,"ready":2,"busy":1,"idle":1,
    "queue":{"length":2,"peak":2,"limit":1024},
    "counters":{"accepted":9,"dispatched":7,"completed":5,"in_flight":1,"parked_now":1,"parked":3,"resumed":2},
    "workers":[]}]})");
  const std::string text = render_status(reply, false);
  CHECK(text.find("queue     2 (peak 2, limit 1024)") != std::string::npos);
  CHECK(text.find("accepted 9  dispatched 7  completed 5  in flight 1") != std::string::npos);
  CHECK(text.find("  parked    1 now  parked 3  resumed 2") != std::string::npos);
}

TEST_CASE("ctl status tolerates missing fields", "[ctl][status]") {
  CHECK(render_status(nlohmann::json::parse(R"({"ok":true})"), false).find("no pools") !=
        std::string::npos);
  const auto text = render_status(
      nlohmann::json::parse(R"({"ok":true,"pools":[{"name":"x","workers":[{}]}]})"), false);
  CHECK(text.find("pool x") != std::string::npos);
  CHECK(last_exit_text(nullptr) == "-");
  CHECK(last_exit_text(nlohmann::json::parse(R"({"signal":9})")) == "signal 9");
}

TEST_CASE("ctl events and acknowledgements render on one line", "[ctl][events]") {
  const auto ev = nlohmann::json::parse(
      R"({"time":"2026-01-02T03:04:05Z","event":"worker.exit","pool":"web","worker":3,"pid":1234,"message":"exited on signal 9 after 12.3s","status":137})");
  const std::string line = render_event(ev, false);
  CHECK(line == "2026-01-02T03:04:05Z  worker.exit     web[3]  pid 1234  exited on signal 9 after 12.3s\n");
  // A multi-line message (a refused reload) continues on indented lines, as in the
  // master's text log; control characters stay escaped.
  const auto refused = nlohmann::json::parse(
      R"({"time":"t","event":"config.reload_failed","pool":"","message":"reload refused: 2 errors\n  f.toml:1:1: a\nf.toml:2:1: b\u001b"})");
  CHECK(render_event(refused, false) ==
        "t  config.reload_failed  -  reload refused: 2 errors\n  f.toml:1:1: a\n  f.toml:2:1: b\\e\n");
  const auto bare = nlohmann::json::parse(R"({"time":"t","event":"x.y","pool":"web","status":137})");
  CHECK(render_event(bare, false) == "t  x.y             web status=137\n");
  const auto scale = nlohmann::json::parse(R"({"cmd":"scale","pool":"web","workers":8})");
  CHECK(render_reply(scale, nlohmann::json::parse(R"({"ok":true})")) == "scale web 8: ok\n");
  CHECK(render_reply(scale,
                     nlohmann::json::parse(R"({"ok":true,"message":"web: 4 -> 8 workers"})")) ==
        "web: 4 -> 8 workers\n");
  CHECK(render_reply({{"cmd", "metrics"}}, {{"ok", true}, {"text", "a 1"}}) == "a 1\n");
  CHECK(render_reply(
            {{"cmd", "version"}},
            nlohmann::json::parse(R"({"ok":true,"version":"0.1.0","protocol":1,"control":1})")) ==
        "forkpool 0.1.0 (worker protocol 1, control protocol 1)\n");
}

TEST_CASE("ctl top frame: header, pool line with rates and percentiles, one line per worker",
          "[ctl][top]") {
  shm::ScoreboardSnapshot s;
  s.master_pid = 42;
  s.master_start_monotonic_ns = 1'000'000'000;
  s.taken_monotonic_ns = 193'000'000'000;
  shm::PoolSnapshot p;
  p.pool = 0;
  p.state = shm::PoolState::Running;
  p.size = 2;
  p.accepted = 100;
  p.completed = 90;
  p.duration.count = 10;
  p.duration.buckets[shm::histogram_bucket(1500)] = 10;  // 1.5 ms
  p.duration.max_us = 1500;
  s.pools.push_back(p);
  shm::WorkerSnapshot w;
  w.slot = 0;
  w.pool = 0;
  w.worker_index = 0;
  w.pid = 1234;
  w.state = shm::WorkerState::Busy;
  w.in_flight = 1;
  w.busy_since_ns = s.taken_monotonic_ns - 2'500'000'000;
  w.start_time_ns = s.taken_monotonic_ns - 60'000'000'000;
  w.connections_handled = 77;
  w.rss_bytes = 13107200;
  w.cpu_time_us = 1'500'000;
  s.workers.push_back(w);
  w.slot = 1;
  w.worker_index = 1;
  w.pid = 1235;
  w.state = shm::WorkerState::Idle;
  w.in_flight = 0;
  w.busy_since_ns = 0;
  w.anomalies = shm::kAnomalyStalePage;
  s.workers.push_back(w);
  w.slot = 2;
  w.state = shm::WorkerState::Empty;  // a slot no worker uses: not shown
  s.workers.push_back(w);

  RateTracker rates;
  rates.add(s);
  s.taken_monotonic_ns += 2'000'000'000;
  s.pools[0].accepted += 40;
  s.pools[0].completed += 12;
  s.pools[0].parked += 8;  // with keepalive = "master" a request served ends with a PARK
  s.workers[0].busy_since_ns += 0;
  rates.add(s);
  CHECK(rates.rates(0).accepted_per_s == Approx(20.0));
  CHECK(rates.rates(0).completed_per_s == Approx(10.0));

  const std::vector<std::string> names{"web"};
  TopFrame f;
  f.snapshot = &s;
  f.pool_names = &names;
  f.rates = &rates;
  f.clock = "12:00:00";
  auto lines = render_top_frame(f);
  REQUIRE(lines.size() ==
          7);  // header, notice, blank, pool, table header, 2 workers (not the empty slot)
  CHECK(lines[0].find("master pid 42  up 3m14s  pools 1  workers 2 (busy 1)") != std::string::npos);
  CHECK(lines[3].find("web running  size 2  idle 1 busy 1") != std::string::npos);
  CHECK(lines[3].find("conn/s 10.0/s (accepted 20.0/s)") != std::string::npos);
  CHECK(lines[3].find("p50 1.5ms p90 1.5ms p99 1.5ms") != std::string::npos);
  CHECK(lines[4].find("SLOT") != std::string::npos);
  CHECK(lines[5].find("1234") != std::string::npos);
  CHECK(lines[5].find("busy") != std::string::npos);
  CHECK(lines[5].find("4.5s") != std::string::npos);  // connection age
  CHECK(lines[5].find("12.5 MiB") != std::string::npos);
  CHECK(lines[5].find("1.50s") != std::string::npos);
  CHECK(lines[6].find("restarted, refreshing") != std::string::npos);
  // A dynamic pool shows the bounds of its size, as the scoreboard has them now, and why
  // and when it last scaled.
  s.pools[0].min_workers = 1;
  s.pools[0].max_workers = 8;
  s.pools[0].last_scale = {forkpool::shm::ScaleReason::Waiting, 1, 2, s.taken_monotonic_ns - 4'000'000'000};
  s.pools[0].scale_decisions = 3;
  lines = render_top_frame(f);
  REQUIRE(lines.size() == 8);
  CHECK(lines[3].find("web running  size 2 (min 1, max 8)  idle 1 busy 1") != std::string::npos);
  CHECK(lines[4] == "  last scale: up from 1 to 2: connections waiting, 4.0s ago (3 decisions)");
  s.pools[0].last_scale = {forkpool::shm::ScaleReason::IdleTimeout, 2, 1, s.taken_monotonic_ns};
  CHECK(render_top_frame(f)[4].find("down from 2 to 1: idle longer than idle_timeout") != std::string::npos);
  // A fixed pool: bounds equal to the size are not shown, and it never scaled.
  s.pools[0].min_workers = s.pools[0].max_workers = 2;
  s.pools[0].last_scale = {};
  lines = render_top_frame(f);
  REQUIRE(lines.size() == 7);
  CHECK(lines[3].find("web running  size 2  idle 1 busy 1") != std::string::npos);
  f.width = 30;
  f.height = 4;
  f.colour = true;
  lines = render_top_frame(f);
  REQUIRE(lines.size() == 4);
  for (const auto& l : lines) CHECK(display_width(l) <= 30);
  CHECK(lines[3].find("more lines") != std::string::npos);

  // Rows below the terminal's bottom are not built, yet counted in what is hidden.
  for (std::uint32_t i = 3; i < 40; ++i) {
    w.slot = i;
    w.worker_index = i;
    w.pid = static_cast<std::int32_t>(2000 + i);
    w.state = shm::WorkerState::Idle;
    w.anomalies = 0;
    s.workers.push_back(w);
  }
  f.width = 0;
  f.height = 0;
  f.colour = false;
  const std::size_t all = render_top_frame(f).size();
  REQUIRE(all == 7 + 37);
  f.height = 12;
  lines = render_top_frame(f);
  REQUIRE(lines.size() == 12);
  CHECK(lines[10].find("2006") != std::string::npos);  // the rows up to the last line
  CHECK(lines[11] == "... " + std::to_string(all - 11) + " more lines (enlarge the window)");
}

TEST_CASE("ctl socket choice: -s, -c, FORKPOOL_SOCKET, the config files, the packaged default", "[ctl][socket]") {
  forkpool::test::TempDir dir;
  const auto cfg = dir / "forkpool.toml";
  const auto etc = dir / "etc.toml";
  ::unsetenv("FORKPOOL_SOCKET");
  SocketSearch search;
  search.config_files = {dir / "absent.toml", etc};
  search.packaged = dir / "run.sock";

  // Nothing anywhere: no path, and every place looked at is named.
  const auto none = choose_socket(search);
  CHECK(none.path.empty());
  REQUIRE(none.tried.size() == 6);
  CHECK(none.tried[0] == "-s SOCKET: not given");
  CHECK(none.tried[1] == "-c CONFIG: not given");
  CHECK(none.tried[2] == "$FORKPOOL_SOCKET: not set");
  CHECK(none.tried[3] == (dir / "absent.toml").string() + ": no such file");
  CHECK(none.tried[4] == etc.string() + ": no such file");
  CHECK(none.tried[5].find("run.sock (the packaged default): no such socket") != std::string::npos);

  // The second config file speaks when the first is absent; errors elsewhere in it (a
  // command that does not exist) do not matter, only control_socket is read.
  {
    std::ofstream f(etc);
    f << "[supervisor]\ncontrol_socket = \"etc.sock\"\n[pools.web]\ncommand = [\"/no/such/program\"]\n";
  }
  const auto from_etc = choose_socket(search);
  CHECK(from_etc.source == etc.string());
  CHECK(std::filesystem::weakly_canonical(from_etc.path) == std::filesystem::weakly_canonical(dir / "etc.sock"));

  // -c names a file: its socket, whatever else is set.
  {
    std::ofstream f(cfg);
    f << "[supervisor]\ncontrol_socket = \"ctl.sock\"\n";
  }
  ::setenv("FORKPOOL_SOCKET", "/run/env.sock", 1);
  search.config = cfg.string();
  const auto from_c = choose_socket(search);
  CHECK(std::filesystem::weakly_canonical(from_c.path) == std::filesystem::weakly_canonical(dir / "ctl.sock"));
  search.config.clear();
  CHECK(choose_socket(search).path == "/run/env.sock");
  search.socket = "/x.sock";
  CHECK(choose_socket(search).path == "/x.sock");
  search.socket.clear();
  ::unsetenv("FORKPOOL_SOCKET");

  // A TOML syntax error in another table (a pool being edited for a reload) does not
  // hide the socket: that is when the operator needs `forkpoolctl reload` to list it.
  for (const std::string tail : {"[pools.web\n", "[pools.web]\nx = \"unterminated\n",
                                 "[pools.web]\nenv = {}\nenv = {}\n", "[[pools.web.listen]]]\n"}) {
    {
      std::ofstream f(etc);
      f << "# comment\n[supervisor]\ncontrol_socket = \"etc.sock\"\n\n" << tail;
    }
    INFO(tail);
    const auto editing = choose_socket(search);
    CHECK(std::filesystem::weakly_canonical(editing.path) == std::filesystem::weakly_canonical(dir / "etc.sock"));
  }
  // A quoted header is the same table; one the scan cannot read is an error, never the
  // default socket (which may be another master's).
  for (const std::string header : {"[\"supervisor\"]", "['supervisor'] # the master", "[ supervisor ]"}) {
    {
      std::ofstream f(etc);
      f << header << "\ncontrol_socket = \"etc.sock\"\n[pools.web]\nworkers = \n";
    }
    INFO(header);
    CHECK(std::filesystem::weakly_canonical(choose_socket(search).path) ==
          std::filesystem::weakly_canonical(dir / "etc.sock"));
  }
  {
    std::ofstream f(etc);
    f << "[pools.web]\nworkers = \n[supervisor\ncontrol_socket = \"etc.sock\"\n";
  }
  const auto unread = choose_socket(search);
  CHECK(unread.path.empty());
  CHECK(unread.problem.find("TOML syntax error") != std::string::npos);
  // A [supervisor] table without control_socket: the default, as for a file that parses.
  {
    std::ofstream f(etc);
    f << "[supervisor]\nlog_level = \"info\"\n[pools.web]\nworkers = \n";
  }
  CHECK(std::filesystem::weakly_canonical(choose_socket(search).path) ==
        std::filesystem::weakly_canonical(dir / "forkpool.sock"));
  // No [supervisor] table and an error elsewhere: the default socket beside the file.
  {
    std::ofstream f(etc);
    f << "[pools.web]\ncommand = [\"/bin/true\"\n";
  }
  CHECK(std::filesystem::weakly_canonical(choose_socket(search).path) ==
        std::filesystem::weakly_canonical(dir / "forkpool.sock"));

  // A broken file is reported, not passed over for the next one.
  {
    std::ofstream f(etc);
    f << "[supervisor]\ncontrol_socket = 1\n";
  }
  const auto broken = choose_socket(search);
  CHECK(broken.path.empty());
  CHECK(broken.problem.find("supervisor.control_socket") != std::string::npos);
  // So is a syntax error in the [supervisor] table itself, with its place.
  {
    std::ofstream f(etc);
    f << "[pools.web]\ncommand = [\"/bin/true\"]\n[supervisor]\ncontrol_socket = \"a.sock\nx = 1\n";
  }
  const auto syntax = choose_socket(search);
  CHECK(syntax.path.empty());
  CHECK(syntax.problem.find(":4:") != std::string::npos);
  CHECK(syntax.problem.find("TOML syntax error") != std::string::npos);
}
