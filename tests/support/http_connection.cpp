// SPDX-License-Identifier: Apache-2.0
#include "support/http_connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace forkpool::test {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// connect(2) that a signal does not cut short: after EINTR the connection goes on in the
// kernel, so wait for it to finish and take its result. Returns 0 or an errno value.
int connect_fully(int fd, const sockaddr* a, socklen_t len) {
  if (::connect(fd, a, len) == 0) return 0;
  if (errno != EINTR) return errno;
  pollfd p{fd, POLLOUT, 0};
  while (::poll(&p, 1, -1) < 0)
    if (errno != EINTR) return errno;
  int err = 0;
  socklen_t n = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n) != 0) return errno;
  return err;
}

// Returns the connected fd, or -1 with errno set.
int connect_to(const std::string& address) {
  if (address.starts_with("unix:")) {
    const std::string path = address.substr(5);
    sockaddr_un a{};
    if (path.size() >= sizeof a.sun_path) {
      errno = ENAMETOOLONG;
      return -1;
    }
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (const int err = connect_fully(fd, reinterpret_cast<sockaddr*>(&a), sizeof a); err != 0) {
      ::close(fd);
      errno = err;
      return -1;
    }
    return fd;
  }
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  const int port = std::stoi(address.substr(colon + 1));
  const bool v6 = host.starts_with('[');
  if (v6) host = host.substr(1, host.size() - 2);
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int rc;
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
    rc = connect_fully(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    rc = connect_fully(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    ::close(fd);
    errno = rc;
    return -1;
  }
  return fd;
}

}  // namespace

HttpConnection::HttpConnection(const std::string& address, std::chrono::milliseconds timeout)
    : fd_(connect_to(address)), address_(address) {
  if (fd_ < 0) {
    failure_ = std::string("connect: ") + std::strerror(errno);
    return;
  }
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

HttpConnection::~HttpConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool HttpConnection::send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;  // a signal (or SIGSTOP/SIGCONT of this process)
    if (n <= 0) {
      failure_ = std::string("send: ") + std::strerror(errno);
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool HttpConnection::request(const std::string& method, const std::string& path, const std::string& extra_headers,
                             const std::string& body) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: " + address_ + "\r\n" + extra_headers;
  if (!body.empty() && lower(extra_headers).find("transfer-encoding:") == std::string::npos &&
      lower(extra_headers).find("content-length:") == std::string::npos)
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += "\r\n";
  return send(r) && send(body);
}

bool HttpConnection::fill() {
  char buf[65536];
  ssize_t n;
  // With SO_RCVTIMEO set, recv is not restarted after a signal, not even one without a
  // handler that only stopped and continued the process: retry.
  do n = ::recv(fd_, buf, sizeof buf, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    failure_ = errno == EAGAIN || errno == EWOULDBLOCK ? std::string("recv: timed out")
                                                        : std::string("recv: ") + std::strerror(errno);
    return false;
  }
  if (n == 0) {
    failure_ = "closed by the server after " + std::to_string(received_) + " bytes" +
               (in_.empty() ? std::string() : ": \"" + in_.substr(0, 80) + "\"");
    return false;
  }
  received_ += static_cast<std::size_t>(n);
  in_.append(buf, static_cast<std::size_t>(n));
  return true;
}

bool HttpConnection::need(std::size_t n) {
  while (in_.size() < n)
    if (!fill()) return false;
  return true;
}

std::optional<HttpResponse> HttpConnection::read_response(bool head) {
  if (fd_ < 0) return std::nullopt;
  HttpResponse r;
  std::size_t head_end;
  while (true) {
    while ((head_end = in_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return std::nullopt;
    if (!in_.starts_with("HTTP/1.") || in_.size() < 12) {
      failure_ = "not an HTTP response: \"" + in_.substr(0, 80) + "\"";
      return std::nullopt;
    }
    r.status = std::atoi(in_.c_str() + 9);
    if (r.status >= 200 || r.status < 100) break;
    in_.erase(0, head_end + 4);  // 100 Continue: the final answer follows
  }
  std::size_t pos = in_.find("\r\n") + 2;
  while (pos < head_end) {
    const auto eol = in_.find("\r\n", pos);
    const std::string line = in_.substr(pos, eol - pos);
    const auto c = line.find(':');
    if (c != std::string::npos) {
      std::string value = line.substr(c + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      r.headers[lower(line.substr(0, c))] = value;
    }
    pos = eol + 2;
  }
  in_.erase(0, head_end + 4);
  if (head || r.status == 204 || r.status == 304) return r;
  if (r.headers.contains("transfer-encoding")) {
    while (true) {
      std::size_t eol;
      while ((eol = in_.find("\r\n")) == std::string::npos)
        if (!fill()) return std::nullopt;
      const std::size_t size = std::stoul(in_.substr(0, eol), nullptr, 16);
      if (!need(eol + 2 + size + 2)) return std::nullopt;
      r.body += in_.substr(eol + 2, size);
      if (in_.compare(eol + 2 + size, 2, "\r\n") != 0) return std::nullopt;
      in_.erase(0, eol + 2 + size + 2);
      if (size == 0) return r;
    }
  }
  if (r.headers.contains("content-length")) {
    const std::size_t length = std::stoul(r.headers["content-length"]);
    if (!need(length)) return std::nullopt;
    r.body = in_.substr(0, length);
    in_.erase(0, length);
    return r;
  }
  while (fill()) {
  }
  r.body = std::move(in_);
  in_.clear();
  return r;
}

bool HttpConnection::wait_for(std::string_view text) {
  while (in_.find(text) == std::string::npos)
    if (!fill()) return false;
  return true;
}

bool HttpConnection::closed_by_peer() {
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
    in_.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace forkpool::test
