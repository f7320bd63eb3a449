// SPDX-License-Identifier: Apache-2.0
#pragma once
// systemd's side of sd_notify(3) for tests: a datagram socket the test owns, whose path the
// process under test gets as NOTIFY_SOCKET (env()). Every wait has a deadline.

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace forkpool::test {

class FakeSystemd {
 public:
  explicit FakeSystemd(const std::filesystem::path& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~FakeSystemd() {
    if (fd_ >= 0) ::close(fd_);
  }
  FakeSystemd(const FakeSystemd&) = delete;
  FakeSystemd& operator=(const FakeSystemd&) = delete;

  // False when the socket could not be made (check it before use).
  bool bound() const { return bound_; }

  // The next datagram, or "" when none arrives before the deadline.
  std::string next(std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    timeval tv{};
    tv.tv_sec = deadline.count() / 1000;
    tv.tv_usec = (deadline.count() % 1000) * 1000;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }

  // Reads datagrams until one contains `needle`; returns everything read on the way (the
  // last one is the match, or "<no NEEDLE>" when the deadline passed first).
  std::vector<std::string> until(const std::string& needle,
                                 std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
    std::vector<std::string> seen;
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < end) {
      std::string m = next(std::chrono::duration_cast<std::chrono::milliseconds>(
                               end - std::chrono::steady_clock::now()) +
                           std::chrono::milliseconds(1));
      if (m.empty()) break;
      seen.push_back(m);
      if (m.find(needle) != std::string::npos) return seen;
    }
    seen.push_back("<no " + needle + ">");
    return seen;
  }

  std::string env() const { return "NOTIFY_SOCKET=" + path_.string(); }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool bound_ = false;
};

}  // namespace forkpool::test
