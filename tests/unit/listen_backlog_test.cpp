// SPDX-License-Identifier: Apache-2.0
// listen_backlog on real listening sockets: TCP (TCP_INFO) and Unix (sock_diag UNIX_DIAG).

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "supervisor/dispatch/listen_backlog.hpp"
#include "support/temp_dir.hpp"

using forkpool::supervisor::listen_backlog;

namespace {

struct Fds {
  std::vector<int> fds;
  ~Fds() {
    for (int fd : fds) ::close(fd);
  }
  int add(int fd) {
    REQUIRE(fd >= 0);
    fds.push_back(fd);
    return fd;
  }
};

}  // namespace

TEST_CASE("listen_backlog counts the connections waiting on a TCP listener", "[backlog]") {
  Fds f;
  const int l = f.add(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  CHECK_FALSE(listen_backlog(l).has_value());  // not listening yet
  REQUIRE(::listen(l, 16) == 0);
  CHECK(listen_backlog(l) == std::optional<std::uint32_t>(0));
  for (int i = 0; i < 3; ++i) {
    const int c = f.add(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  CHECK(listen_backlog(l) == std::optional<std::uint32_t>(3));
  f.add(::accept4(l, nullptr, nullptr, SOCK_CLOEXEC));
  CHECK(listen_backlog(l) == std::optional<std::uint32_t>(2));
}

TEST_CASE("listen_backlog counts the connections waiting on a Unix listener", "[backlog]") {
  forkpool::test::TempDir dir;
  Fds f;
  const int l = f.add(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string path = (dir / "l.sock").string();
  REQUIRE(path.size() < sizeof a.sun_path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(l, 16) == 0);
  CHECK(listen_backlog(l) == std::optional<std::uint32_t>(0));
  for (int i = 0; i < 2; ++i) {
    const int c = f.add(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  CHECK(listen_backlog(l) == std::optional<std::uint32_t>(2));
}

TEST_CASE("listen_backlog has no answer for what is not a listening socket", "[backlog]") {
  Fds f;
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  f.add(p[0]);
  f.add(p[1]);
  CHECK_FALSE(listen_backlog(p[0]).has_value());
  const int s = f.add(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHECK_FALSE(listen_backlog(s).has_value());
}
