// SPDX-License-Identifier: Apache-2.0
// Issue 10, defect 3: processes a worker forks must not outlive it, nor the master: a
// shared-mode grandchild that inherited the listener would keep the port.

#include <signal.h>

#include "integration/test_common.hpp"

using namespace forkpool::test;
using namespace forkpool::test::reliability;
namespace fs = std::filesystem;

namespace {

std::string shared_orphan_config(const fs::path& orphan_file, int port, const std::string& extra = "") {
  return supervisor_section() +
         testworker_pool("web", 1, ", \"--orphan\", " + quoted(orphan_file.string()),
                         "dispatch = \"shared\"\nlisten = [\"tcp://127.0.0.1:" + std::to_string(port) +
                             "\"]\nrestart_delay = \"20ms\"\n" + extra);
}

// The grandchild's pid once a worker newer than `not_this` wrote it.
pid_t wait_grandchild(const fs::path& file, pid_t not_this) {
  pid_t pid = 0;
  wait_until([&] {
    pid = read_pid(file);
    return pid > 0 && pid != not_this && process_alive(pid);
  });
  return pid;
}

}  // namespace

TEST_CASE("a worker's grandchild goes with it when it is killed and when it stops cleanly, and frees the port",
          "[supervisor][orphan]") {
  TempDir dir;
  const fs::path orphan_file = dir / "grandchild.pid";
  const int port = free_port();
  Setup s(shared_orphan_config(orphan_file, port));
  const pid_t first_worker = s.master->wait_worker_started("web", 0);
  REQUIRE(first_worker > 0);
  const pid_t first = wait_grandchild(orphan_file, 0);
  REQUIRE(first > 0);

  // SIGKILL to the worker: its process group goes, so the grandchild too.
  REQUIRE(::kill(first_worker, SIGKILL) == 0);
  CHECK(wait_until([&] { return !process_alive(first); }));
  const pid_t second_worker = s.master->wait_worker_started_after("web", 0, first_worker);
  REQUIRE(second_worker > 0);
  const pid_t second = wait_grandchild(orphan_file, first);
  REQUIRE(second > 0);

  // A clean stop: the worker exits 0 on SIGTERM, its grandchild must not stay behind.
  stop_master(*s.master);
  CHECK(!process_alive(second));

  // Nothing holds the port: the next master binds it.
  write_file(dir / "g.toml", shared_orphan_config(dir / "next.pid", port));
  MasterProcess next(dir / "g.toml");
  CHECK(!next.wait_log("\\[listener.open\\] pool web listens on tcp://127.0.0.1:" + std::to_string(port)).empty());
  CHECK(!next.wait_log("\\[master.ready\\]").empty());
  CHECK(next.all_matches("(Address already in use)").empty());
  stop_master(next);
}

TEST_CASE("a grandchild that left the worker's process group is stopped when the master stops",
          "[supervisor][orphan]") {
  TempDir dir;
  const fs::path orphan_file = dir / "daemon.pid";
  Setup s(supervisor_section() +
          testworker_pool("web", 1, ", \"--detach-orphan\", \"--orphan\", " + quoted(orphan_file.string())));
  const pid_t worker = s.master->wait_worker_started("web", 0);
  REQUIRE(worker > 0);
  const pid_t daemon = wait_grandchild(orphan_file, 0);
  REQUIRE(daemon > 0);
  // Out of the worker's group, it survives the worker; re-parented to the master (a
  // child subreaper), it is the master's to stop.
  REQUIRE(::kill(worker, SIGKILL) == 0);
  REQUIRE(s.master->wait_worker_started_after("web", 0, worker) > 0);
  CHECK(process_alive(daemon));
  stop_master(*s.master);
  CHECK(!process_alive(daemon));
  CHECK(!s.master->wait_log("\\[orphan.stop\\] stopping [0-9]+ process\\(es\\) that workers left behind").empty());
}
