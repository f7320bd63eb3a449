// SPDX-License-Identifier: Apache-2.0
// Issue 10, defect 3, the kernel-enforced part: with isolate = "pid" each worker is PID 1
// of a PID namespace of its own, so whatever it forks ends with it, even when the master
// is SIGKILLed. Without it, only direct workers die with a SIGKILLed master (the
// documented limit, also shown here). And a real program that forks its own workers,
// gunicorn, in both modes.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "integration/test_common.hpp"
#include "support/http_client.hpp"
#include "support/run_command.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;
namespace fs = std::filesystem;

namespace {

// The "NSpid:" line of /proc/PID/status: the pid in each namespace, outermost first.
std::vector<long> namespace_pids(pid_t pid) {
  std::istringstream status(read_text("/proc/" + std::to_string(pid) + "/status"));
  std::vector<long> pids;
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("NSpid:")) continue;
    std::istringstream values(line.substr(6));
    for (long v; values >> v;) pids.push_back(v);
  }
  return pids;
}

// Nothing listens on 127.0.0.1:port any more: a fresh socket can bind it.
bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

bool all_gone(const std::vector<pid_t>& pids) {
  return std::none_of(pids.begin(), pids.end(), [](pid_t p) { return process_alive(p); });
}

std::string orphan_config(const fs::path& orphan_file, int port, const std::string& isolate,
                          const std::string& more_args = "") {
  return supervisor_section() +
         testworker_pool("web", 1, more_args + ", \"--orphan\", " + quoted(orphan_file.string()),
                         "dispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:" + std::to_string(port) +
                             "\"]\nrestart_delay = \"20ms\"\nisolate = \"" + isolate + "\"\n");
}

// The grandchild fp-testworker --orphan forked, once it has written its file.
pid_t wait_grandchild(const fs::path& file, pid_t worker) {
  pid_t found = 0;
  wait_until([&] {
    if (read_pid(file) <= 0) return false;
    const std::vector<pid_t> children = children_of(worker);
    found = children.empty() ? 0 : children.front();
    return found > 0;
  });
  return found;
}

void kill_master(MasterProcess& master) {
  master.signal(SIGKILL);
  REQUIRE(master.wait_exit(10s).has_value());
}

}  // namespace

TEST_CASE("isolate = pid: a worker's grandchild dies with the master even when the master is SIGKILLed",
          "[supervisor][orphan][isolate]") {
  TempDir dir;
  const fs::path orphan_file = dir / "grandchild.pid";
  const int port = free_port();
  Setup s(orphan_config(orphan_file, port, "pid"));
  const pid_t worker = s.master->wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  const pid_t grandchild = wait_grandchild(orphan_file, worker);
  REQUIRE(grandchild > 0);
  // The worker is PID 1 of its own namespace, its child the second process there.
  CHECK(namespace_pids(worker) == std::vector<long>{worker, 1});
  CHECK(namespace_pids(grandchild) == std::vector<long>{grandchild, 2});
  CHECK(read_pid(orphan_file) == 2);

  kill_master(*s.master);
  // PR_SET_PDEATHSIG ends the worker; the kernel then ends its whole namespace.
  CHECK(wait_until([&] { return !process_alive(worker) && !process_alive(grandchild); }));
  CHECK(wait_until([&] { return port_free(port); }));
}

TEST_CASE("without isolate, a grandchild outlives a SIGKILLed master (the documented limit)",
          "[supervisor][orphan][isolate]") {
  TempDir dir;
  const fs::path orphan_file = dir / "grandchild.pid";
  const int port = free_port();
  Setup s(orphan_config(orphan_file, port, "none"));
  const pid_t worker = s.master->wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  const pid_t grandchild = wait_grandchild(orphan_file, worker);
  REQUIRE(grandchild > 0);
  CHECK(read_pid(orphan_file) == grandchild);  // same namespace as the master

  kill_master(*s.master);
  CHECK(wait_until([&] { return !process_alive(worker); }));
  // Still there, still holding the port: what isolate = "pid" is for.
  CHECK(process_alive(grandchild));
  CHECK(!port_free(port));
  ::kill(grandchild, SIGKILL);
  CHECK(wait_until([&] { return !process_alive(grandchild); }));
}

TEST_CASE("isolate = pid: a grandchild that left the worker's process group goes with the worker at once",
          "[supervisor][orphan][isolate]") {
  TempDir dir;
  const fs::path orphan_file = dir / "daemon.pid";
  Setup s(orphan_config(orphan_file, free_port(), "pid", ", \"--detach-orphan\""));
  const pid_t worker = s.master->wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  const pid_t daemon = wait_grandchild(orphan_file, worker);
  REQUIRE(daemon > 0);
  // Without isolation such a process survives its worker until the master stops
  // (supervisor_orphan_test.cpp); in its own namespace it cannot.
  REQUIRE(::kill(worker, SIGKILL) == 0);
  CHECK(wait_until([&] { return !process_alive(daemon); }));
  const pid_t next = s.master->wait_worker_started_after("web", 0, worker);
  REQUIRE(next > 0);
  CHECK(namespace_pids(next).back() == 1);
  stop_master(*s.master);
}

namespace {

// gunicorn from Debian's python3-gunicorn, serving a WSGI app that answers with its pid.
std::string gunicorn_config(const fs::path& dir, const std::string& isolate) {
  write_file(dir / "app.py",
             "import os\n"
             "def app(environ, start_response):\n"
             "    body = ('gunicorn worker %d\\n' % os.getpid()).encode()\n"
             "    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])\n"
             "    return [body]\n");
  return supervisor_section() + "[pools.wsgi]\ncommand = [\"/usr/bin/python3\", \"-m\", \"gunicorn\", \"--workers\", \"2\", " +
         "\"--chdir\", " + quoted(dir.string()) + ", \"app:app\"]\n" +
         "dispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 1\n"
         "ready = \"notify\"\nready_timeout = \"30s\"\ngraceful_timeout = \"10s\"\n"
         "isolate = \"" + isolate + "\"\n";
}

void require_gunicorn() {
  const RunResult r = run_command({"/usr/bin/python3", "-c", "import gunicorn"}, 20s);
  if (!r.exited || r.exit_code != 0) skip_test("gunicorn is not installed (Debian package python3-gunicorn)");
}

bool serves(const std::string& address) {
  return wait_until([&] {
    const auto r = http_get(address, "/", 5s);
    return r && r->status == 200 && r->body.starts_with("gunicorn worker ");
  }, 30s);
}

// The arbiter once it is ready and has forked its two workers.
std::vector<pid_t> wait_gunicorn_workers(pid_t arbiter) {
  std::vector<pid_t> workers;
  wait_until([&] {
    workers = descendants_of(arbiter);
    return workers.size() >= 2;
  }, 30s);
  return workers;
}

}  // namespace

TEST_CASE("gunicorn, which forks its own workers, runs as a shared pool and leaves nothing behind",
          "[supervisor][orphan][isolate][gunicorn]") {
  require_gunicorn();
  TempDir dir;
  Setup s(gunicorn_config(dir.path(), "none"));
  const std::string address = s.master->wait_listen_address("wsgi");
  REQUIRE(!address.empty());
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  CHECK(!s.master->wait_log("\\[worker.ready\\] worker wsgi\\[0\\]", 30s).empty());
  REQUIRE(serves(address));
  const pid_t arbiter = s.master->wait_worker_started("wsgi", 0);
  const std::vector<pid_t> first = wait_gunicorn_workers(arbiter);
  REQUIRE(first.size() >= 2);

  // The arbiter killed: its workers go with its process group, and a new gunicorn binds
  // the same inherited socket and serves.
  REQUIRE(::kill(arbiter, SIGKILL) == 0);
  CHECK(wait_until([&] { return all_gone(first); }));
  const pid_t second_arbiter = s.master->wait_worker_started_after("wsgi", 0, arbiter);
  REQUIRE(second_arbiter > 0);
  const std::vector<pid_t> second = wait_gunicorn_workers(second_arbiter);
  REQUIRE(second.size() >= 2);
  CHECK(serves(address));

  // A graceful stop: gunicorn gets TERM, and neither it nor its workers stay.
  stop_master(*s.master);
  CHECK(all_gone(second));
  CHECK(!process_alive(second_arbiter));
  CHECK(wait_until([&] { return port_free(port); }));
}

TEST_CASE("gunicorn with isolate = pid: a SIGKILLed master takes gunicorn and its workers along",
          "[supervisor][orphan][isolate][gunicorn]") {
  require_gunicorn();
  TempDir dir;
  Setup s(gunicorn_config(dir.path(), "pid"));
  const std::string address = s.master->wait_listen_address("wsgi");
  REQUIRE(!address.empty());
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  REQUIRE(serves(address));
  const pid_t arbiter = s.master->wait_worker_started("wsgi", 0);
  const std::vector<pid_t> workers = wait_gunicorn_workers(arbiter);
  REQUIRE(workers.size() >= 2);
  CHECK(namespace_pids(arbiter).back() == 1);  // gunicorn's arbiter is its namespace's init

  kill_master(*s.master);
  CHECK(wait_until([&] { return !process_alive(arbiter) && all_gone(workers); }));
  CHECK(wait_until([&] { return port_free(port); }));
}
