// SPDX-License-Identifier: Apache-2.0
#include "support/control_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

namespace forkpool::test {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point until) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

}  // namespace

ControlClient::ControlClient(const std::filesystem::path& path, std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof addr.sun_path) {
    error_ = ENAMETOOLONG;
    return;
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  const auto until = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      error_ = errno;
      return;
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      fd_ = fd;
      error_ = 0;
      return;
    }
    error_ = errno;
    ::close(fd);
    // Not there yet, not listening yet, or its backlog is full: worth another try.
    const bool transient = error_ == ENOENT || error_ == ECONNREFUSED || error_ == EAGAIN || error_ == EINTR;
    if (!transient || Clock::now() >= until) return;
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(20)) pause *= 2;
  }
}

ControlClient::~ControlClient() { close(); }

ControlClient::ControlClient(ControlClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      error_(other.error_),
      eof_(other.eof_),
      buffer_(std::move(other.buffer_)) {}

ControlClient& ControlClient::operator=(ControlClient&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    error_ = other.error_;
    eof_ = other.eof_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

void ControlClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int ControlClient::fill(Clock::time_point until) {
  if (fd_ < 0 || eof_) return 0;
  char buf[65536];
  while (true) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<std::size_t>(n));
      return 1;
    }
    if (n == 0) {
      eof_ = true;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      error_ = errno;
      eof_ = true;  // a reset ends the stream as surely as an orderly close
      return 0;
    }
    const int wait = remaining_ms(until);
    if (wait == 0) return -1;
    pollfd pfd{fd_, POLLIN, 0};
    const int rc = ::poll(&pfd, 1, wait);
    if (rc == 0) return -1;
    if (rc < 0 && errno != EINTR) {
      error_ = errno;
      return 0;
    }
  }
}

std::optional<std::string> ControlClient::read_line(std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  std::size_t scanned = 0;
  while (true) {
    const auto nl = buffer_.find('\n', scanned);
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    scanned = buffer_.size();
    if (fill(until) != 1) return std::nullopt;
  }
}

std::optional<nlohmann::json> ControlClient::read_json(std::chrono::milliseconds deadline) {
  auto line = read_line(deadline);
  if (!line) return std::nullopt;
  auto parsed = nlohmann::json::parse(*line, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

nlohmann::json ControlClient::request(const nlohmann::json& req, std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  if (!send_raw(req.dump() + "\n", deadline)) return nullptr;
  auto reply = read_json(std::chrono::milliseconds(remaining_ms(until)));
  return reply ? *reply : nlohmann::json(nullptr);
}

long ControlClient::send_some(std::string_view bytes) {
  if (fd_ < 0) return -1;
  while (true) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return static_cast<long>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    error_ = errno;
    return -1;
  }
}

bool ControlClient::send_raw(std::string_view bytes, std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  while (!bytes.empty()) {
    const long n = send_some(bytes);
    if (n < 0) return false;
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    const int wait = remaining_ms(until);
    if (wait == 0) return false;
    pollfd pfd{fd_, POLLOUT, 0};
    if (::poll(&pfd, 1, wait) < 0 && errno != EINTR) return false;
  }
  return true;
}

bool ControlClient::is_closed(std::chrono::milliseconds deadline) {
  const auto until = Clock::now() + deadline;
  while (true) {
    const int r = fill(until);
    if (r == 0) return eof_;
    if (r < 0) return false;
  }
}

}  // namespace forkpool::test
