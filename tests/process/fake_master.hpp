// SPDX-License-Identifier: Apache-2.0
#pragma once
// A stand-in for forkpool's master in process tests of the worker side: the channel
// socketpair, a real scoreboard with one slot, a TCP listener to make connections with,
// and one child worker (forked, or exec'd) it talks to with raw protocol records.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shm/scoreboard.hpp"
#include "worker/protocol.h"

namespace forkpool::test {

class FakeMaster {
 public:
  // Where the exec'd child finds its descriptors.
  static constexpr int kChildChannelFd = 50;
  static constexpr int kChildScoreboardFd = 51;

  FakeMaster() : scoreboard_(1, 1) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) std::abort();
    master_ = pair[0];
    worker_ = pair[1];
    scoreboard_.assign_slot(0, 0, 0);
    if (scoreboard_.start_worker(0, 1)) std::abort();
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 64) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      std::abort();
    port_ = ntohs(a.sin_port);
  }
  ~FakeMaster() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    close_master();
    if (worker_ >= 0) ::close(worker_);
    ::close(listener_);
  }
  FakeMaster(const FakeMaster&) = delete;
  FakeMaster& operator=(const FakeMaster&) = delete;

  shm::Scoreboard& scoreboard() { return scoreboard_; }
  int master_fd() const { return master_; }
  std::string listen_address() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

  // The environment a worker gets, pointing at `channel` and `scoreboard`.
  std::vector<std::pair<std::string, std::string>> environment(int channel, int scoreboard) const {
    return {{"FORKPOOL_PROTOCOL", "1"},
            {"FORKPOOL_POOL", "web"},
            {"FORKPOOL_WORKER", "0"},
            {"FORKPOOL_GENERATION", "1"},
            {"FORKPOOL_CHANNEL_FD", std::to_string(channel)},
            {"FORKPOOL_SCOREBOARD_FD", std::to_string(scoreboard)},
            {"FORKPOOL_LISTENERS", listen_address() + " unix:/tmp/forkpool-test.sock"}};
  }

  // Forks a child that sets the environment and exits with body()'s result. The child
  // never returns into the test.
  template <typename Body>
  void fork_worker(Body&& body, std::vector<std::pair<std::string, std::string>> extra_env = {}) {
    start_slot();
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      ::close(master_);
      for (const auto& [k, v] : environment(worker_, scoreboard_.slot_fd(0)))
        ::setenv(k.c_str(), v.c_str(), 1);
      for (const auto& [k, v] : extra_env) ::setenv(k.c_str(), v.c_str(), 1);
      ::_exit(body());
    }
    ::close(worker_);
    worker_ = -1;
  }

  // Forks and execs argv with the descriptors at kChildChannelFd and kChildScoreboardFd.
  void exec_worker(const std::vector<std::string>& argv,
                   std::vector<std::pair<std::string, std::string>> extra_env = {}) {
    start_slot();
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "FORKPOOL_", 9) != 0 && std::strncmp(*e, "LISTEN_", 7) != 0)
        env_storage.emplace_back(*e);
    }
    for (const auto& [k, v] : environment(kChildChannelFd, kChildScoreboardFd))
      env_storage.push_back(k + "=" + v);
    for (const auto& [k, v] : extra_env) env_storage.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& s : env_storage) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_storage = argv;
    for (auto& s : argv_storage) args.push_back(s.data());
    args.push_back(nullptr);
    const int slot_fd = scoreboard_.slot_fd(0);
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      // dup2 clears close-on-exec on the copies, which are what the worker inherits.
      if (::dup2(worker_, kChildChannelFd) < 0 || ::dup2(slot_fd, kChildScoreboardFd) < 0)
        ::_exit(126);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    ::close(worker_);
    worker_ = -1;
  }

  pid_t pid() const { return pid_; }

  // One record from the worker within `timeout`, any descriptors closed; nullopt on
  // timeout, EOF or a malformed record.
  std::optional<fp_msg> receive(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    pollfd p{master_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    fp_msg m{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{&m, sizeof m};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(master_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        ::close(fd);
      }
    }
    if (n != static_cast<ssize_t>(sizeof m)) return std::nullopt;
    return m;
  }

  // Sends `size` bytes of a record (16 normally) with `fds` attached.
  bool send(std::uint16_t type, std::uint16_t arg, std::uint64_t id,
            const std::vector<int>& fds = {}, std::size_t size = sizeof(fp_msg), std::uint32_t reserved = 0) {
    unsigned char buf[64] = {};
    fp_msg m{type, arg, reserved, id};
    std::memcpy(buf, &m, sizeof m);
    iovec iov{buf, size};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
    if (!fds.empty()) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    return ::sendmsg(master_, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(size);
  }

  // A client connected to the listener, and the master's accepted end of it.
  std::pair<int, int> connect_pair() {
    const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port_);
    if (::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::abort();
    const int accepted = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) std::abort();
    return {client, accepted};
  }

  // Passes a new connection as CONN `id` and returns the client's end.
  // `reserved`: the record's FP_FD_* flags (the descriptor itself is blocking).
  int pass_connection(std::uint64_t id, std::uint16_t listener = 0, std::uint32_t reserved = 0) {
    auto [client, accepted] = connect_pair();
    const bool ok = send(FP_MSG_CONN, listener, id, {accepted}, sizeof(fp_msg), reserved);
    ::close(accepted);  // the worker holds it now; the master keeps no copy
    if (!ok) std::abort();
    return client;
  }

  void close_master() {
    if (master_ >= 0) ::close(master_);
    master_ = -1;
  }

  // The child's raw wait status, or -1 if it did not exit in time (it is killed then).
  int wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < end) {
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return -1;
  }

 private:
  void start_slot() { scoreboard_.set_pid(0, 1, shm::monotonic_ns()); }

  shm::Scoreboard scoreboard_;
  int master_ = -1;
  int worker_ = -1;
  int listener_ = -1;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Writes `text` and reads until `expect_bytes` arrive or EOF/timeout; returns what came.
inline std::string exchange(int fd, const std::string& text, std::size_t expect_bytes,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  if (!text.empty() &&
      ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size()))
    return "";
  std::string got;
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (got.size() < expect_bytes && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) != 1) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

}  // namespace forkpool::test

namespace forkpool::test {

// The worker updates its slot before it sends DONE, but a DONE from an event loop may
// overtake nothing else; still, poll briefly rather than assume.
inline bool wait_until_handled(shm::Scoreboard& sb, std::uint64_t n) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < end) {
    if (sb.read_worker(0).connections_handled >= n)
      return sb.read_worker(0).connections_handled == n;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

}  // namespace forkpool::test
