// SPDX-License-Identifier: Apache-2.0
#include "ctl/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace forkpool::ctl {

namespace {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;

// The kernel passes at most SCM_MAX_FD (253) descriptors in one message; the master sends
// at most 200. Room for the kernel's limit means a conforming master never sees MSG_CTRUNC.
constexpr std::size_t kMaxFdsPerRead = 253;
constexpr std::size_t kReadChunk = 64 * 1024;

Deadline deadline_for(Timeout t) {
  if (!t) return std::nullopt;
  return Clock::now() + *t;
}

// Milliseconds left for poll(): -1 for no deadline, 0 when passed.
int poll_timeout(const Deadline& d) {
  if (!d) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*d - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<long long>(left.count() + 1, 1 << 30));
}

// Waits until `fd` has `events`; false on timeout.
bool wait_for(int fd, short events, const Deadline& d) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, poll_timeout(d));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // let the following syscall report the error
  }
}

}  // namespace

std::string explain_connect_error(int err) {
  switch (err) {
    case EACCES:
    case EPERM:
      return "permission denied: check the socket's mode/group (control_mode, control_group)";
    case ENOENT:
    case ENOTDIR:
      return "no such file: is the master running? is the path right (-s, FORKPOOL_SOCKET)?";
    case ECONNREFUSED:
      return "connection refused: stale socket, the master is not running";
    case ENOTSOCK:
      return "not a socket: is the path right (-s, FORKPOOL_SOCKET)?";
    default:
      return std::strerror(err);
  }
}

Client Client::connect(const std::string& path, Timeout timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) throw ConnectionError("no control socket path given");
  if (path.size() >= sizeof(addr.sun_path)) {
    throw ConnectionError("cannot connect to " + path + ": path longer than " +
                          std::to_string(sizeof(addr.sun_path) - 1) +
                          " bytes; use a shorter control_socket or a relative -s path");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  shm::OwnedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throw ConnectionError(std::string("socket(AF_UNIX): ") + std::strerror(errno));
  const Deadline deadline = deadline_for(timeout);
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) break;
    const int err = errno;
    if (err == EINTR) continue;
    // A full listen backlog: the master is alive but busy; retry until the deadline.
    if (err == EAGAIN && (!deadline || Clock::now() < *deadline)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (err == EAGAIN) {
      throw ConnectionError("cannot connect to " + path +
                            ": timed out, the master's backlog is full (is it stuck?)");
    }
    throw ConnectionError("cannot connect to " + path + ": " + explain_connect_error(err), err);
  }
  return Client(std::move(fd), path);
}

namespace {

// The master's words for a client it turned away before reading its request.
bool turned_away(const std::string& error) {
  return error.starts_with("too many control clients") || error.starts_with("closed to make room for another client");
}

std::string error_of(const Line& line) {
  const auto e = line.body.find("error");
  return e != line.body.end() && e->is_string() ? e->get<std::string>() : std::string();
}

}  // namespace

std::pair<Client, Line> Client::ask(const std::string& path, const nlohmann::json& request, Timeout timeout,
                                    Timeout reply_timeout) {
  using SteadyClock = std::chrono::steady_clock;
  const bool bounded = timeout.has_value();  // nullopt: no end (events, top)
  const auto give_up = SteadyClock::now() + timeout.value_or(std::chrono::milliseconds(0));
  auto pause = std::chrono::milliseconds(10);
  std::optional<std::pair<Client, Line>> refused;  // the last time it was turned away
  for (;;) {
    // A retry gets what is left of `timeout` to connect and send; when that runs out, the
    // reason it was turned away is the answer (exit 1). Once a request is sent, its reply
    // gets the whole `reply_timeout` (an upgrade's checks take up to 20 s), and a failure
    // from then on is that request's own: it may have been carried out.
    Timeout left = timeout;
    if (refused && bounded) {
      left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - SteadyClock::now());
      if (*left <= std::chrono::milliseconds(0)) return std::move(*refused);
    }
    std::optional<Client> client;
    bool sent = false;
    try {
      client.emplace(connect(path, left));
      client->send(request, left);
      sent = true;
      Line reply = client->read_line(reply_timeout);
      if (!(reply.body.value("ok", true) == false && turned_away(error_of(reply))))
        return {std::move(*client), std::move(reply)};
      refused.emplace(std::move(*client), std::move(reply));
    } catch (const ReplyError& e) {  // turned away while sending (send reads the reason)
      if (!turned_away(e.what()) || !client) throw;
      const nlohmann::json body = {{"ok", false}, {"error", e.what()}};
      refused.emplace(std::move(*client), Line{body.dump(), body, {}});
    } catch (const ConnectionError&) {
      if (!refused || sent) throw;
      return std::move(*refused);
    }
    if (bounded && SteadyClock::now() + pause >= give_up) return std::move(*refused);
    ::poll(nullptr, 0, static_cast<int>(pause.count()));
    pause = std::min(pause * 2, std::chrono::milliseconds(200));
  }
}

void Client::fail(const std::string& what) const {
  throw ConnectionError("control socket " + path_ + ": " + what);
}

void Client::send(const nlohmann::json& request, Timeout timeout) {
  const std::string line = request.dump() + "\n";
  const Deadline deadline = deadline_for(timeout);
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd_.get(), POLLOUT, deadline)) fail("timed out sending the request");
      continue;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      // A master that turns a client away (too many control clients) says why and closes
      // at once, often before the request goes out: its reason is waiting to be read.
      std::optional<Line> said;
      try {
        said = read_line_or_eof(std::chrono::milliseconds(0));
      } catch (const ConnectionError&) {
      }
      if (said) expect_ok(*said);  // throws ReplyError with the master's reason
      fail("the master closed the connection before reading the request");
    }
    fail(std::string("send: ") + std::strerror(errno));
  }
}

bool Client::fill(std::optional<Clock::time_point> deadline) {
  const std::size_t old = buffer_.size();
  buffer_.resize(old + kReadChunk);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
  for (;;) {
    iovec iov{buffer_.data() + old, kReadChunk};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd_.get(), POLLIN, deadline)) {
        buffer_.resize(old);
        fail("timed out waiting for the master's reply");
      }
      continue;
    }
    if (n < 0) {
      buffer_.resize(old);
      if (errno == ECONNRESET) return false;
      fail(std::string("recvmsg: ") + std::strerror(errno));
    }
    buffer_.resize(old + static_cast<std::size_t>(n));
    // Own every descriptor first, so none leaks whatever is wrong with the message.
    std::vector<shm::OwnedFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.emplace_back(fd);
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      fail("descriptors from the master were truncated (more than " +
           std::to_string(kMaxFdsPerRead) + " in one message)");
    }
    const std::uint64_t offset = base_ + old;
    for (auto& fd : fds) pending_fds_.push_back({offset, std::move(fd)});
    return n > 0;
  }
}

std::optional<Line> Client::take_line() {
  const auto nl = buffer_.find('\n', scanned_);
  if (nl == std::string::npos) {
    scanned_ = buffer_.size();
    if (buffer_.size() > kMaxLineBytes) {
      fail("reply line longer than " + std::to_string(kMaxLineBytes >> 20) + " MiB");
    }
    return std::nullopt;
  }
  if (nl > kMaxLineBytes) {
    fail("reply line longer than " + std::to_string(kMaxLineBytes >> 20) + " MiB");
  }
  Line line;
  line.text.assign(buffer_, 0, nl);
  const std::uint64_t end = base_ + nl + 1;
  buffer_.erase(0, nl + 1);
  base_ = end;
  scanned_ = 0;
  auto split = std::stable_partition(pending_fds_.begin(), pending_fds_.end(),
                                     [end](const PendingFd& p) { return p.offset < end; });
  for (auto it = pending_fds_.begin(); it != split; ++it) line.fds.push_back(std::move(it->fd));
  pending_fds_.erase(pending_fds_.begin(), split);

  line.body = nlohmann::json::parse(line.text, nullptr, false);
  if (line.body.is_discarded() || !line.body.is_object()) {
    std::string excerpt = line.text.substr(0, 80);
    fail("malformed reply (not a JSON object): " + excerpt + (line.text.size() > 80 ? "..." : ""));
  }
  return line;
}

std::optional<Line> Client::read_line_or_eof(Timeout timeout) {
  const Deadline deadline = deadline_for(timeout);
  for (;;) {
    if (auto line = take_line()) return line;
    if (!fill(deadline)) {
      if (!buffer_.empty()) fail("connection closed in the middle of a reply");
      pending_fds_.clear();
      return std::nullopt;
    }
  }
}

Line Client::read_line(Timeout timeout) {
  auto line = read_line_or_eof(timeout);
  if (!line) fail("the master closed the connection without replying");
  return std::move(*line);
}

void expect_ok(const Line& line) {
  const auto ok = line.body.find("ok");
  if (ok != line.body.end() && ok->is_boolean() && ok->get<bool>()) return;
  const auto err = line.body.find("error");
  if (err != line.body.end() && err->is_string()) throw ReplyError(err->get<std::string>());
  if (ok != line.body.end() && ok->is_boolean())
    throw ReplyError("request failed (no reason given)");
  throw ReplyError("reply without \"ok\": " + line.text.substr(0, 200));
}

Line Client::call(const nlohmann::json& request, Timeout timeout) {
  send(request, timeout);
  Line line = read_line(timeout);
  expect_ok(line);
  return line;
}

ScoreboardFds fetch_scoreboard(Client& client, Timeout timeout) {
  Line first = client.call({{"cmd", "scoreboard"}}, timeout);
  const auto& b = first.body;
  auto bad = [&](const std::string& what) -> ConnectionError {
    return ConnectionError("control socket " + client.path() +
                           ": malformed scoreboard reply: " + what);
  };
  if (!b.contains("fd_count") || !b["fd_count"].is_number_unsigned()) throw bad("no fd_count");
  if (!b.contains("slots") || !b["slots"].is_number_unsigned()) throw bad("no slots");
  const auto fd_count = b["fd_count"].get<std::uint64_t>();
  const auto slots = b["slots"].get<std::uint64_t>();
  if (fd_count != slots + 1) {
    throw bad("fd_count " + std::to_string(fd_count) + " is not slots + 1 (" +
              std::to_string(slots + 1) + ")");
  }
  ScoreboardFds out;
  if (b.contains("epochs")) {
    if (!b["epochs"].is_array() || b["epochs"].size() != slots)
      throw bad("epochs is not one per slot");
    for (const auto& e : b["epochs"]) {
      if (!e.is_number_unsigned()) throw bad("an epoch is not an unsigned number");
      out.epochs.push_back(e.get<std::uint64_t>());
    }
  }
  if (b.contains("pools") && b["pools"].is_array()) {
    for (const auto& p : b["pools"])
      out.pools.push_back(p.is_string() ? p.get<std::string>() : p.dump());
  }
  std::vector<shm::OwnedFd> fds = std::move(first.fds);
  while (fds.size() < fd_count) {
    Line more = client.read_line(timeout);
    const auto flag = more.body.find("fds");
    if (flag == more.body.end() || !flag->is_boolean() || !flag->get<bool>()) {
      throw bad("expected a {\"fds\":true} line after " + std::to_string(fds.size()) + " of " +
                std::to_string(fd_count) + " descriptors");
    }
    if (more.fds.empty()) throw bad("a {\"fds\":true} line came without descriptors");
    for (auto& fd : more.fds) fds.push_back(std::move(fd));
  }
  if (fds.size() != fd_count) {
    throw bad("got " + std::to_string(fds.size()) + " descriptors, expected " +
              std::to_string(fd_count));
  }
  out.region = std::move(fds[0]);
  for (std::size_t i = 1; i < fds.size(); ++i) out.slots.push_back(std::move(fds[i]));
  return out;
}

}  // namespace forkpool::ctl
