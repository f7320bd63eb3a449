// SPDX-License-Identifier: Apache-2.0
// What a reload changes: every key of the printed schema has a class, each key changed alone
// is reported alone with that class, and pools are matched by name.

#include <algorithm>
#include <fstream>
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/diff.hpp"
#include "config/load.hpp"
#include "config/print.hpp"
#include "support/temp_dir.hpp"

namespace cfg = forkpool::config;
using cfg::PoolChange;
using forkpool::test::TempDir;
using Keys = std::vector<std::string>;

namespace Catch {
template <>
struct StringMaker<cfg::PoolChange> {
  static std::string convert(cfg::PoolChange c) { return std::string(cfg::to_string(c)); }
};
}  // namespace Catch

namespace {

const std::filesystem::path kFile = "/some/dir/forkpool.toml";

// Loads `text`, turning a ConfigError into a test failure that shows every diagnostic.
cfg::Config load(const std::string& text, const std::filesystem::path& file = kFile) {
  try {
    return cfg::load_string(text, file);
  } catch (const cfg::ConfigError& e) {
    FAIL_CHECK("unexpected config error:\n" << e.what() << "\nin:\n" << text);
    throw;
  }
}

// A [pools.NAME] table with `lines`, plus a command unless `lines` set one.
std::string pool(const std::string& name, const std::string& lines = "") {
  std::string text = "[pools." + name + "]\n";
  if (lines.find("command =") == std::string::npos) text += "command = [\"/bin/true\"]\n";
  return text + lines;
}

std::string dynamic(int min, int max, int spare) {
  return "min_workers = " + std::to_string(min) + "\nmax_workers = " + std::to_string(max) +
         "\nspare_workers = " + std::to_string(spare) + "\n";
}

// One key written two ways; the rest of the table is the same before and after.
struct KeyChange {
  std::string key;
  std::string before;
  std::string after;
};

// A pool key also says how the running pool must take the change, written down apart from
// pool_key_rules() so that a key classed by mistake there fails here.
struct PoolKeyChange {
  std::string key;
  PoolChange expected;
  std::string before;
  std::string after;
};

template <typename Change>
const Change* find_change(const std::vector<Change>& table, std::string_view key) {
  auto it = std::ranges::find(table, key, &Change::key);
  return it == table.end() ? nullptr : &*it;
}

constexpr PoolChange kInPlace = PoolChange::InPlace;
constexpr PoolChange kReplace = PoolChange::Replace;

// Every key of a table must have an entry here; the tests below fail for a rule without one.
const std::vector<PoolKeyChange>& pool_key_changes() {
  static const std::vector<PoolKeyChange> changes{
      {"command", kReplace, "command = [\"/bin/true\"]\n",
       "command = [\"/bin/true\", \"--fast\"]\n"},
      {"dispatch", kReplace, "dispatch = \"master\"\n", "dispatch = \"shared\"\n"},
      {"listen", kReplace, "listen = [\"tcp://127.0.0.1:8080\"]\n",
       "listen = [\"tcp://127.0.0.1:8081\"]\n"},
      {"workers", kInPlace, "workers = 2\n", "workers = 3\n"},
      {"min_workers", kInPlace, dynamic(1, 8, 1), dynamic(2, 8, 1)},
      {"max_workers", kInPlace, dynamic(1, 8, 1), dynamic(1, 9, 1)},
      {"spare_workers", kInPlace, dynamic(1, 8, 1), dynamic(1, 8, 2)},
      {"idle_timeout", kInPlace, dynamic(1, 8, 1) + "idle_timeout = \"10s\"\n",
       dynamic(1, 8, 1) + "idle_timeout = \"1m\"\n"},
      {"max_inflight", kInPlace, "max_inflight = 1\n", "max_inflight = 4\n"},
      {"balance", kInPlace, "balance = \"least-busy\"\n", "balance = \"round-robin\"\n"},
      {"queue_limit", kInPlace, "queue_limit = 1024\n", "queue_limit = 10\n"},
      {"queue_timeout", kInPlace, "queue_timeout = \"10s\"\n", "queue_timeout = \"2s\"\n"},
      {"backlog", kInPlace, "backlog = 1024\n", "backlog = 128\n"},
      {"ready", kReplace, "ready = \"exec\"\n", "ready = \"notify\"\n"},
      {"ready_timeout", kInPlace, "ready_timeout = \"30s\"\n", "ready_timeout = \"5s\"\n"},
      {"watchdog", kReplace, "watchdog = \"0\"\n", "watchdog = \"10s\"\n"},
      {"request_timeout", kInPlace, "request_timeout = \"0\"\n", "request_timeout = \"1m\"\n"},
      {"timeout_signal", kInPlace, "timeout_signal = \"KILL\"\n", "timeout_signal = \"TERM\"\n"},
      {"max_requests", kInPlace, "max_requests = 0\n", "max_requests = 1000\n"},
      {"max_requests_jitter", kInPlace, "max_requests_jitter = 0\n", "max_requests_jitter = 50\n"},
      {"max_memory", kInPlace, "max_memory = \"0\"\n", "max_memory = \"512MiB\"\n"},
      {"restart_delay", kInPlace, "restart_delay = \"100ms\"\n", "restart_delay = \"200ms\"\n"},
      {"restart_delay_max", kInPlace, "restart_delay_max = \"30s\"\n",
       "restart_delay_max = \"1m\"\n"},
      {"flap_restarts", kInPlace, "flap_restarts = 10\n", "flap_restarts = 3\n"},
      {"flap_window", kInPlace, "flap_window = \"60s\"\n", "flap_window = \"5m\"\n"},
      {"graceful_timeout", kInPlace, "graceful_timeout = \"30s\"\n",
       "graceful_timeout = \"15s\"\n"},
      {"stop_signal", kInPlace, "stop_signal = \"TERM\"\n", "stop_signal = \"INT\"\n"},
      {"keepalive", kReplace, "keepalive = \"worker\"\n", "keepalive = \"master\"\n"},
      {"keepalive_timeout", kInPlace, "keepalive_timeout = \"5s\"\n", "keepalive_timeout = \"2s\"\n"},
      {"max_parked", kInPlace, "max_parked = 100\n", "max_parked = 200\n"},
      {"isolate", kReplace, "isolate = \"none\"\n", "isolate = \"pid\"\n"},
      {"user", kReplace, "user = \"\"\n", "user = \"root\"\n"},
      {"group", kReplace, "group = \"\"\n", "group = \"root\"\n"},
      {"cwd", kReplace, "cwd = \"\"\n", "cwd = \"/\"\n"},
      {"umask", kReplace, "umask = \"\"\n", "umask = \"022\"\n"},
      {"env", kReplace, "env = { A = \"1\" }\n", "env = { A = \"2\" }\n"},
      {"clear_env", kReplace, "clear_env = false\n", "clear_env = true\n"},
      {"rlimits", kReplace, "rlimits = { nofile = 1024 }\n", "rlimits = { nofile = 4096 }\n"},
      {"stdout", kReplace, "stdout = \"inherit\"\n", "stdout = \"null\"\n"},
      {"stderr", kReplace, "stderr = \"inherit\"\n", "stderr = \"log\"\n"},
  };
  return changes;
}

// Needs a real folder: log_file's folder must exist.
std::vector<KeyChange> supervisor_key_changes() {
  return {
      {"control_socket", "control_socket = \"a.sock\"\n", "control_socket = \"b.sock\"\n"},
      {"control_mode", "control_mode = \"0600\"\n", "control_mode = \"0640\"\n"},
      {"control_group", "control_mode = \"0600\"\ncontrol_group = \"\"\n",
       "control_mode = \"0600\"\ncontrol_group = \"root\"\n"},
      {"log_level", "log_level = \"info\"\n", "log_level = \"debug\"\n"},
      {"log_format", "log_format = \"text\"\n", "log_format = \"json\"\n"},
      {"log_file", "log_file = \"\"\n", "log_file = \"forkpool.log\"\n"},
      {"access_log", "access_log = \"\"\n", "access_log = \"access.log\"\n"},
      {"access_log_format", "access_log_format = \"text\"\n", "access_log_format = \"json\"\n"},
      {"shutdown_timeout", "shutdown_timeout = \"30s\"\n", "shutdown_timeout = \"5s\"\n"},
      {"metrics_listen", "metrics_listen = \"\"\n", "metrics_listen = \"127.0.0.1:9464\"\n"},
  };
}

// The keys to_toml printed under each table header, in order.
std::map<std::string, Keys> printed_keys(const std::string& toml) {
  std::map<std::string, Keys> tables;
  std::istringstream in(toml);
  std::string line;
  std::string table;
  while (std::getline(in, line)) {
    if (line.starts_with("["))
      table = line;
    else if (auto eq = line.find(" = "); eq != std::string::npos)
      tables[table].push_back(line.substr(0, eq));
  }
  return tables;
}

std::set<std::string> rule_keys() {
  std::set<std::string> keys;
  for (const cfg::KeyRule& rule : cfg::pool_key_rules()) keys.emplace(rule.key);
  return keys;
}

}  // namespace

TEST_CASE("config diff: each pool key changed alone is reported alone, with its rule's class",
          "[config][diff]") {
  const auto& table = pool_key_changes();
  for (const cfg::KeyRule& rule : cfg::pool_key_rules()) {
    const std::string key(rule.key);
    INFO("pool key: " << key);
    const PoolKeyChange* change = find_change(table, key);
    if (change == nullptr) {
      FAIL_CHECK("pool key `" << key << "` has no entry in pool_key_changes()");
      continue;
    }
    const auto before = load(pool("web", change->before) + pool("other"));
    const auto after = load(pool("web", change->after) + pool("other"));
    const PoolChange ruled =
        rule.klass == cfg::KeyClass::Replace ? PoolChange::Replace : PoolChange::InPlace;
    CHECK(ruled == change->expected);

    for (const auto& d : {cfg::diff(before, after), cfg::diff(after, before)}) {
      REQUIRE(d.pools.size() == 2);
      CHECK(d.pools[0].name == "web");
      CHECK(d.pools[0].change == change->expected);
      CHECK(d.pools[0].keys == Keys{key});
      CHECK(d.pools[1].name == "other");
      CHECK(d.pools[1].change == PoolChange::Unchanged);
      CHECK(d.supervisor_keys.empty());
      CHECK_FALSE(d.empty());
    }
    CHECK(cfg::diff(before, before).empty());
  }
  // An entry for a key that is not a rule would test nothing.
  const auto rules = rule_keys();
  for (const PoolKeyChange& change : table) CHECK(rules.count(change.key) == 1);
}

TEST_CASE("config diff: every printed key has a class, and every rule names a printed key",
          "[config][diff]") {
  // A fixed and a dynamic pool together print every sizing key.
  const auto config = load(pool("fixed", "workers = 2\n") + pool("dynamic", dynamic(1, 4, 1)));
  auto tables = printed_keys(cfg::to_toml(config));
  const Keys& fixed = tables["[pools.fixed]"];
  const Keys& dyn = tables["[pools.dynamic]"];
  REQUIRE_FALSE(fixed.empty());
  REQUIRE_FALSE(dyn.empty());

  const auto rules = rule_keys();
  CHECK(rules.size() == cfg::pool_key_rules().size());  // no key classed twice
  std::set<std::string> printed;
  for (const Keys* keys : {&fixed, &dyn}) {
    for (const std::string& key : *keys) {
      INFO("printed pool key: " << key);
      CHECK(rules.count(key) == 1);
      printed.insert(key);
    }
    // Rules are in schema order: the printed order of the keys a pool has.
    Keys ordered;
    for (const cfg::KeyRule& rule : cfg::pool_key_rules())
      if (std::ranges::find(*keys, rule.key) != keys->end()) ordered.emplace_back(rule.key);
    CHECK(ordered == *keys);
  }
  for (const std::string& key : rules) {
    INFO("rule key: " << key);
    CHECK(printed.count(key) == 1);
  }

  Keys supervisor(cfg::supervisor_keys().begin(), cfg::supervisor_keys().end());
  CHECK(tables["[supervisor]"] == supervisor);
}

TEST_CASE("config diff: each supervisor key changed alone is reported", "[config][diff]") {
  TempDir dir;
  const auto table = supervisor_key_changes();
  for (std::string_view name : cfg::supervisor_keys()) {
    const std::string key(name);
    INFO("supervisor key: " << key);
    const KeyChange* change = find_change(table, key);
    if (change == nullptr) {
      FAIL_CHECK("supervisor key `" << key << "` has no entry in supervisor_key_changes()");
      continue;
    }
    const auto before =
        load("[supervisor]\n" + change->before + pool("web"), dir / "forkpool.toml");
    const auto after = load("[supervisor]\n" + change->after + pool("web"), dir / "forkpool.toml");
    const auto d = cfg::diff(before, after);
    CHECK(d.supervisor_keys == Keys{key});
    REQUIRE(d.pools.size() == 1);
    CHECK(d.pools[0].change == PoolChange::Unchanged);
    CHECK_FALSE(d.empty());
    CHECK(d.summary() ==
          "pools: 1 unchanged, 0 changed in place, 0 replaced, 0 added, 0 removed; supervisor: " +
              key);
  }
  for (const KeyChange& change : table)
    CHECK(std::ranges::find(cfg::supervisor_keys(), change.key) != cfg::supervisor_keys().end());
}

TEST_CASE("config diff: identical configs give an empty diff", "[config][diff]") {
  const std::string text = pool("web", "workers = 2\nlisten = [\"tcp://127.0.0.1:8080\"]\n") +
                           pool("api", dynamic(1, 4, 1) + "env = { A = \"1\" }\n");
  const auto d = cfg::diff(load(text), load(text));
  CHECK(d.empty());
  REQUIRE(d.pools.size() == 2);
  CHECK(d.pools[0].name == "web");
  CHECK(d.pools[1].name == "api");
  CHECK(d.count(PoolChange::Unchanged) == 2);
  CHECK(d.summary() ==
        "pools: 2 unchanged, 0 changed in place, 0 replaced, 0 added, 0 removed; supervisor: "
        "unchanged");
}

TEST_CASE("config diff: values that are spelt differently but mean the same are unchanged",
          "[config][diff]") {
  const auto before =
      load(pool("web",
                "listen = [\"tcp://localhost:8080\"]\nflap_window = \"60s\"\n"
                "stop_signal = \"SIGTERM\"\nmax_memory = \"1GiB\"\n"
                "rlimits = { as = \"1KiB\", nofile = 64 }\nenv = { B = \"2\", A = \"1\" }\n"));
  const auto after =
      load(pool("web",
                "listen = [\"tcp://127.0.0.1:8080\"]\nflap_window = \"1m\"\n"
                "stop_signal = \"15\"\nmax_memory = \"1024MiB\"\n"
                "rlimits = { nofile = 64, as = 1024 }\nenv = { A = \"1\", B = \"2\" }\n"));
  CHECK(cfg::diff(before, after).empty());
}

TEST_CASE("config diff: pools are matched by name, so reordering them changes nothing",
          "[config][diff]") {
  const auto before = load(pool("a") + pool("b") + pool("c"));
  const auto after = load(pool("c") + pool("a") + pool("b"));
  const auto d = cfg::diff(before, after);
  CHECK(d.empty());
  REQUIRE(d.pools.size() == 3);
  CHECK(d.pools[0].name == "a");  // the old order
  CHECK(d.pools[1].name == "b");
  CHECK(d.pools[2].name == "c");
}

TEST_CASE("config diff: added and removed pools", "[config][diff]") {
  const auto before = load(pool("a") + pool("b") + pool("c"));
  const auto after = load(pool("e") + pool("c") + pool("d") + pool("a", "workers = 9\n"));
  const auto d = cfg::diff(before, after);
  REQUIRE(d.pools.size() == 5);
  // Old pools in old order, then new pools in new order.
  CHECK(d.pools[0].name == "a");
  CHECK(d.pools[0].change == PoolChange::InPlace);
  CHECK(d.pools[0].keys == Keys{"workers"});
  CHECK(d.pools[1].name == "b");
  CHECK(d.pools[1].change == PoolChange::Removed);
  CHECK(d.pools[1].keys.empty());
  CHECK(d.pools[2].name == "c");
  CHECK(d.pools[2].change == PoolChange::Unchanged);
  CHECK(d.pools[3].name == "e");
  CHECK(d.pools[3].change == PoolChange::Added);
  CHECK(d.pools[3].keys.empty());
  CHECK(d.pools[4].name == "d");
  CHECK(d.pools[4].change == PoolChange::Added);
  CHECK(d.count(PoolChange::Unchanged) == 1);
  CHECK(d.count(PoolChange::InPlace) == 1);
  CHECK(d.count(PoolChange::Replace) == 0);
  CHECK(d.count(PoolChange::Added) == 2);
  CHECK(d.count(PoolChange::Removed) == 1);
  CHECK_FALSE(d.empty());
}

TEST_CASE("config diff: fixed to dynamic is a change of the sizing keys, in place",
          "[config][diff]") {
  const auto fixed = load(pool("web", "workers = 2\n"));
  const auto dyn = load(pool("web", dynamic(2, 8, 1)));
  const Keys sizing{"workers", "min_workers", "max_workers", "spare_workers", "idle_timeout"};
  for (const auto& d : {cfg::diff(fixed, dyn), cfg::diff(dyn, fixed)}) {
    REQUIRE(d.pools.size() == 1);
    CHECK(d.pools[0].change == PoolChange::InPlace);
    CHECK(d.pools[0].keys == sizing);
  }
  // A dynamic pool's workers count mirrors min_workers and is not a key of its own.
  const auto d = cfg::diff(dyn, load(pool("web", dynamic(3, 8, 1))));
  CHECK(d.pools.at(0).keys == Keys{"min_workers"});
}

TEST_CASE(
    "config diff: several keys come out in schema order, and one Replace key replaces the pool",
    "[config][diff]") {
  const auto before =
      load(pool("web", "stderr = \"null\"\nworkers = 2\nbalance = \"least-busy\"\n"));
  const auto after =
      load(pool("web", "stderr = \"log\"\nworkers = 3\nbalance = \"round-robin\"\n"));
  const auto d = cfg::diff(before, after);
  REQUIRE(d.pools.size() == 1);
  CHECK(d.pools[0].change == PoolChange::Replace);
  CHECK(d.pools[0].keys == Keys{"workers", "balance", "stderr"});
}

TEST_CASE("config diff: listen is compared as the ordered list of addresses", "[config][diff]") {
  const auto two = load(pool("web", "listen = [\"tcp://127.0.0.1:8080\", \"unix:/tmp/w.sock\"]\n"));
  const auto swapped =
      load(pool("web", "listen = [\"unix:/tmp/w.sock\", \"tcp://127.0.0.1:8080\"]\n"));
  const auto one = load(pool("web", "listen = [\"tcp://127.0.0.1:8080\"]\n"));
  for (const auto* other : {&swapped, &one}) {
    const auto d = cfg::diff(two, *other);
    CHECK(d.pools.at(0).change == PoolChange::Replace);
    CHECK(d.pools.at(0).keys == Keys{"listen"});
  }
}

TEST_CASE("config diff: summary of a mixed diff", "[config][diff]") {
  const auto before = load("[supervisor]\nlog_level = \"info\"\n" + pool("static") +
                           pool("web", "workers = 2\n") + pool("api", "env = { A = \"1\" }\n"));
  const auto after =
      load("[supervisor]\nlog_level = \"debug\"\n" + pool("static") + pool("web", "workers = 3\n") +
           pool("api", "env = { A = \"2\" }\n") + pool("jobs"));
  CHECK(cfg::diff(before, after).summary() ==
        "pools: 1 unchanged, 1 changed in place (web: workers), 1 replaced (api: env), 1 added "
        "(jobs), "
        "0 removed; supervisor: log_level");

  // Several pools in one group, several keys in one pool.
  const auto a = load(pool("a", "workers = 2\nbalance = \"least-busy\"\n") + pool("b") + pool("c") +
                      "[supervisor]\nlog_level = \"info\"\nlog_format = \"text\"\n");
  const auto b =
      load(pool("a", "workers = 3\nbalance = \"round-robin\"\n") + pool("b", "backlog = 1\n") +
           "[supervisor]\nlog_level = \"warn\"\nlog_format = \"json\"\n");
  CHECK(cfg::diff(a, b).summary() ==
        "pools: 0 unchanged, 2 changed in place (a: workers, balance; b: backlog), 0 replaced, "
        "0 added, 1 removed (c); supervisor: log_level, log_format");
}

TEST_CASE("config diff: change names", "[config][diff]") {
  CHECK(cfg::to_string(PoolChange::Unchanged) == "unchanged");
  CHECK(cfg::to_string(PoolChange::InPlace) == "in-place");
  CHECK(cfg::to_string(PoolChange::Replace) == "replace");
  CHECK(cfg::to_string(PoolChange::Added) == "added");
  CHECK(cfg::to_string(PoolChange::Removed) == "removed");
}

namespace {

// The "keys" cell of the row of docs/configuration.md's reload table that starts with `row`.
std::set<std::string> documented_keys(const std::string& row) {
  std::ifstream in(std::string(FORKPOOL_SOURCE_DIR) + "/docs/configuration.md");
  std::string line;
  bool in_section = false;
  while (std::getline(in, line)) {
    if (line.starts_with("## ")) in_section = line.starts_with("## On reload");
    if (!in_section || !line.starts_with("| " + row)) continue;
    const std::string cell = line.substr(line.rfind('|', line.size() - 2));
    std::set<std::string> keys;
    for (std::size_t at = cell.find('`'); at != std::string::npos; at = cell.find('`', at + 1)) {
      const std::size_t end = cell.find('`', at + 1);
      keys.insert(cell.substr(at + 1, end - at - 1));
      at = end;
    }
    return keys;
  }
  return {};
}

}  // namespace

TEST_CASE("docs/configuration.md classes every key on reload as the diff does", "[diff][docs]") {
  std::set<std::string> in_place, replace;
  for (const auto& rule : cfg::pool_key_rules())
    (rule.klass == cfg::KeyClass::InPlace ? in_place : replace).insert(std::string(rule.key));
  CHECK(documented_keys("what the master does") == in_place);
  CHECK(documented_keys("what a worker is started with") == replace);
  std::set<std::string> supervisor;
  for (const auto key : cfg::supervisor_keys()) supervisor.insert(std::string(key));
  CHECK(documented_keys("`[supervisor]`") == supervisor);
}
