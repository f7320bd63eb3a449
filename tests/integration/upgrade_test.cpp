// SPDX-License-Identifier: Apache-2.0
// Issue 11: the binary upgrade in place (SIGUSR2, `forkpoolctl upgrade`, SPEC section 7,
// docs/upgrade.md). Each test starts the master from a copy of the built binary in its own
// folder, so it can replace that file (and /proc/PID/exe then names the new one) or break it.

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <future>
#include <iterator>

#include "upgrade_support.hpp"
#include "shm/version.hpp"
#include "support/fake_systemd.hpp"
#include "support/fd_flags.hpp"
#include "support/http_connection.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reload_support;
using namespace forkpool::test::upgrade_support;

namespace {

std::uint64_t handled_sum(const json& pool) {
  std::uint64_t n = 0;
  if (pool.is_object())
    for (const auto& w : pool["workers"]) n += w.value("handled", std::uint64_t{0});
  return n;
}

// SIGUSR2 with the binary replaced, while `ab` keeps 8 connections busy: no request fails,
// the master keeps its pid and every worker its own.
void upgrade_under_ab(const std::string& dispatch) {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 4, "dispatch = \"" + dispatch + "\"\n"));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const json before = pool_in(m.status(), "web");
  const std::set<pid_t> workers = all_pids(before);
  REQUIRE(workers.size() == 4);

  auto ab = std::async(std::launch::async, [&] {
    return run_command({"/usr/bin/ab", "-q", "-n", "40000", "-c", "8", "http://" + addr + "/"},
                       170s);
  });
  REQUIRE(wait_until([&] { return handled_sum(pool_in(m.status(), "web")) >= 2000; }, 60s));
  const json mid = pool_in(m.status(), "web");
  m.install_new_build();
  CHECK(exe_of(m.process->pid()).ends_with(" (deleted)"));
  m.process->signal(SIGUSR2);
  REQUIRE(m.wait_upgrades(1));
  // The upgrade happened while ab was still sending.
  CHECK(ab.wait_for(0s) != std::future_status::ready);
  const RunResult r = ab.get();
  INFO(r.out << r.err);
  CHECK(r.out.find("Complete requests:      40000") != std::string::npos);
  CHECK(r.out.find("Failed requests:        0") != std::string::npos);
  CHECK(r.out.find("Non-2xx") == std::string::npos);

  const json s = m.status();
  CHECK(s["master"]["pid"] == m.process->pid());
  CHECK(runs_file(m.process->pid(), m.binary()));
  const json after = pool_in(s, "web");
  CHECK(all_pids(after) == workers);
  CHECK(handled_sum(after) >= handled_sum(mid) + 1);
  CHECK(after["counters"]["lost"] == 0);
  CHECK(after["counters"]["closed"] == 0);
  CHECK(after["counters"]["crashed"] == 0);
  CHECK(after["counters"]["spawned"] == 4);
  if (dispatch == "master") {
    // Counters go on from where they were: nothing was reset by the new image.
    CHECK(after["counters"]["accepted"].get<std::uint64_t>() >= 40000);
    CHECK(after["counters"]["accepted"].get<std::uint64_t>() >=
          mid["counters"]["accepted"].get<std::uint64_t>());
    CHECK(wait_until([&] {
      const json c = pool_in(m.status(), "web")["counters"];
      return c["completed"] == c["accepted"] && c["in_flight"] == 0;
    }));
  }
  CHECK(m.process->all_matches("(\\[master\\.upgraded\\])").size() == 1);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

}  // namespace

TEST_CASE(
    "SIGUSR2 with the binary replaced under ab load keeps every pid and fails no request (master "
    "dispatch)",
    "[upgrade]") {
  upgrade_under_ab("master");
}

TEST_CASE(
    "SIGUSR2 with the binary replaced under ab load keeps every pid and fails no request (shared "
    "dispatch)",
    "[upgrade]") {
  upgrade_under_ab("shared");
}

TEST_CASE("forkpoolctl upgrade twice in a row under load, confirmed by the new image each time",
          "[upgrade]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const std::set<pid_t> workers = all_pids(pool_in(m.status(), "web"));
  Load load(addr);
  REQUIRE(load.advance(50));
  for (unsigned n = 1; n <= 2; ++n) {
    m.install_new_build();
    const RunResult r = m.ctl({"upgrade"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("upgraded: forkpool") != std::string::npos);
    CHECK(r.out.find("upgrade " + std::to_string(n) + " since start") != std::string::npos);
    CHECK(m.upgrades() == n);
    REQUIRE(load.advance(50));
  }
  const json s = m.status();
  CHECK(s["master"]["pid"] == m.process->pid());
  CHECK(s["master"]["last_upgrade"].get<double>() > 0);
  CHECK(runs_file(m.process->pid(), m.binary()));
  CHECK(all_pids(pool_in(s, "web")) == workers);
  // `status` shows the upgrade in text too.
  const RunResult text = m.ctl({"status"});
  CHECK(text.out.find("binary upgraded 2 time(s) in place") != std::string::npos);
  CHECK(m.ctl({"metrics"}).out.find("\nforkpool_master_upgrades_total 2\n") != std::string::npos);
  auto c = m.client();
  check_came_through(load, c, "web", *m.process);
}

TEST_CASE("connections queued in the master at the upgrade are all served after it", "[upgrade]") {
  // queue_timeout well beyond the test's time: on a loaded machine, copying the build and
  // the upgrade itself took more than the default 10 s, and the queued four timed out.
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1, "queue_limit = 4\nqueue_timeout = \"5m\"\n"));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  // The only worker holds one request the test has not finished sending (it stays in
  // flight however long the upgrade takes); the next four wait in the master's queue and
  // the rest in the kernel's backlog.
  HttpConnection held(addr, 60s);
  REQUIRE(held.connected());
  REQUIRE(held.send("GET / HTTP/1.1\r\nHost: x\r\n"));
  REQUIRE(wait_until([&] { return pool_in(m.status(), "web")["counters"]["in_flight"] == 1; }));
  std::vector<std::future<std::optional<HttpResponse>>> waiting;
  for (int i = 0; i < 8; ++i)
    waiting.push_back(std::async(std::launch::async, [&] { return http_get(addr, "/", 60s); }));
  REQUIRE(wait_until([&] { return pool_in(m.status(), "web")["queue"]["length"] == 4; }));

  m.install_new_build();
  m.process->signal(SIGUSR2);
  REQUIRE(m.wait_upgrades(1));
  const json mid = pool_in(m.status(), "web");
  INFO(mid.dump());
  CHECK(mid["counters"]["in_flight"] == 1);  // carried, not reset
  CHECK(mid["counters"]["closed"] == 0);

  REQUIRE(held.send("Connection: close\r\n\r\n"));
  const auto r = held.read_response();
  CHECK((r && r->status == 200));
  for (auto& w : waiting) {
    const auto a = w.get();
    CHECK((a && a->status == 200 && a->body == kHelloBody));
  }
  REQUIRE(wait_until([&] {
    const json c = pool_in(m.status(), "web")["counters"];
    return c["completed"] == 9 && c["in_flight"] == 0;
  }));
  const json c = pool_in(m.status(), "web")["counters"];
  CHECK(c["accepted"] == 9);
  CHECK(c["lost"] == 0);
  CHECK(c["closed"] == 0);
  CHECK(c["queue_timeouts"] == 0);
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("an upgrade in the middle of a rolling restart lets the restart finish", "[upgrade]") {
  // Each worker is ready only 0.4 s after it starts, one at a time: the restart of four
  // takes over 1.6 s, and the upgrade comes while a replacement is starting.
  const std::string slow_hello =
      "[pools.web]\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.4; exec " + hello_binary().string() +
      "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 4\nready = \"notify\"\n";
  UpgradeMaster m(supervisor_section() + slow_hello);
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const std::set<pid_t> old = all_pids(pool_in(m.status(), "web"));
  Load load(addr);
  REQUIRE(load.advance(20));
  // --no-wait: forkpoolctl would otherwise return only once the restart is over.
  REQUIRE(m.ctl({"restart", "web", "--no-wait"}).exit_code == 0);
  REQUIRE(wait_until([&] {
    const json p = pool_in(m.status(), "web");
    for (const auto& w : p["workers"])
      if (w["role"] == "replacement") return true;
    return false;
  }));
  m.install_new_build();
  m.process->signal(SIGUSR2);
  REQUIRE(m.wait_upgrades(1));
  // Every old worker is replaced in the end, by ready workers, and nothing else changed.
  REQUIRE(wait_until(
      [&] {
        const json p = pool_in(m.status(), "web");
        return settled(p, 4) && all_replaced(p, 1, old);
      },
      60s));
  REQUIRE(load.advance(20));
  const json p = pool_in(m.status(), "web");
  CHECK(p["counters"]["spawned"] == 8);
  CHECK(p["counters"]["recycled"] == 4);
  auto c = m.client();
  check_came_through(load, c, "web", *m.process);
}

TEST_CASE("a broken, a missing and a config-rejecting new binary are refused and change nothing",
          "[upgrade]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const json before = m.status();
  const std::set<pid_t> workers = all_pids(pool_in(before, "web"));
  EventStream events(m.socket());
  REQUIRE(events.subscribed());

  struct Case {
    const char* what;
    std::function<void()> install;
    std::string reason;  // in the reply, the log and the event
  };
  const std::vector<Case> cases = {
      {"a binary that exits 1",
       [&] { m.install_script("#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n"); },
       "--upgrade-info exited with status 1: this build is broken"},
      {"no binary at all", [&] { std::filesystem::remove(m.binary()); },
       "No such file or directory"},
      {"a binary that rejects the config",
       [&] {
         m.install_script(
             "#!/bin/sh\nif [ \"$1\" = --upgrade-info ]; then echo " + info_line("1") +
             "; exit 0; fi\necho 'f.toml:5:1: pools.web.fancy: unknown key' >&2\nexit 2\n");
       },
       "--check -c " + m.config_path().string() +
           " exited with status 2: f.toml:5:1: pools.web.fancy: unknown key"},
      {"a binary that cannot read this state format",
       [&] {
         m.install_script("#!/bin/sh\necho " + info_line("99") + "\n");
       },
       "does not read state format 1"},
      {"a binary with another scoreboard layout",
       [&] { m.install_script("#!/bin/sh\necho " + info_line("1", "99.1.2") + "\n"); },
       "uses scoreboard layout 99.1.2, this master " + forkpool::shm::layout_version_string() +
           ": restart instead of upgrading"},
      {"a binary that does not name its scoreboard layout",
       [&] { m.install_script("#!/bin/sh\necho '{\"version\":\"9.0.0\",\"state_formats\":[1]}'\n"); },
       "does not say which scoreboard layout it uses"},
  };
  for (const auto& k : cases) {
    INFO(k.what);
    k.install();
    const RunResult r = m.ctl({"upgrade"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("upgrade refused, nothing changed") != std::string::npos);
    CHECK(r.err.find(k.reason) != std::string::npos);
    const auto e = events.wait_for("master.upgrade_failed");
    REQUIRE(e.has_value());
    CHECK(e->dump().find(k.reason) != std::string::npos);
    CHECK(hello_answers(addr));
  }
  // By signal too: refused the same way, logged.
  m.process->signal(SIGUSR2);
  REQUIRE(events.wait_for("master.upgrade_failed").has_value());

  const json after = m.status();
  CHECK(after["master"]["pid"] == m.process->pid());
  CHECK(after["master"]["upgrades"] == 0);
  CHECK(after["master"]["last_upgrade"] == 0);
  CHECK(all_pids(pool_in(after, "web")) == workers);
  CHECK(pool_in(after, "web")["counters"]["spawned"] == 2);
  CHECK(exe_of(m.process->pid()).ends_with(" (deleted)"));  // still the program it started as
  CHECK(m.process->all_matches("(\\[master\\.upgrade_failed\\])").size() == cases.size() + 1);
  CHECK(m.process->all_matches("(\\[master\\.upgraded\\])").empty());
  // A good build afterwards goes through.
  m.install_new_build();
  CHECK(m.ctl({"upgrade"}).exit_code == 0);
  CHECK(m.upgrades() == 1);
  CHECK(all_pids(pool_in(m.status(), "web")) == workers);
}

namespace {

// Descriptors (3 and up) of `pid` without close-on-exec.
std::set<int> inheritable_fds(pid_t pid) {
  std::set<int> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fdinfo";
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const int fd = std::stoi(e.path().filename().string());
    if (fd < 3) continue;
    const auto flags = fd_flags(pid, fd);
    if (flags && (*flags & O_CLOEXEC) == 0) out.insert(fd);
  }
  return out;
}

}  // namespace

TEST_CASE("a failed execve leaves the old image running with its descriptors close-on-exec again",
          "[upgrade]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const std::set<pid_t> workers = all_pids(pool_in(m.status(), "web"));
  const std::set<int> inheritable = inheritable_fds(m.process->pid());
  // Passes both checks, then takes its own execute permission away: the exec fails.
  m.install_script(
      "#!/bin/sh\nif [ \"$1\" = --upgrade-info ]; then echo " + info_line("1") +
      "; exit 0; fi\nchmod a-x \"$0\"\nexit 0\n");
  const RunResult r = m.ctl({"upgrade"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("upgrade failed, the running master carries on: execve " + m.binary().string() +
                   ": Permission denied") != std::string::npos);
  CHECK(m.process->all_matches("(\\[master\\.upgrade_failed\\].*execve)").size() == 1);
  const json s = m.status();
  CHECK(s["master"]["upgrades"] == 0);
  CHECK(all_pids(pool_in(s, "web")) == workers);
  CHECK(inheritable_fds(m.process->pid()) == inheritable);
  CHECK(hello_answers(addr));
  m.install_new_build();
  CHECK(m.ctl({"upgrade"}).exit_code == 0);
  CHECK(all_pids(pool_in(m.status(), "web")) == workers);
  CHECK(hello_answers(addr));
}

namespace {

// The master's descriptors open on `file`.
std::vector<int> fds_on(pid_t pid, const std::filesystem::path& file) {
  std::vector<int> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec) == file) out.push_back(std::stoi(e.path().filename().string()));
  }
  return out;
}

std::size_t open_fd_count(pid_t pid) {
  const std::filesystem::directory_iterator fds("/proc/" + std::to_string(pid) + "/fd");
  return static_cast<std::size_t>(std::distance(begin(fds), end(fds)));
}

}  // namespace

TEST_CASE("an upgrade under a descriptor limit the running master fits carries on, and the log file stays its own",
          "[upgrade]") {
  // The new image adopts running workers whose descriptors are open already: the start-up
  // check that the limit holds every worker must not count them twice and take the whole
  // pool down (the master exited with master.start_failed). And the log file is opened
  // close-on-exec: each upgrade used to leave the new image one more descriptor on it.
  UpgradeMaster m(supervisor_section("log_file = \"master.log\"") + hello_pool("web", 4) +
                  hello_pool("ka", 2, "keepalive = \"master\"\n"));
  const auto ready = [&] {
    const json s = m.status();
    return s.is_object() && s.contains("pools") && pool_in(s, "web")["ready"] == 4 && pool_in(s, "ka")["ready"] == 2;
  };
  REQUIRE(wait_until(ready, 30s));
  const pid_t pid = m.process->pid();
  const std::filesystem::path log = std::filesystem::canonical(m.dir / "master.log");
  auto on_log = fds_on(pid, log);
  REQUIRE(on_log.size() == 1);
  CHECK((fd_flags(pid, on_log[0]).value_or(0) & O_CLOEXEC) != 0);

  const rlim_t limit = open_fd_count(pid) + 20;  // room to run, not for every worker again
  const rlimit tight{limit, limit};
  REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &tight, nullptr) == 0);
  const std::set<pid_t> workers = all_pids(pool_in(m.status(), "web"));
  const std::string addr = pool_in(m.status(), "web")["listeners"][0].get<std::string>().substr(6);
  for (unsigned n = 1; n <= 2; ++n) {
    m.install_new_build();
    const RunResult r = m.ctl({"upgrade"});
    INFO(r.describe() << forkpool::test::detail::slurp(m.dir / "master.log"));
    REQUIRE(r.exit_code == 0);
    REQUIRE(m.upgrades() == n);
    CHECK(m.process->pid() == pid);
    CHECK(all_pids(pool_in(m.status(), "web")) == workers);
    CHECK(hello_answers(addr));
    CHECK(fds_on(pid, log).size() == 1);
  }
}

TEST_CASE("a worker killed while the master upgrades is reaped and replaced by the new image",
          "[upgrade]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2, "restart_delay = \"50ms\"\n"));
  REQUIRE(m.ready());
  const std::string addr = m.process->wait_listen_address("web");
  const std::map<unsigned, pid_t> before = serving_pids(pool_in(m.status(), "web"));
  REQUIRE(before.size() == 2);
  m.install_new_build();
  // The old image is busy with the pre-flight when the worker dies: its SIGCHLD is never
  // handled there, so only the new image's waitid finds the exit.
  m.process->signal(SIGUSR2);
  ::kill(before.at(0), SIGKILL);
  REQUIRE(m.wait_upgrades(1));
  REQUIRE(wait_until([&] {
    const json p = pool_in(m.status(), "web");
    const auto now = serving_pids(p);
    return settled(p, 2) && now.size() == 2 && now.at(0) != before.at(0) &&
           now.at(1) == before.at(1);
  }));
  CHECK(m.process->all_matches("(pid " + std::to_string(before.at(0)) + " exited on signal 9)")
            .size() == 1);
  CHECK(hello_answers(addr));
  const json c = pool_in(m.status(), "web")["counters"];
  CHECK(c["spawned"] == 3);
  CHECK(c["crashed"] == 1);
}

TEST_CASE("under systemd an upgrade sends RELOADING=1, then READY=1 from the new image",
          "[upgrade][systemd]") {
  TempDir notify_dir;
  FakeSystemd systemd(notify_dir / "notify");
  REQUIRE(systemd.bound());
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2), {}, {systemd.env()});
  REQUIRE(systemd.until("READY=1").back() == "READY=1");
  m.install_new_build();
  m.process->signal(SIGUSR2);
  const auto to_reloading = systemd.until("RELOADING=1", 30s);
  REQUIRE(to_reloading.back().find("RELOADING=1") != std::string::npos);
  for (const auto& d : to_reloading) CHECK(d != "READY=1");
  REQUIRE(systemd.until("READY=1", 30s).back() == "READY=1");
  // READY=1 came from the new image, once it had taken over.
  CHECK(m.process->all_matches("(\\[master\\.upgraded\\])").size() == 1);
  CHECK(m.upgrades() == 1);
}

TEST_CASE("worker output captured into the log keeps flowing through the new image", "[upgrade]") {
  UpgradeMaster m(supervisor_section() +
                  hello_pool("web", 1, "stderr = \"log\"\nready = \"notify\"\n"));
  REQUIRE(m.ready());
  const pid_t worker = serving_pids(pool_in(m.status(), "web")).at(0);
  m.install_new_build();
  REQUIRE(m.ctl({"upgrade"}).exit_code == 0);
  // What the worker writes on its way out reaches the new image's log through the
  // adopted pipe, with the worker's prefix.
  REQUIRE(m.ctl({"restart", "web"}).exit_code == 0);
  CHECK(!m.process
             ->wait_log("web\\[0\\] stderr: .*forkpool-hello\\[" + std::to_string(worker) +
                            "\\]: end of work",
                        30s)
             .empty());
  REQUIRE(wait_until([&] {
    const json p = pool_in(m.status(), "web");
    return settled(p, 1) && serving_pids(p).at(0) != worker;
  }));
}

TEST_CASE("an upgrade is refused while the config file differs from the running configuration",
          "[upgrade]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2));
  REQUIRE(m.ready());
  replace_file(m.config_path(), supervisor_section() + hello_pool("web", 3));
  m.install_new_build();
  const RunResult r = m.ctl({"upgrade"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("has changed since it was last loaded") != std::string::npos);
  CHECK(m.upgrades() == 0);
}


TEST_CASE("the master as PID 1 of a PID namespace upgrades in place and keeps reaping",
          "[upgrade][pid1]") {
  if (::geteuid() != 0) skip_test("needs root for unshare --pid");
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2, "restart_delay = \"50ms\"\n"),
                  {"unshare", "--pid", "--fork"});
  REQUIRE(!m.process->wait_log("forkpool master pid 1 starting", 30s).empty());
  REQUIRE(m.ready());
  pid_t host_pid = -1;
  REQUIRE(wait_until([&] { return (host_pid = only_child_of(m.process->pid())) > 0; }));
  struct Kill {
    pid_t pid;
    ~Kill() {
      if (pid > 0 && process_alive(pid)) ::kill(pid, SIGKILL);
    }
  } inner{host_pid};
  const std::string addr = m.process->wait_listen_address("web");
  const json first = pool_in(m.status(), "web");
  const std::set<pid_t> workers = all_pids(first);

  m.install_new_build();
  const RunResult r = m.ctl({"upgrade"});
  INFO(r.out << r.err << m.process->log());
  REQUIRE(r.exit_code == 0);
  const json s = m.status();
  CHECK(s["master"]["pid"] == 1);
  CHECK(runs_file(host_pid, m.binary()));
  CHECK(all_pids(pool_in(s, "web")) == workers);
  CHECK(hello_answers(addr));

  // Still the reaper: a killed worker is reaped and replaced by the new image.
  const pid_t victim = serving_pids(first).at(0);
  REQUIRE(m.ctl({"kill", "web", "0", "KILL"}).exit_code == 0);
  REQUIRE(wait_until([&] {
    const json p = pool_in(m.status(), "web");
    return settled(p, 2) && all_pids(p).count(victim) == 0;
  }));
  CHECK(m.process->all_matches("(\\[worker\\.exit\\])").size() == 1);
  CHECK(hello_answers(addr));
  CHECK(alarming_log_lines(m.process->log()) == std::vector<std::string>{});
}

TEST_CASE("a dynamic pool keeps its target, bounds and workers across an upgrade", "[upgrade][dynamic]") {
  UpgradeMaster m(supervisor_section() +
                  "[pools.web]\ncommand = [\"" + hello_binary().string() +
                      "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nmin_workers = 1\nmax_workers = 4\nidle_timeout = \"60s\"\n");
  REQUIRE(m.ready());
  {
    auto c = m.client();
    const json up = c.request({{"cmd", "scale"}, {"pool", "web"}, {"workers", 3}});
    REQUIRE(up.value("ok", false));
  }
  REQUIRE(wait_until([&] { return settled(pool_in(m.status(), "web"), 3); }, 30s));
  const json before = pool_in(m.status(), "web");
  const std::set<pid_t> workers = all_pids(before);
  REQUIRE(workers.size() == 3);
  m.install_new_build();
  REQUIRE(m.ctl({"upgrade"}).exit_code == 0);
  const json after = pool_in(m.status(), "web");
  CHECK(after["target"] == 3);
  CHECK(after["dynamic"] == true);
  CHECK(after["min_workers"] == 1);
  CHECK(after["max_workers"] == 4);
  CHECK(after["last_scale"] == before["last_scale"]);
  CHECK(all_pids(after) == workers);
}

// A binary upgrade in the middle of a reload that switched a pool's dispatch: each adopted
// worker keeps the dispatch it runs (the old shared ones were taken for master-dispatch
// workers and sent connections they never read), and a drain under way goes on (its
// worker was adopted as retiring and never stopped, and the parked connections were lost).
TEST_CASE("an upgrade halfway through a switch to master dispatch leaves the old shared workers accepting",
          "[upgrade][dispatch]") {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2, "dispatch = \"shared\"\n", "tcp://" + addr));
  REQUIRE(m.ready());
  REQUIRE(wait_until([&] { return settled(pool_in(m.status(), "web"), 2); }));
  const auto gate = m.dir / "gate";
  replace_file(m.config_path(), supervisor_section() + "[pools.web]\ncommand = [\"/bin/sh\", \"-c\", \"while [ ! -e " +
                                    gate.string() + " ]; do sleep 0.02; done; exec " + hello_binary().string() +
                                    "\"]\nlisten = [\"tcp://" + addr + "\"]\nworkers = 2\ndispatch = \"master\"\n\n");
  REQUIRE(m.ctl({"reload", "--no-wait"}).exit_code == 0);
  REQUIRE(wait_until([&] { return pool_in(m.status(), "web")["workers"].size() == 3; }));
  m.install_new_build();
  REQUIRE(m.ctl({"upgrade"}).exit_code == 0);
  REQUIRE(m.wait_upgrades(1));
  for (int i = 0; i < 6; ++i) {
    const auto r = http_get(addr, "/", 20s);
    REQUIRE(r.has_value());
    CHECK(r->status == 200);
  }
  CHECK(pool_in(m.status(), "web")["counters"]["accepted"] == 0);
  replace_file(gate, "");
  REQUIRE(wait_until([&] { return settled(pool_in(m.status(), "web"), 2); }, 60s));
  const auto r = http_get(addr, "/", 20s);
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
}

TEST_CASE("an upgrade during the drain of a switch to shared dispatch serves the parked connection and ends the drain",
          "[upgrade][dispatch]") {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  const std::string times = "graceful_timeout = \"20s\"\n";
  UpgradeMaster m(supervisor_section() +
                  hello_pool("web", 1, "dispatch = \"master\"\nkeepalive = \"master\"\nkeepalive_timeout = \"0\"\n" + times,
                             "tcp://" + addr));
  REQUIRE(m.ready());
  REQUIRE(wait_until([&] { return settled(pool_in(m.status(), "web"), 1); }));
  HttpConnection parked(addr, 20s);
  REQUIRE(parked.request("GET", "/"));
  REQUIRE(parked.read_response().has_value());
  REQUIRE(wait_until([&] { return pool_in(m.status(), "web")["counters"].value("parked_now", 0) == 1; }));

  replace_file(m.config_path(), supervisor_section() + hello_pool("web", 1, "dispatch = \"shared\"\n" + times, "tcp://" + addr));
  REQUIRE(m.ctl({"reload", "--no-wait"}).exit_code == 0);
  // The old worker stays for the parked connection (retiring, not stopping).
  REQUIRE(wait_until([&] {
    const json p = pool_in(m.status(), "web");
    for (const auto& w : p["workers"])
      if (w["role"] == "retiring" && w["state"] != "stopping") return true;
    return false;
  }));
  m.install_new_build();
  REQUIRE(m.ctl({"upgrade"}).exit_code == 0);
  REQUIRE(m.wait_upgrades(1));
  REQUIRE(parked.request("GET", "/"));
  const auto again = parked.read_response();
  REQUIRE(again.has_value());
  CHECK(again->status == 200);
  CHECK(parked.closed_by_peer());
  // Then the drain ends, long before graceful_timeout.
  REQUIRE(wait_until([&] { return settled(pool_in(m.status(), "web"), 1); }, 15s));
  CHECK(m.process->all_matches("worker\\.drained").size() == 1);
}

// The image before the upgrade made the listener non-blocking for master dispatch; the new
// one must still give it back blocking when the pool goes to shared dispatch, or a
// program that accepts in blocking mode fails at its first accept (EAGAIN).
TEST_CASE("after an upgrade, a switch to shared dispatch gives a blocking server its listener blocking",
          "[upgrade][dispatch]") {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1, "", "tcp://" + addr));
  REQUIRE(m.ready());
  REQUIRE(wait_until([&] { return settled(pool_in(m.status(), "web"), 1); }));
  m.install_new_build();
  REQUIRE(m.ctl({"upgrade"}).exit_code == 0);
  REQUIRE(m.wait_upgrades(1));
  replace_file(m.config_path(), supervisor_section() + "[pools.web]\ncommand = [\"python3\", \"-c\", " +
                                    json(kBlockingServer).dump() + "]\nlisten = [\"tcp://" + addr +
                                    "\"]\nworkers = 1\ndispatch = \"shared\"\n\n");
  REQUIRE(m.ctl({"reload"}).exit_code == 0);
  REQUIRE(wait_until([&] { return settled(pool_in(m.status(), "web"), 1); }, 60s));
  for (int i = 0; i < 3; ++i) {
    const auto r = http_get(addr, "/", 20s);
    REQUIRE(r.has_value());
    CHECK(r->body == kHelloBody);
  }
  CHECK(pool_in(m.status(), "web")["counters"]["crashed"] == 0);
}

TEST_CASE("a TERM or TTIN sent together with USR2 is handled by the new image, not lost", "[upgrade][signals]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1));
  REQUIRE(m.ready());
  m.install_new_build();
  // Both before the master reads either: the upgrade re-executes it with TTIN pending.
  m.process->signal(SIGTTIN);
  m.process->signal(SIGUSR2);
  REQUIRE(m.wait_upgrades(1));
  CHECK(wait_until([&] { return pool_in(m.status(), "web").value("target", 0) == 2; }, 30s));
  m.process->signal(SIGUSR2);
  m.process->signal(SIGTERM);
  const auto code = m.process->wait_exit(60s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(m.process->all_matches("(\\[master.stop\\] graceful shutdown)").size() == 1);
}

namespace {

// Kills the serving worker `worker` of `pool` with SIGKILL and waits for its replacement;
// returns the replacement's pid (0 if none came).
pid_t crash_and_wait(UpgradeMaster& m, const std::string& pool, unsigned worker) {
  const pid_t old = serving_pids(pool_in(m.status(), pool)).at(worker);
  ::kill(old, SIGKILL);
  pid_t now = 0;
  wait_until([&] {
    const auto pids = serving_pids(pool_in(m.status(), pool));
    const auto it = pids.find(worker);
    now = it != pids.end() && it->second != old ? it->second : 0;
    return now != 0;
  }, 30s);
  return now;
}

double restarts_metric(UpgradeMaster& m, const std::string& pool, unsigned worker) {
  auto c = m.client();
  const json reply = c.request({{"cmd", "metrics"}});
  if (!is_ok(reply)) return -1;
  const auto samples = prometheus_samples(reply["text"].get<std::string>());
  const auto it = samples.find("forkpool_worker_restarts_total{pool=\"" + pool + "\",worker=\"" +
                               std::to_string(worker) + "\"}");
  return it == samples.end() ? -1 : it->second;
}

std::uint64_t restarts_of(const json& pool, unsigned worker) {
  for (const auto& w : pool["workers"])
    if (w["role"] == "serving" && w["worker"] == worker) return w.value("restarts", std::uint64_t{0});
  return 0;
}

}  // namespace

TEST_CASE("a worker slot's restart count goes on across an upgrade and counts the next restart",
          "[upgrade][state]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 2, "restart_delay = \"10ms\"\n"));
  REQUIRE(m.ready());
  REQUIRE(settled(pool_in(m.status(), "web"), 2));
  REQUIRE(crash_and_wait(m, "web", 0) != 0);
  REQUIRE(crash_and_wait(m, "web", 0) != 0);
  REQUIRE(restarts_of(pool_in(m.status(), "web"), 0) == 2);
  REQUIRE(restarts_metric(m, "web", 0) == 2);
  m.install_new_build();
  const RunResult r = m.ctl({"upgrade"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(restarts_of(pool_in(m.status(), "web"), 0) == 2);
  CHECK(restarts_of(pool_in(m.status(), "web"), 1) == 0);
  // A Prometheus counter never goes backwards.
  CHECK(restarts_metric(m, "web", 0) == 2);
  REQUIRE(crash_and_wait(m, "web", 0) != 0);
  CHECK(restarts_of(pool_in(m.status(), "web"), 0) == 3);
  CHECK(restarts_metric(m, "web", 0) == 3);
  REQUIRE(crash_and_wait(m, "web", 1) != 0);
  CHECK(restarts_of(pool_in(m.status(), "web"), 1) == 1);
}

TEST_CASE("a pool failed by exit 78 keeps its failed reason across an upgrade", "[upgrade][state]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1) +
                  "[pools.bad]\ncommand = [\"" + testworker_binary().string() +
                      "\", \"--exit\", \"78\"]\nworkers = 1\nrestart_delay = \"10ms\"\n");
  REQUIRE(!m.process->wait_log("pool bad failed: worker 0 exited with status 78 \\(EX_CONFIG\\)", 30s).empty());
  REQUIRE(m.ready());
  const json before = pool_in(m.status(), "bad");
  REQUIRE(before["state"] == "failed");
  const std::string reason = before.value("failed_reason", "");
  REQUIRE_THAT(reason, Catch::Contains("exited with status 78"));
  m.install_new_build();
  const RunResult r = m.ctl({"upgrade"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  const json after = pool_in(m.status(), "bad");
  CHECK(after["state"] == "failed");
  CHECK(after["failed_reason"] == reason);
  const RunResult text = m.ctl({"status", "bad"});
  INFO(text.out);
  CHECK_THAT(text.out, Catch::Contains("failed    " + reason.substr(0, 40)));
}

TEST_CASE("crashes before an upgrade still count towards flap_restarts after it", "[upgrade][state][flap]") {
  UpgradeMaster m(supervisor_section() +
                  hello_pool("web", 1, "restart_delay = \"10ms\"\nflap_restarts = 3\nflap_window = \"5m\"\n"));
  REQUIRE(m.ready());
  REQUIRE(settled(pool_in(m.status(), "web"), 1));
  for (int i = 0; i < 3; ++i) REQUIRE(crash_and_wait(m, "web", 0) != 0);
  REQUIRE(pool_in(m.status(), "web")["state"] == "running");
  m.install_new_build();
  const RunResult r = m.ctl({"upgrade"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  // The fourth crash within flap_window is one more than flap_restarts: the pool fails.
  const pid_t pid = serving_pids(pool_in(m.status(), "web")).at(0);
  ::kill(pid, SIGKILL);
  CHECK(!m.process->wait_log("pool web failed: 4 unplanned exits within flap_window", 30s).empty());
  CHECK(wait_until([&] { return pool_in(m.status(), "web")["state"] == "failed"; }, 30s));
}

TEST_CASE("after an upgrade the master still removes only its own unix: listener file",
          "[upgrade][unix]") {
  TempDir other;
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1, "", "unix:web.sock"));
  REQUIRE(m.ready());
  const auto sock = m.dir / "web.sock";
  // The file moved away and the path bound by another master before the upgrade: the new
  // image must know the file by what the old one bound, not by what the path names now.
  std::filesystem::rename(sock, m.dir / "web.sock.a");
  write_file(other / "b.toml", supervisor_section() + hello_pool("web", 1, "", "unix:" + sock.string()));
  MasterProcess b(other / "b.toml");
  REQUIRE(!b.wait_log("\\[master.ready\\]", 30s).empty());
  m.install_new_build();
  const RunResult r = m.ctl({"upgrade"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  m.process->signal(SIGTERM);
  REQUIRE(m.process->wait_exit(30s).has_value());
  CHECK(std::filesystem::is_socket(sock));
  CHECK(hello_answers("unix:" + sock.string()));
  b.signal(SIGTERM);
  REQUIRE(b.wait_exit(30s).has_value());
  CHECK_FALSE(std::filesystem::exists(sock));
}

TEST_CASE("after an upgrade the master still removes only its own control socket file", "[upgrade][control]") {
  TempDir other;
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1));
  REQUIRE(m.ready());
  // Moved away and bound again by another master before the upgrade: the new image must
  // know the file by what the first one bound, not by what the path names now.
  std::filesystem::rename(m.socket(), m.dir / "ctl.sock.a");
  write_file(other / "b.toml", "[supervisor]\ncontrol_socket = \"" + m.socket().string() + "\"\n\n" +
                                   hello_pool("web", 1));
  MasterProcess b(other / "b.toml");
  REQUIRE(!b.wait_log("\\[master.ready\\]", 30s).empty());
  m.install_new_build();
  m.process->signal(SIGUSR2);
  REQUIRE(!m.process->wait_log("\\[master.upgraded\\]", 30s).empty());
  m.process->signal(SIGTERM);
  REQUIRE(m.process->wait_exit(30s).has_value());
  REQUIRE(std::filesystem::is_socket(m.socket()));
  ControlClient c(m.socket(), 10s);
  REQUIRE(c.connected());
  CHECK(c.request({{"cmd", "status"}}, 5s)["master"]["pid"] == b.pid());
  b.signal(SIGTERM);
  REQUIRE(b.wait_exit(30s).has_value());
}

TEST_CASE("a worker still starting at the upgrade keeps its ready_timeout in the new image", "[upgrade]") {
  UpgradeMaster m(supervisor_section() + hello_pool("web", 1));
  REQUIRE(m.ready());
  // A reload to a program that never says READY (protocol readiness): its replacement
  // starts and waits; the old worker serves on.
  replace_file(m.config_path(), supervisor_section() + "[pools.web]\ncommand = [\"/bin/sleep\", \"1000\"]\n"
                                          "listen = [\"tcp://127.0.0.1:0\"]\nworkers = 1\nready_timeout = \"3s\"\n");
  REQUIRE(m.ctl({"--no-wait", "reload"}).exit_code == 0);
  REQUIRE(wait_until([&] { return m.process->all_matches("(worker web\\[0\\] pid [0-9]+ started)").size() >= 2; },
                     30s));
  m.install_new_build();
  m.process->signal(SIGUSR2);
  REQUIRE(m.wait_upgrades(1));
  CHECK(!m.process->wait_log("did not become ready within ready_timeout 3", 30s).empty());
}
