// SPDX-License-Identifier: Apache-2.0
// Every key of SPEC section 2: its default when absent, its value when present, and
// paths resolved against the config file's folder.

#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <fstream>
#include <string>

#include "config/load.hpp"
#include "config/names.hpp"
#include "support/temp_dir.hpp"

namespace cfg = forkpool::config;
using cfg::Duration;
using forkpool::test::TempDir;

namespace {

const std::filesystem::path kFile = "/some/dir/forkpool.toml";
const std::string kPool = "[pools.web]\ncommand = [\"/bin/true\"]\n";

// Loads `text`, turning a ConfigError into a test failure that shows every diagnostic.
cfg::Config load(const std::string& text, const std::filesystem::path& file = kFile) {
  try {
    return cfg::load_string(text, file);
  } catch (const cfg::ConfigError& e) {
    FAIL_CHECK("unexpected config error:\n" << e.what() << "\nin:\n" << text);
    throw;
  }
}

const cfg::PoolConfig& only_pool(const cfg::Config& c) {
  REQUIRE(c.pools.size() == 1);
  return c.pools.front();
}

void write_file(const std::filesystem::path& p, const std::string& text, mode_t mode = 0644) {
  std::ofstream(p) << text;
  ::chmod(p.c_str(), mode);
}

}  // namespace

TEST_CASE("config load: supervisor defaults when the supervisor table is absent", "[config][load]") {
  const auto c = load(kPool);
  CHECK(c.file == "/some/dir/forkpool.toml");
  const auto& s = c.supervisor;
  CHECK(s.control_socket == "/some/dir/forkpool.sock");
  CHECK(s.control_mode == 0600);
  CHECK(s.control_group.empty());
  CHECK(s.log_level == "info");
  CHECK(s.log_format == cfg::LogFormat::Text);
  CHECK(s.log_file.empty());
  CHECK(s.access_log.empty());
  CHECK(s.access_log_format == cfg::LogFormat::Text);
  CHECK(s.shutdown_timeout == Duration{30'000});
  CHECK(s.metrics_listen.empty());
}

TEST_CASE("config load: supervisor defaults with an empty supervisor table", "[config][load]") {
  const auto c = load("[supervisor]\n" + kPool);
  CHECK(c.supervisor.control_socket == "/some/dir/forkpool.sock");
  CHECK(c.supervisor.log_level == "info");
  CHECK(c.supervisor.shutdown_timeout == Duration{30'000});
}

TEST_CASE("config load: every supervisor key when present", "[config][load]") {
  TempDir dir;
  std::filesystem::create_directory(dir / "logs");
  const auto c = load(R"([supervisor]
control_socket = "run/../ctl.sock"
control_mode = "0660"
control_group = "nogroup"
log_level = "debug"
log_format = "json"
log_file = "logs/forkpool.log"
access_log = "logs/access.log"
access_log_format = "json"
shutdown_timeout = "2m"
metrics_listen = "127.0.0.1:9464"
)" + kPool,
                      dir / "forkpool.toml");
  const auto& s = c.supervisor;
  CHECK(s.control_socket == dir.path() / "ctl.sock");
  CHECK(s.control_mode == 0660);
  CHECK(s.control_group == "nogroup");
  CHECK(s.log_level == "debug");
  CHECK(s.log_format == cfg::LogFormat::Json);
  CHECK(s.log_file == dir.path() / "logs" / "forkpool.log");
  CHECK(s.access_log == dir.path() / "logs" / "access.log");
  CHECK(s.access_log_format == cfg::LogFormat::Json);
  CHECK(s.shutdown_timeout == Duration{120'000});
  CHECK(s.metrics_listen == "127.0.0.1:9464");
}

TEST_CASE("config load: absolute supervisor paths stay as written", "[config][load]") {
  const auto c = load("[supervisor]\ncontrol_socket = \"/tmp/ctl.sock\"\nlog_file = \"/tmp/fp.log\"\n"
                      "metrics_listen = \"localhost:0\"\n" + kPool);
  CHECK(c.supervisor.control_socket == "/tmp/ctl.sock");
  CHECK(c.supervisor.log_file == "/tmp/fp.log");
  CHECK(c.supervisor.metrics_listen == "127.0.0.1:0");
}

TEST_CASE("config load: every log level is accepted", "[config][load]") {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    INFO(level);
    CHECK(load("[supervisor]\nlog_level = \"" + std::string(level) + "\"\n" + kPool).supervisor.log_level ==
          level);
  }
}

TEST_CASE("config load: pool defaults from SPEC section 2", "[config][load]") {
  const auto c = load(kPool);
  const auto& p = only_pool(c);
  CHECK(p.name == "web");
  CHECK(p.command == std::vector<std::string>{"/bin/true"});
  CHECK(p.dispatch == cfg::Dispatch::Master);
  CHECK(p.listen.empty());
  CHECK_FALSE(p.dynamic);
  CHECK(p.workers == 4);
  CHECK(p.max_inflight == 1);
  CHECK(p.balance == cfg::Balance::LeastBusy);
  CHECK(p.queue_limit == 1024);
  CHECK(p.queue_timeout == Duration{10'000});
  CHECK(p.backlog == 1024);
  CHECK(p.ready == cfg::Readiness::Exec);
  CHECK(p.ready_timeout == Duration{30'000});
  CHECK(p.watchdog == Duration{0});
  CHECK(p.request_timeout == Duration{0});
  CHECK(p.timeout_signal == SIGKILL);
  CHECK(p.max_requests == 0);
  CHECK(p.max_requests_jitter == 0);
  CHECK(p.max_memory == 0);
  CHECK(p.restart_delay == Duration{100});
  CHECK(p.restart_delay_max == Duration{30'000});
  CHECK(p.flap_restarts == 10);
  CHECK(p.flap_window == Duration{60'000});
  CHECK(p.graceful_timeout == Duration{30'000});
  CHECK(p.stop_signal == SIGTERM);
  CHECK(p.user.empty());
  CHECK(p.group.empty());
  CHECK(p.cwd.empty());
  CHECK_FALSE(p.umask.has_value());
  CHECK(p.env.empty());
  CHECK_FALSE(p.clear_env);
  CHECK(p.rlimits.empty());
  CHECK(p.stdout_target.kind == cfg::OutputTarget::Kind::Inherit);
  CHECK(p.stderr_target.kind == cfg::OutputTarget::Kind::Inherit);
}

TEST_CASE("config load: empty strings mean the default for user and group and cwd and umask", "[config][load]") {
  const auto& c = load(kPool + "user = \"\"\ngroup = \"\"\ncwd = \"\"\numask = \"\"\n");
  const auto& p = only_pool(c);
  CHECK(p.user.empty());
  CHECK(p.group.empty());
  CHECK(p.cwd.empty());
  CHECK_FALSE(p.umask.has_value());
}

TEST_CASE("config load: every pool key when present", "[config][load]") {
  TempDir dir;
  std::filesystem::create_directory(dir / "work");
  std::filesystem::create_directory(dir / "out");
  const auto c = load(R"([pools.web]
command = ["/bin/sh", "-c", "exec app --name {pool}-{worker}"]
dispatch = "master"
listen = ["tcp://127.0.0.1:8080", "tcp://[::1]:0", "unix:web.sock", "unix:@web"]
workers = 7
max_inflight = 16
balance = "round-robin"
queue_limit = 0
queue_timeout = "1.5s"
backlog = 4096
ready = "notify"
ready_timeout = "250ms"
watchdog = "5s"
request_timeout = "2m"
timeout_signal = "SIGQUIT"
max_requests = 10000
max_requests_jitter = 500
max_memory = "512MiB"
restart_delay = "1s"
restart_delay_max = "1h"
flap_restarts = 3
flap_window = "90s"
graceful_timeout = "45s"
stop_signal = "INT"
user = "nobody"
group = "nogroup"
cwd = "work"
umask = "027"
env = { APP_POOL = "{pool}", APP_WORKER = "w{worker}", PLAIN = "x y" }
clear_env = true
rlimits = { nofile = 4096, core = "unlimited", as = "2GiB", stack = 0, nproc = 100 }
stdout = "out/web.log"
stderr = "log"
)",
                      dir / "forkpool.toml");
  const auto& p = only_pool(c);
  CHECK(p.command == std::vector<std::string>{"/bin/sh", "-c", "exec app --name {pool}-{worker}"});
  CHECK(p.dispatch == cfg::Dispatch::Master);
  REQUIRE(p.listen.size() == 4);
  CHECK(p.listen[0].text == "tcp://127.0.0.1:8080");
  CHECK(p.listen[0].port == 8080);
  CHECK(p.listen[1].ipv6);
  CHECK(p.listen[1].port == 0);
  CHECK(p.listen[2].kind == cfg::ListenAddress::Kind::Unix);
  CHECK(p.listen[2].path == dir.path() / "web.sock");
  CHECK(p.listen[3].path == "@web");
  CHECK_FALSE(p.dynamic);
  CHECK(p.workers == 7);
  CHECK(p.max_inflight == 16);
  CHECK(p.balance == cfg::Balance::RoundRobin);
  CHECK(p.queue_limit == 0);
  CHECK(p.queue_timeout == Duration{1'500});
  CHECK(p.backlog == 4096);
  CHECK(p.ready == cfg::Readiness::Notify);
  CHECK(p.ready_timeout == Duration{250});
  CHECK(p.watchdog == Duration{5'000});
  CHECK(p.request_timeout == Duration{120'000});
  CHECK(p.timeout_signal == SIGQUIT);
  CHECK(p.max_requests == 10'000);
  CHECK(p.max_requests_jitter == 500);
  CHECK(p.max_memory == 512ull << 20);
  CHECK(p.restart_delay == Duration{1'000});
  CHECK(p.restart_delay_max == Duration{3'600'000});
  CHECK(p.flap_restarts == 3);
  CHECK(p.flap_window == Duration{90'000});
  CHECK(p.graceful_timeout == Duration{45'000});
  CHECK(p.stop_signal == SIGINT);
  CHECK(p.user == "nobody");
  CHECK(p.group == "nogroup");
  CHECK(p.cwd == dir.path() / "work");
  REQUIRE(p.umask.has_value());
  CHECK(*p.umask == 027);
  CHECK(p.env == std::map<std::string, std::string>{
                     {"APP_POOL", "{pool}"}, {"APP_WORKER", "w{worker}"}, {"PLAIN", "x y"}});
  CHECK(p.clear_env);
  REQUIRE(p.rlimits.size() == 5);
  CHECK(p.rlimits.at("nofile").resource == RLIMIT_NOFILE);
  CHECK(p.rlimits.at("nofile").value == 4096);
  CHECK(p.rlimits.at("core").resource == RLIMIT_CORE);
  CHECK(p.rlimits.at("core").value == RLIM_INFINITY);
  CHECK(p.rlimits.at("as").value == 2ull << 30);
  CHECK(p.rlimits.at("stack").value == 0);
  CHECK(p.rlimits.at("nproc").value == 100);
  CHECK(p.stdout_target.kind == cfg::OutputTarget::Kind::File);
  CHECK(p.stdout_target.path == dir.path() / "out" / "web.log");
  CHECK(p.stderr_target.kind == cfg::OutputTarget::Kind::Log);
}

TEST_CASE("config load: output targets", "[config][load]") {
  const auto c = load(kPool + "stdout = \"null\"\nstderr = \"/tmp/forkpool-stderr.log\"\n");
  const auto& p = only_pool(c);
  CHECK(p.stdout_target.kind == cfg::OutputTarget::Kind::Null);
  CHECK(p.stderr_target.kind == cfg::OutputTarget::Kind::File);
  CHECK(p.stderr_target.path == "/tmp/forkpool-stderr.log");
  const auto d = load(kPool + "stdout = \"inherit\"\nstderr = \"inherit\"\n");
  CHECK(only_pool(d).stdout_target.kind == cfg::OutputTarget::Kind::Inherit);
  CHECK(only_pool(d).stderr_target.kind == cfg::OutputTarget::Kind::Inherit);
}

TEST_CASE("config load: dynamic pool sizing", "[config][load]") {
  const auto c = load(kPool + "min_workers = 2\nmax_workers = 10\nspare_workers = 3\n");
  const auto& p = only_pool(c);
  CHECK(p.dynamic);
  CHECK(p.min_workers == 2);
  CHECK(p.max_workers == 10);
  CHECK(p.spare_workers == 3);

  const auto only_max = load(kPool + "max_workers = 5\n");
  CHECK(only_pool(only_max).dynamic);
  CHECK(only_pool(only_max).max_workers == 5);
  CHECK(only_pool(only_max).min_workers >= 1);
  CHECK(only_pool(only_max).min_workers <= 5);

  // On demand: no spare by default (it could never return to zero workers), idle_timeout.
  const auto on_demand = load(kPool + "min_workers = 0\nmax_workers = 3\nidle_timeout = \"2s\"\n");
  CHECK(only_pool(on_demand).min_workers == 0);
  CHECK(only_pool(on_demand).spare_workers == 0);
  CHECK(only_pool(on_demand).idle_timeout == std::chrono::milliseconds(2000));
  CHECK(only_pool(only_max).idle_timeout == std::chrono::milliseconds(10000));

  const auto equal = load(kPool + "min_workers = 4\nmax_workers = 4\nspare_workers = 0\n");
  CHECK(only_pool(equal).min_workers == 4);
  CHECK(only_pool(equal).spare_workers == 0);
}

TEST_CASE("config load: integer range boundaries are accepted", "[config][load]") {
  const auto lo = load(kPool + "workers = 1\nmax_inflight = 1\nbacklog = 1\nflap_restarts = 1\nqueue_limit = 0\n");
  CHECK(only_pool(lo).workers == 1);
  CHECK(only_pool(lo).backlog == 1);
  const auto hi = load(kPool + "workers = 4096\nmax_inflight = 65536\nbacklog = 65535\nqueue_limit = 1000000\n");
  CHECK(only_pool(hi).workers == 4096);
  CHECK(only_pool(hi).max_inflight == 65536);
  CHECK(only_pool(hi).backlog == 65535);
  CHECK(only_pool(hi).queue_limit == 1'000'000);
}

TEST_CASE("config load: a bare 0 is accepted for durations and sizes", "[config][load]") {
  const auto c = load(kPool + "watchdog = 0\nrequest_timeout = \"0\"\nmax_memory = 0\nqueue_timeout = 0\n");
  const auto& p = only_pool(c);
  CHECK(p.watchdog == Duration{0});
  CHECK(p.request_timeout == Duration{0});
  CHECK(p.max_memory == 0);
  CHECK(p.queue_timeout == Duration{0});
}

TEST_CASE("config load: signals by name or SIG name or number", "[config][load]") {
  const auto c = load(kPool + "stop_signal = \"SIGQUIT\"\ntimeout_signal = \"15\"\n");
  CHECK(only_pool(c).stop_signal == SIGQUIT);
  CHECK(only_pool(c).timeout_signal == SIGTERM);
  // Signals that end a program, or that a program may take as its cue (httpd: WINCH).
  for (const char* name : {"KILL", "TERM", "INT", "HUP", "USR1", "WINCH"})
    CHECK(only_pool(load(kPool + "stop_signal = \"" + name + "\"\n")).stop_signal == cfg::signal_from_name(name));
}

TEST_CASE("config load: relative paths resolve against the config file's folder", "[config][load]") {
  TempDir dir;
  std::filesystem::create_directories(dir / "bin");
  std::filesystem::create_directories(dir / "state");
  write_file(dir / "bin" / "app", "#!/bin/sh\nexit 0\n", 0755);
  // The process cwd is elsewhere on purpose: resolution must not depend on it.
  const auto c = load(R"([supervisor]
control_socket = "state/ctl.sock"
log_file = "state/forkpool.log"
[pools.web]
command = ["./bin/app", "relative-arg"]
cwd = "state"
listen = ["unix:state/web.sock"]
stdout = "state/out.log"
stderr = "./state/../state/err.log"
)",
                      dir / "forkpool.toml");
  CHECK(c.file == dir.path() / "forkpool.toml");
  CHECK(c.supervisor.control_socket == dir.path() / "state" / "ctl.sock");
  CHECK(c.supervisor.log_file == dir.path() / "state" / "forkpool.log");
  const auto& p = only_pool(c);
  CHECK(p.command == std::vector<std::string>{(dir.path() / "bin" / "app").string(), "relative-arg"});
  CHECK(p.cwd == dir.path() / "state");
  REQUIRE(p.listen.size() == 1);
  CHECK(p.listen[0].path == dir.path() / "state" / "web.sock");
  CHECK(p.listen[0].text == "unix:" + (dir.path() / "state" / "web.sock").string());
  CHECK(p.stdout_target.path == dir.path() / "state" / "out.log");
  CHECK(p.stderr_target.path == dir.path() / "state" / "err.log");
}

TEST_CASE("config load: load_file reads the file and resolves against its folder", "[config][load]") {
  TempDir dir;
  std::filesystem::create_directories(dir / "conf");
  write_file(dir / "conf" / "forkpool.toml", kPool + "listen = [\"unix:web.sock\"]\n");
  const auto c = cfg::load_file(dir / "conf" / "forkpool.toml");
  CHECK(c.file == dir.path() / "conf" / "forkpool.toml");
  CHECK(c.supervisor.control_socket == dir.path() / "conf" / "forkpool.sock");
  CHECK(only_pool(c).listen.at(0).path == dir.path() / "conf" / "web.sock");
}

TEST_CASE("config load: a bare command name is looked up in PATH and kept as written", "[config][load]") {
  TempDir dir;
  // A program that exists only in a folder of our own: found through PATH or not at all.
  const std::string name = "forkpool-path-probe";
  write_file(dir.path() / name, "#!/bin/sh\nexit 0\n", 0755);
  const char* saved = std::getenv("PATH");
  const std::string old_path = saved != nullptr ? saved : "";
  ::setenv("PATH", (dir.path().string() + ":" + old_path).c_str(), 1);
  const auto c = load("[pools.web]\ncommand = [\"" + name + "\", \"x\"]\n");
  CHECK(only_pool(c).command == std::vector<std::string>{name, "x"});
  ::setenv("PATH", old_path.c_str(), 1);
  CHECK_THROWS_AS(cfg::load_string("[pools.web]\ncommand = [\"" + name + "\"]\n", kFile), cfg::ConfigError);
}

TEST_CASE("config load: pools keep file order", "[config][load]") {
  const auto c = load(R"([pools.zeta]
command = ["/bin/true"]
[pools.alpha]
command = ["/bin/true"]
[pools.mid]
command = ["/bin/true"]
[pools."b.2"]
command = ["/bin/true"]
[pools.a-1]
command = ["/bin/true"]
)");
  REQUIRE(c.pools.size() == 5);
  CHECK(c.pools[0].name == "zeta");
  CHECK(c.pools[1].name == "alpha");
  CHECK(c.pools[2].name == "mid");
  CHECK(c.pools[3].name == "b.2");
  CHECK(c.pools[4].name == "a-1");
  CHECK(c.find_pool("mid") == &c.pools[2]);
  CHECK(c.find_pool("nope") == nullptr);
}

TEST_CASE("config load: pools as inline tables under the pools table", "[config][load]") {
  const auto c = load("[pools]\nb = { command = [\"/bin/true\"], workers = 2 }\na = { command = [\"/bin/true\"] }\n");
  REQUIRE(c.pools.size() == 2);
  CHECK(c.pools[0].name == "b");
  CHECK(c.pools[0].workers == 2);
  CHECK(c.pools[1].name == "a");
}

TEST_CASE("config load: {pool} and {worker} are allowed in command and env", "[config][load]") {
  const auto c = load(R"([pools.web]
command = ["/bin/echo", "{pool}", "{worker}", "--id={pool}.{worker}", "{}", "{ pool }", "{"]
env = { A = "{pool}", B = "{worker}", C = "x{pool}y{worker}z", D = "{" }
)");
  const auto& p = only_pool(c);
  CHECK(p.command.size() == 7);
  CHECK(p.command[3] == "--id={pool}.{worker}");
  CHECK(p.env.at("C") == "x{pool}y{worker}z");
}

TEST_CASE("config load: same port 0 in two pools is not a conflict", "[config][load]") {
  const auto c = load(R"([pools.a]
command = ["/bin/true"]
listen = ["tcp://127.0.0.1:0"]
[pools.b]
command = ["/bin/true"]
listen = ["tcp://127.0.0.1:0"]
)");
  CHECK(c.pools.size() == 2);
}

TEST_CASE("config load: ready defaults to protocol for master dispatch with listeners, exec otherwise",
          "[config][load]") {
  const std::string cmd = "command = [\"/bin/true\"]\n";
  const auto c = load("[pools.m]\n" + cmd + "listen = [\"tcp://127.0.0.1:0\"]\n" +
                      "[pools.s]\n" + cmd + "listen = [\"tcp://127.0.0.1:0\"]\ndispatch = \"shared\"\n" +
                      "[pools.plain]\n" + cmd +
                      "[pools.e]\n" + cmd + "listen = [\"tcp://127.0.0.1:0\"]\nready = \"exec\"\n");
  REQUIRE(c.pools.size() == 4);
  CHECK(c.pools[0].ready == cfg::Readiness::Protocol);
  CHECK(c.pools[1].ready == cfg::Readiness::Exec);
  CHECK(c.pools[2].ready == cfg::Readiness::Exec);
  CHECK(c.pools[3].ready == cfg::Readiness::Exec);
}
