// SPDX-License-Identifier: Apache-2.0
// supervisor/systemd_protocol: the parts of sd_notify(3), sd_listen_fds(3) and
// sd_watchdog_enabled(3) the master speaks without libsystemd. (The master under a fake
// systemd and under systemd-socket-activate: tests/integration.)

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <string>

#include "supervisor/systemd_protocol.hpp"

namespace sd = forkpool::supervisor::systemd;

namespace {

std::string self() { return std::to_string(::getpid()); }

bool unset(const char* name) { return std::getenv(name) == nullptr; }

// A datagram socket bound in the abstract namespace, as "@name" in NOTIFY_SOCKET.
struct AbstractReceiver {
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::string name = "forkpool-test-notify-" + self();
  AbstractReceiver() {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())) == 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~AbstractReceiver() { ::close(fd); }
  std::string receive() {
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
};

}  // namespace

TEST_CASE("systemd notify reaches an abstract NOTIFY_SOCKET and refuses a missing or relative one",
          "[supervisor][systemd]") {
  AbstractReceiver r;
  ::setenv("NOTIFY_SOCKET", ("@" + r.name).c_str(), 1);
  CHECK(sd::notify("READY=1\nSTATUS=hello"));
  CHECK(r.receive() == "READY=1\nSTATUS=hello");
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  CHECK_FALSE(sd::notify("READY=1"));
  ::unsetenv("NOTIFY_SOCKET");
  CHECK_FALSE(sd::notify("READY=1"));
}

TEST_CASE("systemd listen fds are taken only when LISTEN_PID is ours and the variables are removed either way",
          "[supervisor][systemd]") {
  SECTION("ours") {
    ::setenv("LISTEN_PID", self().c_str(), 1);
    ::setenv("LISTEN_FDS", "2", 1);
    ::setenv("LISTEN_FDNAMES", "a:b", 1);
    CHECK(sd::take_listen_fds() == 2);
  }
  SECTION("another process's") {
    ::setenv("LISTEN_PID", std::to_string(::getpid() + 1).c_str(), 1);
    ::setenv("LISTEN_FDS", "2", 1);
    CHECK(sd::take_listen_fds() == 0);
  }
  SECTION("not a number") {
    ::setenv("LISTEN_PID", self().c_str(), 1);
    ::setenv("LISTEN_FDS", "2x", 1);
    CHECK(sd::take_listen_fds() == 0);
  }
  CHECK(unset("LISTEN_PID"));
  CHECK(unset("LISTEN_FDS"));
  CHECK(unset("LISTEN_FDNAMES"));
  CHECK(sd::take_listen_fds() == 0);
}

TEST_CASE("systemd watchdog interval is read when WATCHDOG_PID is unset or ours", "[supervisor][systemd]") {
  ::setenv("WATCHDOG_USEC", "400000", 1);
  ::unsetenv("WATCHDOG_PID");
  CHECK(sd::watchdog_usec() == 400000);
  ::setenv("WATCHDOG_PID", self().c_str(), 1);
  CHECK(sd::watchdog_usec() == 400000);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  CHECK(sd::watchdog_usec() == 0);
  ::unsetenv("WATCHDOG_PID");
  ::setenv("WATCHDOG_USEC", "soon", 1);
  CHECK(sd::watchdog_usec() == 0);
  ::unsetenv("WATCHDOG_USEC");
  CHECK(sd::watchdog_usec() == 0);
}
