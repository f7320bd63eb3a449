// SPDX-License-Identifier: Apache-2.0
// Bad configs: each must produce a diagnostic at the exact line and column, naming the
// dotted key and saying what was expected. Positions point at the offending value, or at
// the key itself for unknown keys and bad names.

#include <catch2/catch.hpp>

#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "config/diff.hpp"
#include "config/load.hpp"
#include "support/temp_dir.hpp"

namespace cfg = forkpool::config;
using forkpool::test::TempDir;

namespace {

const std::string kFile = "/some/dir/forkpool.toml";
// Lines 1 and 2 of most cases; the line under test is line 3.
const std::string kPool = "[pools.web]\ncommand = [\"/bin/true\"]\n";

struct BadConfig {
  const char* name;
  std::string toml;
  std::uint32_t line;
  std::uint32_t column;
  std::string key;
  std::string message;  // a substring of the diagnostic's message
};

std::vector<cfg::Diagnostic> diagnostics_of(const std::string& text, const std::string& file = kFile) {
  try {
    cfg::load_string(text, file);
  } catch (const cfg::ConfigError& e) {
    return e.diagnostics();
  }
  return {};
}

std::string dump(const std::vector<cfg::Diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) out += d.to_string() + "\n";
  return out.empty() ? "(no diagnostics: the config was accepted)" : out;
}

void check_single(const BadConfig& c) {
  const auto ds = diagnostics_of(c.toml);
  INFO("case: " << c.name << "\n--- toml ---\n" << c.toml << "\n--- diagnostics ---\n" << dump(ds));
  REQUIRE(ds.size() == 1);
  const auto& d = ds.front();
  CHECK(d.file == kFile);
  CHECK(d.line == c.line);
  CHECK(d.column == c.column);
  CHECK(d.key == c.key);
  CHECK_THAT(d.message, Catch::Contains(c.message));
  const std::string where = kFile + ":" + std::to_string(c.line) + ":" + std::to_string(c.column) + ": ";
  CHECK_THAT(d.to_string(), Catch::StartsWith(where + (c.key.empty() ? "" : c.key + ": ")));
}

const std::vector<BadConfig>& pool_cases() {
  static const std::vector<BadConfig> cases{
      {"unknown pool key with suggestion", kPool + "max_infligt = 2\n", 3, 1, "pools.web.max_infligt",
       "unknown key; did you mean `max_inflight`?"},
      {"transposed pool key", kPool + "wrokers = 2\n", 3, 1, "pools.web.wrokers", "did you mean `workers`?"},
      {"unknown pool key without a close match", kPool + "frobnicate_everything = 1\n", 3, 1,
       "pools.web.frobnicate_everything", "unknown key"},
      {"supervisor key in a pool", kPool + "log_level = \"debug\"\n", 3, 1, "pools.web.log_level",
       "unknown key here; it belongs in the [supervisor] table"},
      {"include in a pool", kPool + "include = [\"conf.d/*.toml\"]\n", 3, 1, "pools.web.include",
       "unknown key here; it belongs in the [supervisor] table"},
      {"workers as a string", kPool + "workers = \"4\"\n", 3, 11, "pools.web.workers",
       "expected an integer, got a string"},
      {"workers as a float", kPool + "workers = 1.5\n", 3, 11, "pools.web.workers", "expected an integer, got a float"},
      {"workers zero", kPool + "workers = 0\n", 3, 11, "pools.web.workers", "expected an integer from 1 to 4096, got 0"},
      {"workers too many", kPool + "workers = 4097\n", 3, 11, "pools.web.workers", "from 1 to 4096, got 4097"},
      {"max_inflight out of range", kPool + "max_inflight = 70000\n", 3, 16, "pools.web.max_inflight",
       "from 1 to 65536, got 70000"},
      {"backlog zero", kPool + "backlog = 0\n", 3, 11, "pools.web.backlog", "from 1 to 65535"},
      {"queue_limit negative", kPool + "queue_limit = -1\n", 3, 15, "pools.web.queue_limit", "from 0 to 1000000"},
      {"flap_restarts zero", kPool + "flap_restarts = 0\n", 3, 17, "pools.web.flap_restarts", "from 1 to"},
      // Nothing would slow down or stop a crash loop: the master would fork ~2000 times a second.
      {"no restart delay and no flap window", kPool + "restart_delay = \"0\"\nflap_window = \"0\"\n", 3, 17,
       "pools.web.restart_delay", "\"0\" together with flap_window = \"0\" would restart a crashing worker in a busy loop"},
      {"no flap window and no restart delay, in the other order",
       kPool + "flap_window = \"0\"\nrestart_delay = \"0ms\"\n", 4, 17, "pools.web.restart_delay", "busy loop"},
      {"max_requests negative", kPool + "max_requests = -1\n", 3, 16, "pools.web.max_requests", "from 0 to"},
      {"dispatch misspelt", kPool + "dispatch = \"mastr\"\n", 3, 12, "pools.web.dispatch",
       "expected one of \"master\", \"shared\", got \"mastr\"; did you mean \"master\"?"},
      {"balance misspelt", kPool + "balance = \"least_busy\"\n", 3, 11, "pools.web.balance",
       "did you mean \"least-busy\"?"},
      {"ready misspelt", kPool + "ready = \"notfy\"\n", 3, 9, "pools.web.ready", "did you mean \"notify\"?"},
      {"keepalive master in shared dispatch", kPool + "dispatch = \"shared\"\nkeepalive = \"master\"\n", 4, 13,
       "pools.web.keepalive", "needs dispatch = \"master\""},
      {"request_timeout in shared dispatch", kPool + "dispatch = \"shared\"\nrequest_timeout = \"30s\"\n", 4, 19,
       "pools.web.request_timeout", "needs dispatch = \"master\" (in shared dispatch the master never holds a connection"},
      {"max_parked zero", kPool + "max_parked = 0\n", 3, 14, "pools.web.max_parked", "from 1 to"},
      {"isolate unknown", kPool + "isolate = \"cgroup\"\n", 3, 11, "pools.web.isolate",
       "expected one of \"none\", \"pid\", got \"cgroup\""},
      {"dispatch not a string", kPool + "dispatch = 1\n", 3, 12, "pools.web.dispatch", "expected a string, got an integer"},
      {"workers with min_workers", kPool + "workers = 2\nmin_workers = 1\n", 4, 15, "pools.web.min_workers",
       "cannot be combined with `workers`"},
      {"idle_timeout on a fixed pool", kPool + "idle_timeout = \"5s\"\n", 3, 16, "pools.web.idle_timeout",
       "applies to a dynamic pool only"},
      {"min_workers without max_workers", kPool + "min_workers = 1\n", 3, 15, "pools.web.min_workers",
       "a dynamic pool also needs `max_workers`"},
      {"spare_workers without max_workers", kPool + "spare_workers = 1\n", 3, 17, "pools.web.spare_workers",
       "a dynamic pool also needs `max_workers`"},
      {"min_workers above max_workers", kPool + "min_workers = 5\nmax_workers = 3\n", 3, 15,
       "pools.web.min_workers", "must not exceed max_workers (3)"},
      {"spare_workers above max_workers", kPool + "max_workers = 2\nspare_workers = 3\n", 4, 17,
       "pools.web.spare_workers", "must not exceed max_workers (2)"},
      {"restart_delay_max below restart_delay", kPool + "restart_delay = \"5s\"\nrestart_delay_max = \"1s\"\n", 4,
       21, "pools.web.restart_delay_max", "must be at least restart_delay (5s)"},
      {"duration without unit", kPool + "queue_timeout = \"10\"\n", 3, 17, "pools.web.queue_timeout",
       "got \"10\""},
      {"duration finer than a millisecond", kPool + "ready_timeout = \"1.5ms\"\n", 3, 17,
       "pools.web.ready_timeout", "whole milliseconds"},
      {"negative duration", kPool + "graceful_timeout = \"-1s\"\n", 3, 20, "pools.web.graceful_timeout",
       "got \"-1s\""},
      {"duration as a bare integer", kPool + "watchdog = 5\n", 3, 12, "pools.web.watchdog",
       "expected a duration string with a unit such as \"30s\", got an integer"},
      {"duration overflow", kPool + "flap_window = \"9223372036854775808ms\"\n", 3, 15, "pools.web.flap_window",
       "64 bits"},
      {"bad size unit", kPool + "max_memory = \"10XB\"\n", 3, 14, "pools.web.max_memory", "got \"10XB\""},
      {"size as a bare integer", kPool + "max_memory = 1024\n", 3, 14, "pools.web.max_memory",
       "expected a size string with a unit"},
      {"listen host name", kPool + "listen = [\"tcp://example.com:80\"]\n", 3, 11, "pools.web.listen[0]",
       "names are not resolved"},
      {"listen bad port in second entry", kPool + "listen = [\"tcp://127.0.0.1:8080\", \"tcp://127.0.0.1:70000\"]\n",
       3, 35, "pools.web.listen[1]", "a port from 0 to 65535"},
      {"listen unknown scheme", kPool + "listen = [\"udp://127.0.0.1:53\"]\n", 3, 11, "pools.web.listen[0]",
       "unix:PATH"},
      {"listen unix path too long", kPool + "listen = [\"unix:/" + std::string(120, 'a') + "\"]\n", 3, 11,
       "pools.web.listen[0]", "at most 107 bytes"},
      {"listen not an array", kPool + "listen = \"tcp://127.0.0.1:1\"\n", 3, 10, "pools.web.listen",
       "expected an array of addresses"},
      {"listen entry not a string", kPool + "listen = [8080]\n", 3, 11, "pools.web.listen[0]",
       "expected an address string, got an integer"},
      {"same address in two pools",
       kPool + "listen = [\"tcp://127.0.0.1:8080\"]\n[pools.api]\ncommand = [\"/bin/true\"]\n"
               "listen = [\"tcp://localhost:8080\"]\n",
       6, 11, "pools.api.listen[0]", "\"tcp://127.0.0.1:8080\" is already used by pools.web.listen[0]"},
      {"same unix path in two pools",
       kPool + "listen = [\"unix:/tmp/fp.sock\"]\n[pools.api]\ncommand = [\"/bin/true\"]\n"
               "listen = [\"unix:///tmp/./fp.sock\"]\n",
       6, 11, "pools.api.listen[0]", "already used by pools.web.listen[0]"},
      {"listen on the control socket",
       "[supervisor]\ncontrol_socket = \"/tmp/fp-ctl.sock\"\n" + kPool + "listen = [\"unix:/tmp/fp-ctl.sock\"]\n",
       5, 11, "pools.web.listen[0]", "same path as supervisor.control_socket"},
      {"unknown placeholder in command", "[pools.web]\ncommand = [\"/bin/true\", \"--id={wroker}\"]\n", 2, 25,
       "pools.web.command[1]", "unknown placeholder {wroker}; the placeholders are {pool} and {worker}"},
      {"unknown placeholder beside a literal ${", "[pools.web]\ncommand = [\"/bin/sh\", \"-c\",\n  \"$${A} {B}\"]\n",
       3, 3, "pools.web.command[2]", "unknown placeholder {B}"},
      {"empty command", "[pools.web]\ncommand = []\n", 2, 11, "pools.web.command", "expected a non-empty argv array"},
      {"empty argv0", "[pools.web]\ncommand = [\"\", \"x\"]\n", 2, 11, "pools.web.command",
       "expected a non-empty argv array"},
      {"missing command", "[pools.web]\nworkers = 2\n", 1, 1, "pools.web.command",
       "missing; every pool needs a command"},
      {"command not an array", "[pools.web]\ncommand = \"/bin/true\"\n", 2, 11, "pools.web.command",
       "expected an array of strings, got a string"},
      {"command element not a string", "[pools.web]\ncommand = [\"/bin/true\", 1]\n", 2, 25, "pools.web.command[1]",
       "expected a string, got an integer"},
      {"command file missing", "[pools.web]\ncommand = [\"/nonexistent/forkpool-app\"]\n", 2, 11,
       "pools.web.command", "/nonexistent/forkpool-app: No such file or directory"},
      {"command not executable", "[pools.web]\ncommand = [\"/etc/passwd\"]\n", 2, 11, "pools.web.command",
       "/etc/passwd is not an executable file"},
      {"command not in PATH", "[pools.web]\ncommand = [\"forkpool-no-such-program\"]\n", 2, 11,
       "pools.web.command", "was not found in PATH"},
      {"nonexistent user", kPool + "user = \"forkpool_no_such_user\"\n", 3, 8, "pools.web.user",
       "no such user \"forkpool_no_such_user\""},
      {"nonexistent group", kPool + "group = \"forkpool_no_such_group\"\n", 3, 9, "pools.web.group",
       "no such group \"forkpool_no_such_group\""},
      {"cwd is a file", kPool + "cwd = \"/etc/passwd\"\n", 3, 7, "pools.web.cwd", "/etc/passwd is not a directory"},
      {"cwd missing", kPool + "cwd = \"/nonexistent-forkpool-dir\"\n", 3, 7, "pools.web.cwd",
       "No such file or directory"},
      {"bad env name", kPool + "env = { \"1BAD\" = \"x\" }\n", 3, 9, "pools.web.env.1BAD",
       "not a valid environment variable name"},
      {"env name with a dash", kPool + "[pools.web.env]\nMY-VAR = \"x\"\n", 4, 1, "pools.web.env.MY-VAR",
       "not a valid environment variable name"},
      {"non-string env value", kPool + "env = { GOOD = 1 }\n", 3, 16, "pools.web.env.GOOD",
       "expected a string, got an integer (quote numbers)"},
      {"unknown placeholder in env", kPool + "[pools.web.env]\nA = \"{wroker}\"\n", 4, 5, "pools.web.env.A",
       "unknown placeholder {wroker}"},
      {"env not a table", kPool + "env = \"A=1\"\n", 3, 7, "pools.web.env", "expected a table, got a string"},
      {"clear_env not a boolean", kPool + "clear_env = \"yes\"\n", 3, 13, "pools.web.clear_env",
       "expected a boolean (true or false), got a string"},
      {"unknown rlimit with suggestion", kPool + "rlimits = { nofil = 10 }\n", 3, 13, "pools.web.rlimits.nofil",
       "unknown resource limit; did you mean `nofile`?"},
      {"negative rlimit", kPool + "rlimits = { nofile = -1 }\n", 3, 22, "pools.web.rlimits.nofile",
       "expected a non-negative integer or \"unlimited\""},
      {"size for a count rlimit", kPool + "rlimits = { nofile = \"1KiB\" }\n", 3, 22, "pools.web.rlimits.nofile",
       "expected a non-negative integer or \"unlimited\""},
      {"bad size for a byte rlimit", kPool + "[pools.web.rlimits]\ncore = \"1.5B\"\n", 4, 8,
       "pools.web.rlimits.core", "a size such as \"512MiB\""},
      {"bad umask", kPool + "umask = \"0999\"\n", 3, 9, "pools.web.umask", "got \"0999\""},
      {"umask as an integer", kPool + "umask = 18\n", 3, 9, "pools.web.umask",
       "expected an octal mode written as a string, such as umask = \"022\""},
      {"umask with a leading zero", kPool + "umask = 022\n", 3, 9, "pools.web.umask",
       "leading zeroes are prohibited; a file mode or umask is written as a string: umask = \"022\""},
      {"bad stop_signal", kPool + "stop_signal = \"TREM\"\n", 3, 15, "pools.web.stop_signal",
       "expected a signal name such as \"TERM\", \"INT\", \"QUIT\" or \"KILL\", got \"TREM\"; did you mean \"TERM\"?"},
      {"misspelt timeout_signal", kPool + "timeout_signal = \"KIL\"\n", 3, 18, "pools.web.timeout_signal",
       "got \"KIL\"; did you mean \"KILL\"?"},
      {"misspelt signal with SIG", kPool + "stop_signal = \"SIGQIUT\"\n", 3, 15, "pools.web.stop_signal",
       "got \"SIGQIUT\"; did you mean \"SIGQUIT\"?"},
      {"stop_signal STOP", kPool + "stop_signal = \"STOP\"\n", 3, 15, "pools.web.stop_signal",
       "SIGSTOP cannot be handled and stops (freezes) a worker instead of ending it"},
      {"stop_signal SIGTSTP", kPool + "stop_signal = \"SIGTSTP\"\n", 3, 15, "pools.web.stop_signal",
       "SIGTSTP by default stops (freezes) a worker instead of ending it"},
      {"stop_signal TTIN by number", kPool + "stop_signal = \"21\"\n", 3, 15, "pools.web.stop_signal",
       "SIGTTIN by default stops"},
      {"stop_signal TTOU", kPool + "stop_signal = \"TTOU\"\n", 3, 15, "pools.web.stop_signal",
       "such as \"TERM\", \"INT\" or \"QUIT\""},
      {"lowercase timeout_signal", kPool + "timeout_signal = \"kill\"\n", 3, 18, "pools.web.timeout_signal",
       "got \"kill\"; did you mean \"KILL\"?"},
      {"signal as an integer", kPool + "timeout_signal = 9\n", 3, 18, "pools.web.timeout_signal",
       "expected a string, got an integer"},
      {"empty stdout", kPool + "stdout = \"\"\n", 3, 10, "pools.web.stdout",
       "expected \"inherit\", \"null\", \"log\" or a file path"},
      {"stderr in a missing folder", kPool + "stderr = \"/nonexistent-forkpool-dir/err.log\"\n", 3, 10,
       "pools.web.stderr", "the folder of the output file"},
  };
  return cases;
}

const std::vector<BadConfig>& file_cases() {
  static const std::vector<BadConfig> cases{
      {"bad pool name", "[pools.\"bad name\"]\ncommand = [\"/bin/true\"]\n", 1, 8, "pools.bad name",
       "a pool name is 1 to 64 letters"},
      {"pool name too long", "[pools." + std::string(65, 'p') + "]\ncommand = [\"/bin/true\"]\n", 1, 8,
       "pools." + std::string(65, 'p'), "a pool name is 1 to 64"},
      {"pool not a table", "[pools]\nweb = 1\n", 2, 7, "pools.web", "expected a table such as [pools.web], got an integer"},
      {"TOML syntax error", kPool + "x = = 1\n", 3, 5, "", "TOML syntax error"},
      {"TOML duplicate key", kPool + "command = [\"/bin/true\"]\n", 3, 11, "", "TOML syntax error"},
      {"TOML unterminated string", "[pools.web]\ncommand = [\"/bin/true\n", 2, 22, "", "TOML syntax error"},
      {"TOML unterminated table header", "[pools.web\ncommand = [\"/bin/true\"]\n", 1, 11, "", "TOML syntax error"},
      {"empty file: no pools", "", 1, 1, "pools", "no pools defined"},
      {"only [supervisor]: no pools", "[supervisor]\nlog_level = \"info\"\n", 1, 1, "pools", "no pools defined"},
      {"empty pools table", "pools = {}\n", 1, 9, "pools", "no pools defined"},
      {"pools not a table", "pools = 1\n", 1, 9, "pools", "expected a table, got an integer"},
      {"unknown top-level key with suggestion", "pool = 1\n" + kPool, 1, 1, "pool", "did you mean `pools`?"},
      {"include at the top level", "include = [\"conf.d/*.toml\"]\n" + kPool, 1, 1, "include",
       "unknown key here; it belongs in the [supervisor] table"},
      {"supervisor key at the top level", "log_level = \"debug\"\n" + kPool, 1, 1, "log_level",
       "unknown key here; it belongs in the [supervisor] table"},
      {"pool key at the top level", "workers = 2\n" + kPool, 1, 1, "workers",
       "unknown key here; it belongs in a pool's [pools.NAME] table"},
      {"pool key in [supervisor]", "[supervisor]\nworkers = 2\n" + kPool, 2, 1, "supervisor.workers",
       "unknown key here; it belongs in a pool's [pools.NAME] table"},
      {"pool key under [pools]", "[pools]\nworkers = 2\n" + kPool, 2, 11, "pools.workers",
       "expected a table such as [pools.workers], got an integer; `workers` is a pool key: write it under "
       "[pools.NAME]"},
      {"supervisor not a table", "supervisor = 1\n" + kPool, 1, 14, "supervisor", "expected a table, got an integer"},
      {"unknown supervisor key with suggestion", "[supervisor]\nlog_levl = \"info\"\n" + kPool, 2, 1,
       "supervisor.log_levl", "unknown key; did you mean `log_level`?"},
      {"supervisor key misspelt as in a pool", "[supervisor]\nshutdown_timout = \"1s\"\n" + kPool, 2, 1,
       "supervisor.shutdown_timout", "did you mean `shutdown_timeout`?"},
      {"metrics_listen bad port", "[supervisor]\nmetrics_listen = \"127.0.0.1:99999\"\n" + kPool, 2, 18,
       "supervisor.metrics_listen", "a port from 0 to 65535"},
      {"metrics_listen host name", "[supervisor]\nmetrics_listen = \"metrics.example:9464\"\n" + kPool, 2, 18,
       "supervisor.metrics_listen", "names are not resolved"},
      {"metrics_listen with scheme", "[supervisor]\nmetrics_listen = \"http://127.0.0.1:9464\"\n" + kPool, 2, 18,
       "supervisor.metrics_listen", "got \"http://127.0.0.1:9464\""},
      {"control_mode not octal", "[supervisor]\ncontrol_mode = \"0800\"\n" + kPool, 2, 16, "supervisor.control_mode",
       "an octal mode from \"000\" to \"0777\""},
      {"control_mode as an integer", "[supervisor]\ncontrol_mode = 600\n" + kPool, 2, 16, "supervisor.control_mode",
       "expected an octal mode written as a string, such as control_mode = \"022\""},
      {"control_mode with a leading zero", "[supervisor]\ncontrol_mode = 0600\n" + kPool, 2, 16,
       "supervisor.control_mode", "a file mode or umask is written as a string: control_mode = \"0600\""},
      {"control_group nonexistent", "[supervisor]\ncontrol_group = \"forkpool_no_such_group\"\n" + kPool, 2, 17,
       "supervisor.control_group", "no such group"},
      {"control_socket empty", "[supervisor]\ncontrol_socket = \"\"\n" + kPool, 2, 18, "supervisor.control_socket",
       "expected a socket path"},
      {"control_socket too long", "[supervisor]\ncontrol_socket = \"/" + std::string(120, 's') + "\"\n" + kPool, 2,
       18, "supervisor.control_socket", "longer than a Unix socket path may be"},
      {"log_level bad", "[supervisor]\nlog_level = \"verbose\"\n" + kPool, 2, 13, "supervisor.log_level",
       "expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"critical\", \"off\", got \"verbose\""},
      {"log_format misspelt", "[supervisor]\nlog_format = \"jsn\"\n" + kPool, 2, 14, "supervisor.log_format",
       "did you mean \"json\"?"},
      {"log_file in a missing folder", "[supervisor]\nlog_file = \"/nonexistent-forkpool-dir/fp.log\"\n" + kPool, 2,
       12, "supervisor.log_file", "the folder of the log file"},
      {"access_log in a missing folder", "[supervisor]\naccess_log = \"/nonexistent-forkpool-dir/a.log\"\n" + kPool,
       2, 14, "supervisor.access_log", "the folder of the access log"},
      {"access_log_format misspelt", "[supervisor]\naccess_log_format = \"jsno\"\n" + kPool, 2, 21,
       "supervisor.access_log_format", "did you mean \"json\"?"},
      {"shutdown_timeout without unit", "[supervisor]\nshutdown_timeout = \"30\"\n" + kPool, 2, 20,
       "supervisor.shutdown_timeout", "got \"30\""},
  };
  return cases;
}

}  // namespace

TEST_CASE("config errors: pool keys report line and column and key", "[config][errors]") {
  REQUIRE(pool_cases().size() >= 30);
  for (const auto& c : pool_cases()) {
    DYNAMIC_SECTION(c.name) { check_single(c); }
  }
}

TEST_CASE("config errors: file-level and supervisor problems report line and column and key",
          "[config][errors]") {
  for (const auto& c : file_cases()) {
    DYNAMIC_SECTION(c.name) { check_single(c); }
  }
}

TEST_CASE("config errors: every problem in a file is reported and sorted by position", "[config][errors]") {
  const std::string text = R"([pools.web]
command = ["/bin/true"]
control = 1
workers = 0
[supervisor]
log_levl = 1
[pools.api]
balance = "x"
dispatch = "mastr"
[pools.db]
command = ["/bin/true", "{wroker}"]
max_infligt = 2
)";
  const auto ds = diagnostics_of(text);
  INFO(dump(ds));
  struct Want {
    std::uint32_t line, column;
    const char* key;
  };
  const std::vector<Want> want{{3, 1, "pools.web.control"},       {4, 11, "pools.web.workers"},
                               {6, 1, "supervisor.log_levl"},     {7, 1, "pools.api.command"},
                               {8, 11, "pools.api.balance"},      {9, 12, "pools.api.dispatch"},
                               {11, 25, "pools.db.command[1]"},   {12, 1, "pools.db.max_infligt"}};
  REQUIRE(ds.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("diagnostic " << i);
    CHECK(ds[i].line == want[i].line);
    CHECK(ds[i].column == want[i].column);
    CHECK(ds[i].key == want[i].key);
  }
  for (std::size_t i = 1; i < ds.size(); ++i)
    CHECK(std::tie(ds[i - 1].line, ds[i - 1].column) <= std::tie(ds[i].line, ds[i].column));
}

TEST_CASE("config errors: ConfigError::what() lists every diagnostic one a line", "[config][errors]") {
  try {
    cfg::load_string(kPool + "workers = 0\nbacklog = 0\n", kFile);
    FAIL("config was accepted");
  } catch (const cfg::ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 2);
    CHECK(std::string(e.what()) ==
          "/some/dir/forkpool.toml:3:11: pools.web.workers: expected an integer from 1 to 4096, got 0\n"
          "/some/dir/forkpool.toml:4:11: pools.web.backlog: expected an integer from 1 to 65535, got 0");
  }
}

TEST_CASE("config errors: a diagnostic about the whole file has no position", "[config][errors]") {
  cfg::Diagnostic d{"x.toml", 0, 0, "", "cannot open: No such file or directory"};
  CHECK(d.to_string() == "x.toml: cannot open: No such file or directory");
  cfg::Diagnostic k{"x.toml", 2, 5, "pools.web.workers", "bad"};
  CHECK(k.to_string() == "x.toml:2:5: pools.web.workers: bad");
}

TEST_CASE("config errors: load_file problems name the file", "[config][errors]") {
  TempDir dir;
  auto whole_file = [](const std::filesystem::path& p) {
    try {
      cfg::load_file(p);
    } catch (const cfg::ConfigError& e) {
      REQUIRE(e.diagnostics().size() == 1);
      return e.diagnostics().front();
    }
    FAIL("config was accepted");
    return cfg::Diagnostic{};
  };
  auto missing = whole_file(dir / "missing.toml");
  CHECK(missing.file == (dir / "missing.toml").string());
  CHECK(missing.line == 0);
  CHECK_THAT(missing.message, Catch::Contains("No such file or directory"));

  auto folder = whole_file(dir.path());
  CHECK_THAT(folder.message, Catch::Contains("is a directory"));

  {
    std::ofstream big(dir / "big.toml");
    big << std::string(cfg::kMaxConfigBytes + 1, '#');
  }
  auto too_big = whole_file(dir / "big.toml");
  CHECK_THAT(too_big.message, Catch::Contains("at most " + std::to_string(cfg::kMaxConfigBytes) + " bytes"));

  auto not_regular = whole_file("/dev/null");
  CHECK_THAT(not_regular.message, Catch::Contains("not a regular file"));
}

// ---- Regressions found by this suite. ----

TEST_CASE("config errors: restart_delay above the default restart_delay_max raises the maximum",
          "[config][errors]") {
  // Only a written restart_delay_max can contradict restart_delay; the default follows it.
  const auto c = forkpool::config::load_string(kPool + "restart_delay = \"1m\"\n", "/x/forkpool.toml");
  CHECK(c.pools.at(0).restart_delay_max == std::chrono::minutes(1));
  const auto ds = diagnostics_of(kPool + "restart_delay = \"1m\"\nrestart_delay_max = \"30s\"\n");
  INFO(dump(ds));
  REQUIRE(ds.size() == 1);
  CHECK(ds.front().key == "pools.web.restart_delay_max");
}

TEST_CASE("config errors: a too long default control socket path is rejected",
          "[config][errors]") {
  // load_supervisor() checks the length only when control_socket is written; the default
  // <config folder>/forkpool.sock is never checked.
  const std::string deep = "/" + std::string(60, 'd') + "/" + std::string(60, 'e') + "/forkpool.toml";
  const auto ds = diagnostics_of(kPool, deep);
  INFO(dump(ds));
  REQUIRE(ds.size() == 1);
  CHECK(ds.front().key == "supervisor.control_socket");
}

TEST_CASE("config errors: a listen conflict names the entry's index as written",
          "[config][errors]") {
  // check_listen_conflicts() numbers the *valid* addresses, so after a bad entry the
  // indexes shift: here the duplicate is listen[1] in the file.
  const std::string text = "[pools.a]\ncommand = [\"/bin/true\"]\nlisten = [\"tcp://127.0.0.1:80\"]\n"
                           "[pools.b]\ncommand = [\"/bin/true\"]\n"
                           "listen = [\"tcp://bad\", \"tcp://127.0.0.1:80\"]\n";
  const auto ds = diagnostics_of(text);
  INFO(dump(ds));
  REQUIRE(ds.size() == 2);
  CHECK(ds[0].key == "pools.b.listen[0]");
  CHECK(ds[1].key == "pools.b.listen[1]");
  CHECK(ds[1].column == 24);
}

TEST_CASE("config errors: listen address messages say 'got' once", "[config][errors]") {
  // parse_listen_address() errors already end in ', got "host"', and load_listen() appends
  // another ', got "<whole address>"'.
  const auto ds = diagnostics_of(kPool + "listen = [\"tcp://example.com:80\"]\n");
  REQUIRE(ds.size() == 1);
  const auto& m = ds.front().message;
  CHECK(m.find(", got ") == m.rfind(", got "));
}

TEST_CASE("config errors: a misspelt log_level gets a suggestion like other enums",
          "[config][errors]") {
  const auto ds = diagnostics_of("[supervisor]\nlog_level = \"inf\"\n" + kPool);
  REQUIRE(ds.size() == 1);
  CHECK_THAT(ds.front().message, Catch::Contains("did you mean \"info\"?"));
  // Case is no distance: "WARN" is "warn" written otherwise.
  const auto upper = diagnostics_of("[supervisor]\nlog_level = \"WARN\"\n" + kPool);
  REQUIRE(upper.size() == 1);
  CHECK_THAT(upper.front().message, Catch::Contains("did you mean \"warn\"?"));
}

TEST_CASE("config errors: a misspelt stop_signal is never offered a signal that freezes the worker",
          "[config][errors]") {
  // "STPO" is one edit from STOP and TSTP, which stop_signal refuses; no other name is close.
  const auto ds = diagnostics_of(kPool + "stop_signal = \"STPO\"\n");
  REQUIRE(ds.size() == 1);
  CHECK_THAT(ds.front().message, Catch::EndsWith("got \"STPO\""));
  // As a timeout_signal it may be what was meant.
  const auto timeout = diagnostics_of(kPool + "timeout_signal = \"STPO\"\n");
  REQUIRE(timeout.size() == 1);
  CHECK_THAT(timeout.front().message, Catch::EndsWith("did you mean \"STOP\"?"));
}

TEST_CASE("config errors: every key written in the other table says where it belongs", "[config][errors]") {
  std::vector<std::string> supervisor{"include"};
  for (auto key : cfg::supervisor_keys()) supervisor.emplace_back(key);
  for (const auto& key : supervisor) {
    INFO("[supervisor] key " << key << " in a pool");
    const auto ds = diagnostics_of(kPool + key + " = 1\n");
    REQUIRE(ds.size() == 1);
    CHECK(ds.front().key == "pools.web." + key);
    CHECK(ds.front().message == "unknown key here; it belongs in the [supervisor] table");
  }
  for (const auto& rule : cfg::pool_key_rules()) {
    const std::string key(rule.key);
    INFO("pool key " << key << " in [supervisor]");
    const auto ds = diagnostics_of("[supervisor]\n" + key + " = 1\n" + kPool);
    REQUIRE(ds.size() == 1);
    CHECK(ds.front().key == "supervisor." + key);
    CHECK(ds.front().message == "unknown key here; it belongs in a pool's [pools.NAME] table");
  }
}

TEST_CASE("config errors: a group of the wrong type beside a user is reported once", "[config][errors]") {
  // Numbers are ids now, so `group = 65534` unquoted is a natural slip: one error, not two.
  const auto ds = diagnostics_of("[pools.web]\ncommand = [\"/bin/true\"]\nuser = \"root\"\ngroup = 65534\n");
  INFO(dump(ds));
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].key == "pools.web.group");
}
