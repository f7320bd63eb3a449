// SPDX-License-Identifier: Apache-2.0
#include "supervisor/observe/metrics_http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>

#include "config/listen_address.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/observe/prometheus.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {
namespace {

constexpr int kBacklog = 128;
constexpr std::size_t kReadBuffer = 4096;
// After the reply, unread input is drained this long so that closing does not turn into a
// reset that could destroy the reply before the client has read it.
constexpr std::chrono::milliseconds kLinger{1000};

constexpr std::array<std::string_view, 3> kPaths = {"/metrics", "/healthz", "/status"};

std::string_view default_content_type(std::string_view path) {
  if (path == "/metrics") return kPrometheusContentType;
  if (path == "/status") return "application/json";
  return "text/plain; charset=utf-8";
}

std::string_view reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool is_tchar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x80) return false;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_visible(char c) {
  return c > 0x20 && c < 0x7f;
}

enum class Verdict { NeedMore, Bad, Ok };

struct RequestLine {
  std::string_view method, target;
};

// RFC 9112 request-line, checked as far as it has arrived so that garbage (a TLS hello, a
// port scanner's probe) is rejected at once rather than after the request timeout.
Verdict parse_request_line(std::string_view s, bool complete, RequestLine& out) {
  if (!complete && s.ends_with('\r')) s.remove_suffix(1);
  std::size_t i = 0;
  while (i < s.size() && is_tchar(s[i])) ++i;
  if (i == s.size()) return complete ? Verdict::Bad : Verdict::NeedMore;
  if (i == 0 || s[i] != ' ') return Verdict::Bad;
  std::size_t j = i + 1;
  while (j < s.size() && is_visible(s[j])) ++j;
  if (j == s.size()) return complete ? Verdict::Bad : Verdict::NeedMore;
  if (j == i + 1 || s[j] != ' ') return Verdict::Bad;
  const std::string_view version = s.substr(j + 1);
  out = {s.substr(0, i), s.substr(i + 1, j - i - 1)};
  if (complete) return version == "HTTP/1.1" || version == "HTTP/1.0" ? Verdict::Ok : Verdict::Bad;
  const bool prefix = std::string_view("HTTP/1.1").starts_with(version) ||
                      std::string_view("HTTP/1.0").starts_with(version);
  return prefix ? Verdict::NeedMore : Verdict::Bad;
}

// "name: value" with a token name; no obs-fold, no control characters but HT.
bool valid_header_line(std::string_view line) {
  const auto colon = line.find(':');
  if (colon == 0 || colon == std::string_view::npos) return false;
  for (std::size_t i = 0; i < colon; ++i) {
    if (!is_tchar(line[i])) return false;
  }
  return std::none_of(line.begin() + static_cast<std::ptrdiff_t>(colon), line.end(), [](char c) {
    return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
  });
}

// The path of an origin-form ("/metrics?x") or absolute-form ("http://h/metrics") target.
std::optional<std::string_view> target_path(std::string_view target) {
  for (const std::string_view scheme : {"http://", "https://"}) {
    if (target.starts_with(scheme)) {
      target.remove_prefix(scheme.size());
      const auto slash = target.find('/');
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  if (!target.starts_with('/')) return std::nullopt;
  return target.substr(0, target.find_first_of("?#"));
}

// End of the request head (just past the empty line), or npos while it has not arrived.
std::size_t head_end(std::string_view s) {
  for (std::size_t nl = s.find('\n'); nl != std::string_view::npos; nl = s.find('\n', nl + 1)) {
    if (nl + 1 < s.size() && s[nl + 1] == '\n') return nl + 2;
    if (nl + 2 < s.size() && s[nl + 1] == '\r' && s[nl + 2] == '\n') return nl + 3;
  }
  return std::string_view::npos;
}

std::string_view strip_cr(std::string_view line) {
  if (line.ends_with('\r')) line.remove_suffix(1);
  return line;
}

}  // namespace

struct MetricsHttpServer::Connection {
  enum class Phase { Reading, Replying, Lingering };

  uv_tcp_t tcp{};
  MetricsHttpServer* server = nullptr;  // null once closing: the server may be gone
  std::list<Connection*>::iterator position;
  Phase phase = Phase::Reading;
  bool closing = false;
  bool peer_done = false;  // EOF seen while the reply was still being written
  std::string head;
  std::string reply;
  uv_write_t write_req{};
  uv_shutdown_t shutdown_req{};
  std::unique_ptr<Timer> timer;
  char buffer[kReadBuffer];

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }
  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&tcp); }
};

MetricsHttpServer::MetricsHttpServer(uv_loop_t* loop, std::string_view address, Handler handler,
                                     Limits limits)
    : loop_(loop), handler_(std::move(handler)), limits_(limits), listener_(new uv_tcp_t) {
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  const auto fail = [&](std::string_view what, int err) {
    listener_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    throw std::runtime_error(std::string(address) + ": " + std::string(what) +
                             (err != 0 ? std::string(": ") + uv_strerror(err) : std::string()));
  };
  const auto parsed = config::parse_host_port(address);
  if (!parsed) fail("expected " + parsed.error, 0);
  const auto& a = *parsed.value;
  sockaddr_storage storage{};
  int rc = a.ipv6 ? uv_ip6_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in6*>(&storage))
                  : uv_ip4_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in*>(&storage));
  if (rc != 0) fail("bad address", rc);
  // libuv may report a failed bind (EADDRINUSE) only from uv_listen, so both are checked.
  if ((rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&storage), 0)) != 0)
    fail("bind", rc);
  listen_and_name(fail);
}

MetricsHttpServer::MetricsHttpServer(uv_loop_t* loop, int listening_fd, Handler handler, Limits limits)
    : loop_(loop), handler_(std::move(handler)), limits_(limits), listener_(new uv_tcp_t) {
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  const auto fail = [&](std::string_view what, int err) {
    listener_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    throw std::runtime_error("metrics socket (handed over): " + std::string(what) + ": " + uv_strerror(err));
  };
  if (const int rc = uv_tcp_open(listener_, listening_fd); rc != 0) fail("open", rc);
  listen_and_name(fail);
}

int MetricsHttpServer::listening_fd() const {
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(listener_), &fd) != 0) return -1;
  return fd;
}

void MetricsHttpServer::listen_and_name(const std::function<void(std::string_view, int)>& fail) {
  int rc = 0;
  if ((rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), kBacklog, &on_connection)) != 0)
    fail("listen", rc);
  sockaddr_storage storage{};
  int len = sizeof storage;
  if ((rc = uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&storage), &len)) != 0)
    fail("getsockname", rc);
  char host[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    uv_ip6_name(in6, host, sizeof host);
    port_ = ntohs(in6->sin6_port);
    address_ = "[" + std::string(host) + "]:" + std::to_string(port_);
  } else {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&storage);
    uv_ip4_name(in4, host, sizeof host);
    port_ = ntohs(in4->sin_port);
    address_ = std::string(host) + ":" + std::to_string(port_);
  }
}

MetricsHttpServer::~MetricsHttpServer() {
  while (!connections_.empty()) close(connections_.front());
  listener_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(listener_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
}

void MetricsHttpServer::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<MetricsHttpServer*>(listener->data);
  if (self == nullptr) return;
  if (status < 0) {
    // EMFILE and friends: libuv already dropped the connection it could not take and
    // waits for the next readiness event, so this neither spins nor stops listening.
    log::warn("metrics.accept", "accept on {}: {}", self->address_, uv_strerror(status));
    return;
  }
  self->accept_one();
}

void MetricsHttpServer::accept_one() {
  auto* c = new Connection;
  uv_tcp_init(loop_, &c->tcp);
  c->tcp.data = c;
  const auto drop = [c] {
    uv_close(c->handle(), [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
  };
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_), c->stream()) != 0) return drop();
  if (connections_.size() >= limits_.max_connections && !make_room()) {
    log::debug("metrics.reject", "{} connections are open and all are replying; closing a new one",
               connections_.size());
    return drop();
  }
  c->server = this;
  c->position = connections_.insert(connections_.end(), c);
  c->timer = std::make_unique<Timer>(loop_);
  c->timer->start(limits_.request_timeout, [this, c] { close(c); });
  if (uv_read_start(c->stream(), &on_alloc, &on_read) != 0) close(c);
}

// At the limit, a connection that has nothing left to deliver is closed for the new one:
// first one that already has its reply, then the oldest still waiting for its request.
// So idle connections, however many, never keep a scraper out; only replies in progress
// (each bounded by the timeout) do.
bool MetricsHttpServer::make_room() {
  Connection* oldest_reading = nullptr;
  for (Connection* c : connections_) {
    if (c->phase == Connection::Phase::Lingering) {
      close(c);
      return true;
    }
    if (c->phase == Connection::Phase::Reading && oldest_reading == nullptr) oldest_reading = c;
  }
  if (oldest_reading == nullptr) return false;
  log::debug("metrics.evict",
             "{} connections are open; closing the oldest one still waiting for its request",
             connections_.size());
  close(oldest_reading);
  return true;
}

void MetricsHttpServer::on_alloc(uv_handle_t* handle, std::size_t, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(handle->data);
  *buf = uv_buf_init(c->buffer, sizeof c->buffer);
}

void MetricsHttpServer::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(stream->data);
  if (c->closing || nread == 0) return;
  MetricsHttpServer* self = c->server;
  if (nread == UV_EOF && c->phase == Connection::Phase::Replying) {
    // A client that shut down its side after the request still gets the whole reply.
    c->peer_done = true;
    uv_read_stop(stream);
    return;
  }
  if (nread < 0) return self->close(c);
  if (c->phase != Connection::Phase::Reading) return;  // drained and dropped after the request
  const auto n = static_cast<std::size_t>(nread);
  c->head.append(buf->base, std::min(n, self->limits_.max_head_bytes + 1 - c->head.size()));
  self->handle_request(c);
}

void MetricsHttpServer::handle_request(Connection* c) {
  const std::string_view head = c->head;
  const auto end = head_end(head);
  const auto first_nl = head.find('\n');
  RequestLine line;
  const Verdict v = parse_request_line(strip_cr(head.substr(0, first_nl)),
                                       first_nl != std::string_view::npos, line);
  if (v == Verdict::Bad)
    return respond(c, 400, "text/plain; charset=utf-8", "bad request\n", false);
  if (end == std::string_view::npos || end > limits_.max_head_bytes) {
    if (head.size() > limits_.max_head_bytes) {
      return respond(c, 431, "text/plain; charset=utf-8", "request head too large\n", false);
    }
    return;  // wait for the rest, bounded by the timer
  }
  std::size_t pos = first_nl + 1;
  while (pos < end) {
    const auto nl = head.find('\n', pos);
    const auto header = strip_cr(head.substr(pos, nl - pos));
    pos = nl + 1;
    if (header.empty()) break;
    if (!valid_header_line(header))
      return respond(c, 400, "text/plain; charset=utf-8", "bad request\n", false);
  }
  const bool head_only = line.method == "HEAD";
  const auto path = target_path(line.target);
  if (!path) return respond(c, 400, "text/plain; charset=utf-8", "bad request\n", head_only);
  if (std::find(kPaths.begin(), kPaths.end(), *path) == kPaths.end()) {
    return respond(c, 404, "text/plain; charset=utf-8", "not found\n", head_only);
  }
  if (line.method != "GET" && !head_only) {
    return respond(c, 405, "text/plain; charset=utf-8", "method not allowed\n", false,
                   "Allow: GET, HEAD\r\n");
  }
  const std::string p(*path);  // the head buffer is about to be replaced by the reply
  Response r = call_handler(p);
  const std::string_view type = r.content_type.empty() ? default_content_type(p) : r.content_type;
  respond(c, r.status, type, r.body, head_only);
}

MetricsHttpServer::Response MetricsHttpServer::call_handler(std::string_view path) {
  try {
    return handler_(path);
  } catch (const std::exception& e) {
    log::error("metrics.handler", "rendering {} failed: {}", path, e.what());
  } catch (...) {
    log::error("metrics.handler", "rendering {} failed", path);
  }
  return {500, "text/plain; charset=utf-8", "internal error\n"};
}

void MetricsHttpServer::respond(Connection* c, int status, std::string_view content_type,
                                std::string_view body, bool head_only,
                                std::string_view extra_headers) {
  c->phase = Connection::Phase::Replying;
  std::string reply =
      "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason(status)) + "\r\n";
  reply += "Content-Type: " + std::string(content_type) + "\r\n";
  reply += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  reply += extra_headers;
  reply += "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!head_only) reply += body;
  c->reply = std::move(reply);
  std::string().swap(c->head);
  // The reply gets its own time budget: a client that does not read it is dropped.
  c->timer->start(limits_.request_timeout, [this, c] { close(c); });
  c->write_req.data = c;
  uv_buf_t buf = uv_buf_init(c->reply.data(), static_cast<unsigned>(c->reply.size()));
  if (uv_write(&c->write_req, c->stream(), &buf, 1, &on_written) != 0) return close(c);
  // Queued behind the write: sends FIN once the reply is out.
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, c->stream(), &on_shutdown) != 0) close(c);
}

void MetricsHttpServer::on_written(uv_write_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  if (c->closing) return;  // cancelled by close()
  if (status < 0) c->server->close(c);
}

void MetricsHttpServer::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  if (c->closing) return;
  MetricsHttpServer* self = c->server;
  if (status < 0 || c->peer_done) return self->close(c);
  c->phase = Connection::Phase::Lingering;
  c->timer->start(std::min(kLinger, self->limits_.request_timeout), [self, c] { self->close(c); });
}

void MetricsHttpServer::close(Connection* c) {
  if (c->closing) return;
  c->closing = true;
  c->timer.reset();
  connections_.erase(c->position);
  c->server = nullptr;
  // Pending write and shutdown requests complete with UV_ECANCELED before this callback.
  uv_close(c->handle(), [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
}

}  // namespace forkpool::supervisor
