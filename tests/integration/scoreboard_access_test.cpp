// SPDX-License-Identifier: Apache-2.0
// The scoreboard descriptors the master hands to readers (forkpoolctl top) are read-only,
// and must stay so for whoever holds them: a reader of another uid (a control_group
// member) must not reopen them read-write through /proc/self/fd/N and scribble over every
// counter and worker page.

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "ctl/client.hpp"
#include "support/master_process.hpp"
#include "support/temp_dir.hpp"
#include "support/skip.hpp"

using namespace forkpool::test;
using namespace std::chrono_literals;

namespace {

// Bits of the child's exit code: what another uid managed to do with a read-only fd.
constexpr int kReopenedWritable = 1;
constexpr int kMappedWritable = 2;
constexpr int kChangedMode = 4;
constexpr int kCouldNotDropRoot = 64;

// In a forked child: become `uid`/`gid`, then try every way to write through `fds`.
// Returns the exit code (the child never asserts).
int try_to_write_as(uid_t uid, gid_t gid, const std::vector<int>& fds) {
  if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0)
    return kCouldNotDropRoot;
  int result = 0;
  for (int fd : fds) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const int rw = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (rw >= 0) {
      result |= kReopenedWritable;
      ::close(rw);
    }
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      result |= kMappedWritable;
      ::munmap(p, 4096);
    }
    if (::fchmod(fd, 0666) == 0) result |= kChangedMode;
  }
  return result;
}

}  // namespace

TEST_CASE("scoreboard descriptors cannot be reopened read-write by a reader of another uid",
          "[scoreboard][access]") {
  const passwd* nobody = ::getpwnam("nobody");
  const group* nogroup = ::getgrnam("nogroup");
  if (::geteuid() != 0 || nobody == nullptr || nogroup == nullptr) {
    skip_test("needs root, a user nobody and a group nogroup");
  }
  TempDir dir;
  write_file(dir / "f.toml",
             "[supervisor]\ncontrol_socket = \"ctl.sock\"\n\n[pools.web]\ncommand = [\"" +
                 hello_binary().string() + "\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = 2\n");
  MasterProcess master(dir / "f.toml");
  REQUIRE(!master.wait_log("\\[master.ready\\]").empty());

  auto client = forkpool::ctl::Client::connect((dir / "ctl.sock").string(), 10s);
  auto sb = forkpool::ctl::fetch_scoreboard(client, 10s);
  REQUIRE(sb.region);
  REQUIRE(sb.slots.size() >= 2);
  std::vector<int> fds = {sb.region.get()};
  for (const auto& s : sb.slots) fds.push_back(s.get());

  // Nobody but the master's user may open them at all: the region is read-only even to
  // it (the master keeps its own read-write descriptor), a slot page is its alone.
  struct stat st {};
  REQUIRE(::fstat(sb.region.get(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0400);
  CHECK(st.st_uid == ::geteuid());
  for (const auto& s : sb.slots) {
    REQUIRE(::fstat(s.get(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
  }
  // Their size is sealed, and so are the seals.
  for (int fd : fds) {
    const int seals = ::fcntl(fd, F_GET_SEALS);
    CHECK((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
          (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
  }

  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(try_to_write_as(nobody->pw_uid, nogroup->gr_gid, fds));
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  const int code = WEXITSTATUS(status);
  INFO("child exit code " << code);
  CHECK((code & kCouldNotDropRoot) == 0);
  CHECK((code & kReopenedWritable) == 0);
  CHECK((code & kMappedWritable) == 0);
  CHECK((code & kChangedMode) == 0);
}
