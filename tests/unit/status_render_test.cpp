// SPDX-License-Identifier: Apache-2.0
// Unit tests of the status renderers: one synthetic StatusModel rendered as JSON (and
// parsed back) and as Prometheus text (checked by promtool and by a small parser here).

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "shm/histogram.hpp"
#include "supervisor/observe/prometheus.hpp"
#include "supervisor/observe/status_json.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/skip.hpp"

using forkpool::test::skip_test;

using namespace forkpool::supervisor;
namespace shm = forkpool::shm;
using nlohmann::json;

namespace {

double ms(std::uint64_t us) {
  return static_cast<double>(us) / 1000.0;
}

Percentiles percentiles_ms(const shm::HistogramSnapshot& s) {
  const auto p = shm::histogram_percentiles(s);
  return {p.count, ms(p.p50_us), ms(p.p90_us), ms(p.p99_us), ms(p.max_us)};
}

shm::HistogramSnapshot make_histogram(const std::vector<std::pair<std::uint64_t, int>>& samples) {
  shm::HistogramBlock block{};
  for (const auto& [us, times] : samples) {
    for (int i = 0; i < times; ++i) shm::histogram_record(block, us);
  }
  return shm::histogram_copy(block);
}

WorkerStatus make_worker(unsigned index, pid_t pid, std::string state, std::uint64_t handled) {
  WorkerStatus w;
  w.worker = index;
  w.slot = index + 10;
  w.pid = pid;
  w.state = std::move(state);
  w.role = "serving";
  w.generation = 2;
  w.uptime_s = 12.5 + index;
  w.handled = handled;
  w.in_flight = index % 2;
  w.current_ms = index % 2 ? 3.25 : 0.0;
  w.restarts = index;
  w.rss_bytes = 1'000'000 + index;
  w.cpu_s = 0.25 * (index + 1);
  return w;
}

StatusModel make_model() {
  StatusModel m;
  m.master_pid = 4242;
  m.version = "0.1.0";
  m.config_file = "/etc/forkpool/forkpool.toml";
  m.state = "running";
  m.uptime_s = 123.456;

  PoolStatus web;
  web.name = "web";
  web.state = "running";
  web.dispatch = "master";
  web.balance = "least-busy";
  web.listeners = {"tcp://127.0.0.1:8080", "unix:/run/web.sock"};
  web.target = 3;
  web.dynamic = true;
  web.min = 1;
  web.max = 8;
  web.last_scale = "up from 2 to 3: connections waiting";
  web.live = 3;
  web.ready = 3;
  web.busy = 1;
  web.idle = 2;
  web.queue_length = 2;
  web.queue_peak = 17;
  web.queue_limit = 1024;
  web.accepted = 1001;
  web.dispatched = 999;
  web.completed = 990;
  web.in_flight = 8;
  web.lost = 1;
  web.closed = 2;
  web.queue_timeouts = 3;
  web.spawned = 5;
  web.crashed = 2;
  web.killed = 1;
  web.recycled = 4;
  // Every kind of bucket: 0 us, 1 us, small, large, and the open-ended last one.
  web.duration_histogram = make_histogram(
      {{0, 3}, {1, 5}, {2, 1}, {3, 2}, {500, 40}, {1500, 30}, {250'000, 5}, {5'000'000'000, 1}});
  web.queue_wait_histogram = make_histogram({{0, 900}, {7, 50}, {20'000, 9}});
  web.duration = percentiles_ms(web.duration_histogram);
  web.queue_wait = percentiles_ms(web.queue_wait_histogram);
  web.workers.push_back(make_worker(0, 1001, "idle", 500));
  web.workers.push_back(make_worker(1, 1002, "busy", 490));
  auto w2 = make_worker(2, 1003, "idle", 0);
  w2.last_exit = "exited on signal 9";
  w2.status_text = "serving 12 requests/s";
  web.workers.push_back(w2);

  PoolStatus api;
  api.name = "api";
  api.state = "failed";
  api.dispatch = "shared";
  api.balance = "round-robin";
  api.listeners = {"tcp://[::1]:9000"};
  api.target = 2;
  api.live = 1;
  api.spawned = 9;
  api.crashed = 8;
  api.spawn_failed = 3;
  api.duration_histogram = make_histogram({{100, 10}, {4096, 1}});
  api.duration = percentiles_ms(api.duration_histogram);
  auto a0 = make_worker(0, 2001, "starting", 0);
  a0.role = "replacement";
  a0.last_exit = "exited with status 78";
  api.workers.push_back(a0);
  auto a1 = make_worker(1, 0, "exited", 7);
  a1.role = "retiring";
  api.workers.push_back(a1);
  // A slot whose last start failed: no process, only the error.
  auto a2 = make_worker(1, 0, "failed", 0);
  a2.last_error = "execve /srv/app: No such file or directory";
  api.workers.push_back(a2);

  m.pools = {web, api};
  return m;
}

std::set<std::string> keys(const json& j) {
  std::set<std::string> out;
  for (const auto& [k, v] : j.items()) out.insert(k);
  return out;
}

// name{labels} -> value, plus the families named by # TYPE lines.
struct Exposition {
  std::map<std::string, std::string> samples;
  std::vector<std::string> order;  // sample keys as they appear
  std::map<std::string, std::string> types;
  std::set<std::string> helps;
};

Exposition parse(const std::string& text) {
  Exposition e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      e.helps.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const auto sp = line.find(' ', 7);
      e.types[line.substr(7, sp - 7)] = line.substr(sp + 1);
    } else if (!line.empty()) {
      const auto sp = line.rfind(' ');
      e.samples[line.substr(0, sp)] = line.substr(sp + 1);
      e.order.push_back(line.substr(0, sp));
    }
  }
  return e;
}

std::string family_of(const std::string& sample_key, const Exposition& e) {
  const std::string name = sample_key.substr(0, sample_key.find('{'));
  if (e.types.count(name)) return name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.ends_with(s)) {
      const auto base = name.substr(0, name.size() - s.size());
      if (e.types.count(base) && e.types.at(base) == "histogram") return base;
    }
  }
  return "";
}

forkpool::test::RunResult promtool_check(const std::string& text) {
  forkpool::test::TempDir dir;
  const auto file = dir / "metrics.txt";
  std::ofstream(file, std::ios::binary) << text;
  return forkpool::test::run_command(
      {"/bin/sh", "-c", "exec promtool check metrics < '" + file.string() + "'"},
      std::chrono::seconds(30));
}

bool have_promtool() {
  return forkpool::test::run_command({"/bin/sh", "-c", "command -v promtool"},
                                     std::chrono::seconds(10))
             .exit_code == 0;
}

}  // namespace

TEST_CASE("status_json renders the documented schema", "[status][json]") {
  const StatusModel m = make_model();
  const json j = status_json(m);

  CHECK(keys(j) == std::set<std::string>{"master", "generation", "pools"});
  CHECK(keys(j["master"]) ==
        std::set<std::string>{"pid", "version", "config", "state", "uptime_s", "upgrades", "last_upgrade"});
  CHECK(j["master"]["pid"] == 4242);
  CHECK(j["master"]["version"] == "0.1.0");
  CHECK(j["master"]["config"] == "/etc/forkpool/forkpool.toml");
  CHECK(j["master"]["state"] == "running");
  CHECK(j["master"]["uptime_s"] == 123.456);
  CHECK(j["master"]["upgrades"] == 0);
  CHECK(j["master"]["last_upgrade"] == 0);

  REQUIRE(j["pools"].size() == 2);
  const json& web = j["pools"][0];
  CHECK(keys(web) == std::set<std::string>{"name", "state", "dispatch", "balance", "generation", "removed", "listeners",
                                           "target", "dynamic", "min_workers", "max_workers", "last_scale",
                                           "live", "ready", "busy", "idle", "queue", "counters", "failed_reason",
                                           "accept_paused", "duration_ms", "queue_wait_ms", "workers", "keepalive"});
  CHECK(web["name"] == "web");
  CHECK(web["accept_paused"].is_null());
  CHECK(web["dispatch"] == "master");
  CHECK(web["balance"] == "least-busy");
  CHECK(web["listeners"] == json::array({"tcp://127.0.0.1:8080", "unix:/run/web.sock"}));
  CHECK(web["target"] == 3);
  CHECK(web["dynamic"] == true);
  CHECK(web["min_workers"] == 1);
  CHECK(web["max_workers"] == 8);
  CHECK(web["last_scale"] == "up from 2 to 3: connections waiting");
  CHECK(web["busy"] == 1);
  CHECK(web["idle"] == 2);
  CHECK(web["queue"] == json{{"length", 2}, {"peak", 17}, {"limit", 1024}});
  CHECK(keys(web["counters"]) ==
        std::set<std::string>{"accepted", "dispatched", "completed", "in_flight", "lost", "closed",
                              "queue_timeouts", "spawned", "crashed", "killed", "recycled",
                              "spawn_failed", "parked", "resumed", "keepalive_timeouts", "keepalive_closed",
                              "parked_closed", "parked_now", "protocol_errors"});
  CHECK(web["counters"]["accepted"] == 1001);
  CHECK(web["counters"]["in_flight"] == 8);
  CHECK(web["counters"]["recycled"] == 4);
  CHECK(keys(web["duration_ms"]) == std::set<std::string>{"count", "p50", "p90", "p99", "max"});
  CHECK(web["duration_ms"]["count"] == 87);
  CHECK(web["duration_ms"]["p50"] == m.pools[0].duration.p50_ms);
  CHECK(web["duration_ms"]["max"] == 5'000'000.0);
  CHECK(web["queue_wait_ms"]["count"] == 959);
  // Most waits were 0 us: the p50 is the first bucket's bound, 100 us.
  CHECK(web["queue_wait_ms"]["p50"] == 0.1);

  REQUIRE(web["workers"].size() == 3);
  const json& w0 = web["workers"][0];
  CHECK(keys(w0) == std::set<std::string>{"worker", "slot", "pid", "state", "role", "generation",
                                          "uptime_s", "handled", "in_flight", "current_ms",
                                          "restarts", "last_exit", "rss_bytes", "cpu_s", "status",
                                          "last_error"});
  CHECK(w0["pid"] == 1001);
  CHECK(w0["slot"] == 10);
  CHECK(w0["state"] == "idle");
  CHECK(w0["last_exit"].is_null());
  CHECK(w0["status"].is_null());
  CHECK(w0["cpu_s"] == 0.25);
  CHECK(web["workers"][1]["current_ms"] == 3.25);
  CHECK(web["workers"][2]["last_exit"] == "exited on signal 9");
  CHECK(web["workers"][2]["status"] == "serving 12 requests/s");
  CHECK(j["pools"][1]["workers"][1]["role"] == "retiring");
  CHECK(j["pools"][1]["counters"]["spawn_failed"] == 3);
  CHECK(j["pools"][1]["workers"][2]["state"] == "failed");
  CHECK(j["pools"][1]["workers"][2]["last_error"] == "execve /srv/app: No such file or directory");
  CHECK(w0["last_error"].is_null());
}

TEST_CASE("status_from_json inverts status_json except for the raw histograms", "[status][json]") {
  const StatusModel m = make_model();
  const json j = status_json(m);
  // Through text, as forkpoolctl receives it, and wrapped as the control reply.
  json reply = json::parse(j.dump());
  reply["ok"] = true;
  const StatusModel back = status_from_json(reply);
  CHECK(status_json(back) == j);
  CHECK(back.master_pid == m.master_pid);
  CHECK(back.uptime_s == m.uptime_s);
  REQUIRE(back.pools.size() == 2);
  CHECK(back.pools[0].listeners == m.pools[0].listeners);
  CHECK(back.pools[0].queue_limit == 1024);
  CHECK(back.pools[0].duration.p99_ms == m.pools[0].duration.p99_ms);
  CHECK(back.pools[1].workers[0].last_exit == "exited with status 78");
  CHECK(back.pools[0].workers[2].status_text == "serving 12 requests/s");
  CHECK(back.pools[0].workers[0].last_exit.empty());
  CHECK(back.pools[1].spawn_failed == 3);
  CHECK(back.pools[1].workers[2].last_error == m.pools[1].workers[2].last_error);
  CHECK(back.pools[0].duration_histogram.count == 0);  // not part of the schema
}

TEST_CASE("status_text writes what nlohmann::json would, byte for byte", "[status][json]") {
  StatusModel m = make_model();
  // Worker fields written by hand in status_text: awkward strings and doubles.
  WorkerStatus& w = m.pools[0].workers[0];
  w.status_text = "quote \" backslash \\ tab \t nl \n cr \r bs \b ff \f ctl \x01\x1f del \x7f";
  w.last_exit = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad \xff \xc3 end";
  w.state = "/slash/ and unicode \u2028";
  w.uptime_s = 3.0;
  w.current_ms = 1e-7;
  w.cpu_s = 1e21;
  m.pools[0].workers[1].uptime_s = std::numeric_limits<double>::quiet_NaN();
  m.pools[0].workers[1].cpu_s = -std::numeric_limits<double>::infinity();
  m.pools[0].workers[2].current_ms = 0.1 + 0.2;
  m.pools[0].workers[2].rss_bytes = std::numeric_limits<std::uint64_t>::max();
  m.pools[1].workers.clear();  // an empty array

  for (const bool ok : {false, true}) {
    const std::string text = status_text(m, ok);
    const json parsed = json::parse(text);
    CHECK(text == parsed.dump(-1, ' ', false, json::error_handler_t::replace));
    CHECK(parsed.contains("ok") == ok);
  }
  const json j = status_json(m);
  CHECK(j["pools"][0]["workers"][0]["status"].get<std::string>().find("ctl \x01\x1f del \x7f") != std::string::npos);
  CHECK(j["pools"][0]["workers"][0]["last_exit"] == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad \xef\xbf\xbd \xef\xbf\xbd end");
  CHECK(j["pools"][0]["workers"][0]["uptime_s"].is_number_float());
  CHECK(j["pools"][0]["workers"][1]["uptime_s"].is_null());
  CHECK(j["pools"][0]["workers"][2]["rss_bytes"] == std::numeric_limits<std::uint64_t>::max());
  CHECK(j["pools"][1]["workers"] == json::array());
}

TEST_CASE("status_from_json tolerates missing keys, nulls and wrong types", "[status][json]") {
  for (const json& j : {json(), json::array({1, 2}), json("x"), json::object(),
                        json{{"master", nullptr}}, json{{"pools", "none"}}}) {
    const StatusModel m = status_from_json(j);
    CHECK(m.master_pid == 0);
    CHECK(m.pools.empty());
  }
  const json partial = json::parse(R"({"master": {"pid": "12", "version": 3, "uptime_s": 2},
      "pools": [{"name": "web", "target": -1, "queue": [], "counters": {"accepted": 5, "lost": -3},
                 "listeners": ["a", 7, "b"], "workers": [{"pid": 99, "last_exit": null}, 5]}, null]})");
  const StatusModel m = status_from_json(partial);
  CHECK(m.master_pid == 0);
  CHECK(m.version.empty());
  CHECK(m.uptime_s == 2.0);
  REQUIRE(m.pools.size() == 2);
  CHECK(m.pools[0].name == "web");
  CHECK(m.pools[0].target == -1);
  CHECK(m.pools[0].accepted == 5);
  CHECK(m.pools[0].lost == 0);  // negative does not fit an unsigned counter
  CHECK(m.pools[0].listeners == std::vector<std::string>{"a", "b"});
  REQUIRE(m.pools[0].workers.size() == 2);
  CHECK(m.pools[0].workers[0].pid == 99);
  CHECK(m.pools[0].workers[0].last_exit.empty());
  CHECK(m.pools[1].name.empty());
}

TEST_CASE("status_json repairs invalid UTF-8 from workers so dump never throws", "[status][json]") {
  StatusModel m = make_model();
  m.pools[0].workers[0].status_text = "ok \xff\xfe then \xe2\x82 and \xe2\x82\xac";
  const json j = status_json(m);
  std::string text;
  REQUIRE_NOTHROW(text = j.dump());
  CHECK(j["pools"][0]["workers"][0]["status"] ==
        "ok \xEF\xBF\xBD\xEF\xBF\xBD then \xEF\xBF\xBD\xEF\xBF\xBD and \xe2\x82\xac");
}

TEST_CASE("prometheus_text passes promtool check metrics without warnings",
          "[status][prometheus]") {
  if (!have_promtool()) {
    skip_test("promtool is not installed (Debian package prometheus)");
  }
  for (const StatusModel& m : {make_model(), StatusModel{}}) {
    const auto r = promtool_check(prometheus_text(m));
    INFO(r.describe());
    CHECK(r.exited);
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.empty());
  }
}

TEST_CASE("prometheus_text has HELP and TYPE for every family and the model's values",
          "[status][prometheus]") {
  const StatusModel m = make_model();
  const Exposition e = parse(prometheus_text(m));

  for (const auto& key : e.order) {
    INFO(key);
    CHECK(key.rfind("forkpool_", 0) == 0);
    const auto family = family_of(key, e);
    CHECK(!family.empty());
    CHECK(e.helps.count(family) == 1);
  }
  for (const auto& [name, type] : e.types) {
    INFO(name);
    if (type == "counter") CHECK(name.ends_with("_total"));
  }
  CHECK(e.types.at("forkpool_connection_duration_seconds") == "histogram");
  CHECK(e.types.at("forkpool_queue_wait_seconds") == "histogram");
  CHECK(e.types.at("forkpool_queue_length") == "gauge");

  const auto at = [&](const std::string& key) {
    INFO(key);
    REQUIRE(e.samples.count(key) == 1);
    return e.samples.at(key);
  };
  const auto& web = m.pools[0];
  CHECK(at(R"(forkpool_build_info{version="0.1.0"})") == "1");
  CHECK(at("forkpool_master_uptime_seconds") == "123.456");
  CHECK(at("forkpool_master_upgrades_total") == "0");
  CHECK(at(R"(forkpool_connections_accepted_total{pool="web"})") == std::to_string(web.accepted));
  CHECK(at(R"(forkpool_connections_dispatched_total{pool="web"})") ==
        std::to_string(web.dispatched));
  CHECK(at(R"(forkpool_connections_completed_total{pool="web"})") == std::to_string(web.completed));
  CHECK(at(R"(forkpool_connections_lost_total{pool="web"})") == std::to_string(web.lost));
  CHECK(at(R"(forkpool_connections_closed_total{pool="web"})") == std::to_string(web.closed));
  CHECK(at(R"(forkpool_queue_timeouts_total{pool="web"})") == std::to_string(web.queue_timeouts));
  CHECK(at(R"(forkpool_workers_spawned_total{pool="web"})") == std::to_string(web.spawned));
  CHECK(at(R"(forkpool_workers_crashed_total{pool="api"})") == "8");
  CHECK(at(R"(forkpool_spawn_failed_total{pool="api"})") == "3");
  CHECK(at(R"(forkpool_spawn_failed_total{pool="web"})") == "0");
  CHECK(at(R"(forkpool_accept_paused{pool="web"})") == "0");
  CHECK(at(R"(forkpool_workers_killed_total{pool="web"})") == std::to_string(web.killed));
  CHECK(at(R"(forkpool_workers_recycled_total{pool="web"})") == std::to_string(web.recycled));
  CHECK(at(R"(forkpool_connections_in_flight{pool="web"})") == "8");
  CHECK(at(R"(forkpool_queue_length{pool="web"})") == "2");
  CHECK(at(R"(forkpool_queue_peak{pool="web"})") == "17");
  CHECK(at(R"(forkpool_queue_limit{pool="web"})") == "1024");
  CHECK(at(R"(forkpool_workers_target{pool="web"})") == "3");
  CHECK(at(R"(forkpool_pool_up{pool="web"})") == "1");
  CHECK(at(R"(forkpool_pool_up{pool="api"})") == "0");
  CHECK(at(R"(forkpool_pool_state{pool="api",state="failed"})") == "1");
  CHECK(at(R"(forkpool_pool_state{pool="api",state="running"})") == "0");
  CHECK(at(R"(forkpool_pool_state{pool="web",state="stopped"})") == "0");
  CHECK(at(R"(forkpool_workers{pool="web",state="idle"})") == "2");
  CHECK(at(R"(forkpool_workers{pool="web",state="busy"})") == "1");
  CHECK(at(R"(forkpool_workers{pool="api",state="exited"})") == "1");
  CHECK(e.samples.count(R"(forkpool_workers{pool="web",state="empty"})") == 0);
  CHECK(at(R"(forkpool_worker_connections_handled_total{pool="web",worker="1"})") == "490");
  CHECK(at(R"(forkpool_worker_in_flight{pool="web",worker="1"})") == "1");
  CHECK(at(R"(forkpool_worker_rss_bytes{pool="web",worker="2"})") == "1000002");
  CHECK(at(R"(forkpool_worker_cpu_seconds_total{pool="web",worker="0"})") == "0.25");
  CHECK(at(R"(forkpool_worker_restarts_total{pool="api",worker="1"})") == "1");
  // Pids only in the info family: a restart starts no new series of a counter.
  for (const auto& key : e.order) {
    if (key.rfind("forkpool_worker_info", 0) == 0) continue;
    INFO(key);
    CHECK(key.find("pid=") == std::string::npos);
  }
  CHECK(at(R"(forkpool_worker_info{pool="web",worker="1",pid="1002",role="serving",generation="2"})") == "1");
  CHECK(at(R"(forkpool_worker_info{pool="api",worker="0",pid="2001",role="replacement",generation="2"})") == "1");
  CHECK(e.samples.count(R"(forkpool_worker_info{pool="api",worker="1",pid="0",role="retiring",generation="2"})") == 0);
}

TEST_CASE("prometheus histograms are cumulative, in seconds, and end in +Inf",
          "[status][prometheus]") {
  const StatusModel m = make_model();
  const Exposition e = parse(prometheus_text(m));
  for (const auto& pool : m.pools) {
    for (const auto& [name, h] :
         {std::pair{std::string("forkpool_connection_duration_seconds"), pool.duration_histogram},
          std::pair{std::string("forkpool_queue_wait_seconds"), pool.queue_wait_histogram}}) {
      INFO(pool.name << " " << name);
      const std::string prefix = name + "_bucket{pool=\"" + pool.name + "\",le=\"";
      std::vector<std::pair<std::string, std::uint64_t>> buckets;
      for (const auto& key : e.order) {
        if (key.rfind(prefix, 0) == 0) {
          buckets.emplace_back(key.substr(prefix.size(), key.size() - prefix.size() - 2),
                               std::stoull(e.samples.at(key)));
        }
      }
      REQUIRE(buckets.size() == shm::kHistogramBuckets);
      std::uint64_t total = 0;
      for (std::size_t k = 0; k < buckets.size(); ++k) {
        total += h.buckets[k];
        CHECK(buckets[k].second == total);
        if (k + 1 < buckets.size()) {
          CHECK(std::stod(buckets[k].first) * 1e6 ==
                Approx(static_cast<double>(shm::histogram_bucket_max(k))));
          if (k > 0) CHECK(std::stod(buckets[k].first) > std::stod(buckets[k - 1].first));
        }
      }
      CHECK(buckets.front().first == "0.0001");
      CHECK(buckets[1].first == "0.00025");
      CHECK(buckets[3].first == "0.001");
      CHECK(buckets[12].first == "1");
      CHECK(buckets[16].first == "25");
      CHECK(buckets[17].first == "60");
      CHECK(buckets.back().first == "+Inf");
      CHECK(total == h.count);
      CHECK(e.samples.at(name + "_count{pool=\"" + pool.name + "\"}") == std::to_string(total));
      CHECK(std::stod(e.samples.at(name + "_sum{pool=\"" + pool.name + "\"}")) ==
            Approx(static_cast<double>(h.sum_us) / 1e6));
    }
  }
  CHECK(e.samples.at(R"(forkpool_connection_duration_seconds_count{pool="web"})") == "87");
  // 0, 1, 2 and 3 us (11 samples) in the first bucket, 500 us and 1.5 ms in theirs,
  // 250 ms below 60 s, 5000 s only in +Inf.
  CHECK(e.samples.at(R"(forkpool_connection_duration_seconds_bucket{pool="web",le="0.0001"})") == "11");
  CHECK(e.samples.at(R"(forkpool_connection_duration_seconds_bucket{pool="web",le="0.0005"})") == "51");
  CHECK(e.samples.at(R"(forkpool_connection_duration_seconds_bucket{pool="web",le="0.001"})") == "51");
  CHECK(e.samples.at(R"(forkpool_connection_duration_seconds_bucket{pool="web",le="0.0025"})") == "81");
  CHECK(e.samples.at(R"(forkpool_connection_duration_seconds_bucket{pool="web",le="60"})") == "86");
  CHECK(e.samples.at(R"(forkpool_connection_duration_seconds_bucket{pool="web",le="+Inf"})") == "87");
}

TEST_CASE("prometheus label values are escaped", "[status][prometheus]") {
  StatusModel m = make_model();
  m.pools[1].name = "a\"b\\c\nd";
  m.version = "0.1.0-\"x\"";
  const std::string text = prometheus_text(m);
  CHECK(text.find(R"(forkpool_pool_up{pool="a\"b\\c\nd"} 0)") != std::string::npos);
  CHECK(text.find(R"(forkpool_build_info{version="0.1.0-\"x\""} 1)") != std::string::npos);
  if (have_promtool()) {
    const auto r = promtool_check(text);
    INFO(r.describe());
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
  }
}

TEST_CASE("prometheus has one series per slot while a slot has two processes", "[status][prometheus]") {
  StatusModel m = make_model();
  auto old = make_worker(1, 1999, "stopping", 77);
  old.role = "retiring";
  old.generation = 1;
  m.pools[0].workers.insert(m.pools[0].workers.begin() + 1, old);  // listed before the serving one
  const Exposition e = parse(prometheus_text(m));
  CHECK(e.samples.at(R"(forkpool_worker_connections_handled_total{pool="web",worker="1"})") == "490");
  std::size_t handled = 0;
  for (const auto& key : e.order)
    if (key.rfind(R"(forkpool_worker_connections_handled_total{pool="web",worker="1")", 0) == 0) ++handled;
  CHECK(handled == 1);
  CHECK(e.samples.at(R"(forkpool_worker_info{pool="web",worker="1",pid="1999",role="retiring",generation="1"})") == "1");
  CHECK(e.samples.at(R"(forkpool_worker_info{pool="web",worker="1",pid="1002",role="serving",generation="2"})") == "1");
}
