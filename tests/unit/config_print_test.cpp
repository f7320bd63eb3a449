// SPDX-License-Identifier: Apache-2.0
// The effective config as TOML: loading what to_toml printed and printing it again must
// give the same text, so `forkpool --check` output is itself a valid config.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "config/load.hpp"
#include "config/print.hpp"
#include "support/temp_dir.hpp"

namespace cfg = forkpool::config;
using forkpool::test::TempDir;

namespace {

std::string print_reload_print(const std::string& text, const std::filesystem::path& file) {
  std::string first;
  try {
    first = cfg::to_toml(cfg::load_string(text, file));
  } catch (const cfg::ConfigError& e) {
    FAIL("the input config was rejected:\n" << e.what());
  }
  std::string second;
  try {
    second = cfg::to_toml(cfg::load_string(first, file));
  } catch (const cfg::ConfigError& e) {
    FAIL("the printed config was rejected:\n" << e.what() << "\n--- printed ---\n" << first);
  }
  CHECK(second == first);
  return first;
}

}  // namespace

TEST_CASE("config print: the minimal config prints every key with its default", "[config][print]") {
  const std::string out =
      print_reload_print("[pools.web]\ncommand = [\"/bin/true\"]\n", "/some/dir/forkpool.toml");
  CHECK(out == R"([supervisor]
control_socket = "/some/dir/forkpool.sock"
control_mode = "0600"
control_group = ""
log_level = "info"
log_format = "text"
log_file = ""
access_log = ""
access_log_format = "text"
shutdown_timeout = "30s"
metrics_listen = ""

[pools.web]
command = ["/bin/true"]
dispatch = "master"
listen = []
workers = 4
max_inflight = 1
keepalive = "worker"
keepalive_timeout = "5s"
max_parked = 10000
balance = "least-busy"
queue_limit = 1024
queue_timeout = "10s"
backlog = 1024
ready = "exec"
ready_timeout = "30s"
watchdog = "0"
request_timeout = "0"
timeout_signal = "KILL"
max_requests = 0
max_requests_jitter = 0
max_memory = "0"
restart_delay = "100ms"
restart_delay_max = "30s"
flap_restarts = 10
flap_window = "1m"
graceful_timeout = "30s"
stop_signal = "TERM"
isolate = "none"
user = ""
group = ""
cwd = ""
umask = ""
env = {}
clear_env = false
rlimits = {}
stdout = "inherit"
stderr = "inherit"
)");
}

TEST_CASE("config print: a rich config round trips", "[config][print]") {
  TempDir dir;
  std::filesystem::create_directories(dir / "run");
  std::filesystem::create_directories(dir / "out");
  const std::string text = R"([supervisor]
control_socket = "run/ctl.sock"
control_mode = "0660"
control_group = "nogroup"
log_level = "debug"
log_format = "json"
log_file = "out/forkpool.log"
shutdown_timeout = "1m"
metrics_listen = "localhost:9464"

[pools.zeta]
command = ["/bin/sh", "-c", "echo {pool} {worker} \"quoted\" back\\slash"]
listen = ["tcp://127.0.0.1:0", "tcp://[::1]:8081", "unix:web.sock", "unix:@abstract", "tcp://localhost:8082"]
min_workers = 2
max_workers = 8
spare_workers = 1
max_inflight = 4
balance = "round-robin"
queue_limit = 10
queue_timeout = "1.5s"
backlog = 128
ready = "notify"
ready_timeout = "250ms"
watchdog = "2h"
request_timeout = "90s"
timeout_signal = "SIGQUIT"
max_requests = 1000
max_requests_jitter = 50
max_memory = "1.5GiB"
restart_delay = "200ms"
restart_delay_max = "10s"
flap_restarts = 3
flap_window = "5m"
graceful_timeout = "15s"
stop_signal = "2"
user = "nobody"
group = "nogroup"
cwd = "run"
umask = "022"
env = { APP_POOL = "{pool}", QUOTED = "a \"b\" \\ c\td\u0001 é" }
clear_env = true
rlimits = { nofile = 4096, core = "unlimited", as = "2GiB", stack = 0, fsize = 1000 }
stdout = "null"
stderr = "out/err.log"

[pools."api.v1"]
command = ["true", "{worker}"]
dispatch = "shared"
workers = 3
stdout = "log"

[pools.alpha]
command = ["/bin/true"]
max_workers = 3
)";
  const std::string out = print_reload_print(text, dir / "forkpool.toml");
  // Spot checks that the printed form is the canonical, resolved one.
  CHECK_THAT(out, Catch::Contains("control_socket = \"" + (dir / "run" / "ctl.sock").string() + "\""));
  CHECK_THAT(out, Catch::Contains("metrics_listen = \"127.0.0.1:9464\""));
  CHECK_THAT(out, Catch::Contains("queue_timeout = \"1500ms\""));
  CHECK_THAT(out, Catch::Contains("max_memory = \"1536MiB\""));
  CHECK_THAT(out, Catch::Contains("timeout_signal = \"QUIT\""));
  CHECK_THAT(out, Catch::Contains("stop_signal = \"INT\""));
  CHECK_THAT(out, Catch::Contains("umask = \"0022\""));
  CHECK_THAT(out, Catch::Contains("\"tcp://127.0.0.1:8082\""));
  CHECK_THAT(out, Catch::Contains("\"unix:" + (dir / "web.sock").string() + "\""));
  CHECK_THAT(out, Catch::Contains("[pools.\"api.v1\"]"));
  CHECK_THAT(out, Catch::Contains("core = \"unlimited\""));
  CHECK_THAT(out, Catch::Contains("QUOTED = \"a \\\"b\\\" \\\\ c\\td\\u0001 é\""));
  // Pools stay in file order.
  const auto zeta = out.find("[pools.zeta]");
  const auto api = out.find("[pools.\"api.v1\"]");
  const auto alpha = out.find("[pools.alpha]");
  REQUIRE(zeta != std::string::npos);
  REQUIRE(api != std::string::npos);
  REQUIRE(alpha != std::string::npos);
  CHECK(zeta < api);
  CHECK(api < alpha);
}

TEST_CASE("config print: values reload to the same structs", "[config][print]") {
  TempDir dir;
  const auto file = dir / "forkpool.toml";
  const auto a = cfg::load_string(
      "[pools.w]\ncommand = [\"/bin/true\"]\nmax_memory = \"3MiB\"\nrlimits = { as = \"1KiB\", nproc = 7 }\n"
      "env = { X = \"\\n\" }\nqueue_timeout = \"61s\"\n",
      file);
  const auto b = cfg::load_string(cfg::to_toml(a), file);
  REQUIRE(b.pools.size() == 1);
  const auto& pa = a.pools[0];
  const auto& pb = b.pools[0];
  CHECK(pb.max_memory == pa.max_memory);
  CHECK(pb.rlimits.at("as").value == 1024);
  CHECK(pb.rlimits.at("nproc").value == 7);
  CHECK(pb.env.at("X") == "\n");
  CHECK(pb.queue_timeout == pa.queue_timeout);
  CHECK(b.supervisor.control_socket == a.supervisor.control_socket);
}

TEST_CASE("config print: toml_quote escapes what TOML requires", "[config][print]") {
  CHECK(cfg::toml_quote("") == "\"\"");
  CHECK(cfg::toml_quote("plain") == "\"plain\"");
  CHECK(cfg::toml_quote("a\"b") == "\"a\\\"b\"");
  CHECK(cfg::toml_quote("a\\b") == "\"a\\\\b\"");
  CHECK(cfg::toml_quote("a\nb") == "\"a\\nb\"");
  CHECK(cfg::toml_quote("a\tb") == "\"a\\tb\"");
  CHECK(cfg::toml_quote("a\rb") == "\"a\\rb\"");
  CHECK(cfg::toml_quote(std::string("\x01", 1)) == "\"\\u0001\"");
  CHECK(cfg::toml_quote(std::string("\x1f", 1)) == "\"\\u001F\"");
  CHECK(cfg::toml_quote(std::string("\x7f", 1)) == "\"\\u007F\"");
  CHECK(cfg::toml_quote(std::string("a\0b", 3)) == "\"a\\u0000b\"");
  CHECK(cfg::toml_quote("\xc3\xa9") == "\"\xc3\xa9\"");  // UTF-8 passes through
  CHECK(cfg::toml_quote("{pool}") == "\"{pool}\"");
}

TEST_CASE("config print: quoted strings read back as the original", "[config][print]") {
  // Every byte value that may appear in a TOML string, through an env value.
  std::string value;
  for (int c = 1; c < 0x80; ++c) value += static_cast<char>(c);
  value += "\xc3\xa9\xe2\x82\xac";
  const std::string text = "[pools.w]\ncommand = [\"/bin/true\"]\nenv = { V = " + cfg::toml_quote(value) + " }\n";
  const auto c = cfg::load_string(text, "/x/forkpool.toml");
  CHECK(c.pools.at(0).env.at("V") == value);
}

TEST_CASE("config print: printing a config with restart_delay above the default max round trips",
          "[config][print]") {
  // The effective restart_delay_max follows restart_delay up, so the printed text reloads.
  print_reload_print("[pools.web]\ncommand = [\"/bin/true\"]\nrestart_delay = \"1m\"\n", "/some/dir/forkpool.toml");
}

TEST_CASE("config print: a $ that would expand again is printed as $$", "[config][print]") {
  // Found by fuzz_config_load: values are printed expanded, so a literal "$$" or "${X}"
  // (written "$$$$" and "$${X}") must not be read back as an expansion, X set or not.
  ::setenv("FORKPOOL_PRINT_TEST_SET", "expanded", 1);
  ::unsetenv("FORKPOOL_PRINT_TEST_UNSET");
  const std::string out = print_reload_print(
      "[pools.web]\ncommand = [\"/bin/sh\", \"-c\", \"echo $HOME $$ $$$$\"]\n"
      "env = { B = \"a$$$$b$\" }\n"
      "stdout = \"/tmp/$${FORKPOOL_PRINT_TEST_SET}\"\n"
      "stderr = \"/tmp/$${FORKPOOL_PRINT_TEST_UNSET}\"\n",
      "/some/dir/forkpool.toml");
  CHECK(out.find(R"(command = ["/bin/sh", "-c", "echo $HOME $ $$$"])") != std::string::npos);
  CHECK(out.find(R"(env = { B = "a$$$b$" })") != std::string::npos);
  CHECK(out.find(R"(stdout = "/tmp/$${FORKPOOL_PRINT_TEST_SET}")") != std::string::npos);
  CHECK(out.find(R"(stderr = "/tmp/$${FORKPOOL_PRINT_TEST_UNSET}")") != std::string::npos);
}
