// SPDX-License-Identifier: Apache-2.0
#pragma once
// The `metrics_listen` HTTP endpoint: GET (or HEAD) /metrics, /healthz and /status, one
// request per connection, answered on the loop from the caller's handler, then closed.
// Bounded in every dimension so a scraper or an attacker cannot disturb the master:
// request head size, time for the request to arrive, and connections open at once.

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>

namespace forkpool::supervisor {

// Outside the class so that it can be a default argument of the constructor.
struct MetricsHttpLimits {
  std::size_t max_connections = 64;  // more: the least useful one is closed
  std::chrono::milliseconds request_timeout{
      5000};                          // for the request head, then again for the reply
  std::size_t max_head_bytes = 8192;  // larger request heads get 431
};

class MetricsHttpServer {
 public:
  struct Response {
    int status = 200;
    std::string content_type;  // "" = the path's default (see below)
    std::string body;
  };
  // Called on the loop with "/metrics", "/healthz" or "/status" (query string removed).
  // It should render from one snapshot and return; an exception becomes a 500.
  using Handler = std::function<Response(std::string_view path)>;

  using Limits = MetricsHttpLimits;

  // Binds and listens on "HOST:PORT" or "[V6]:PORT" (port 0: the kernel chooses, see
  // port()). Throws std::runtime_error naming the address if it cannot, since this only
  // happens at start-up. Construct, use and destroy it on the loop's thread.
  MetricsHttpServer(uv_loop_t* loop, std::string_view address, Handler handler, Limits limits = {});
  // A binary upgrade: the listening socket the previous image bound.
  MetricsHttpServer(uv_loop_t* loop, int listening_fd, Handler handler, Limits limits = {});
  // Closes the listener and every connection. The loop must run once more afterwards so
  // that libuv's close callbacks free the handles.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  std::uint16_t port() const { return port_; }
  // The bound address, "127.0.0.1:9464" or "[::1]:9464", with the real port.
  const std::string& address() const { return address_; }
  std::size_t connections() const { return connections_.size(); }
  // The listening socket, for the upgrade state.
  int listening_fd() const;

 private:
  struct Connection;

  static void on_connection(uv_stream_t* listener, int status);
  static void on_alloc(uv_handle_t* handle, std::size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_written(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);

  // Listens, then learns the bound address; `fail` throws.
  void listen_and_name(const std::function<void(std::string_view, int)>& fail);
  void accept_one();
  bool make_room();
  void handle_request(Connection* c);
  void respond(Connection* c, int status, std::string_view content_type, std::string_view body,
               bool head_only, std::string_view extra_headers = {});
  Response call_handler(std::string_view path);
  void close(Connection* c);

  uv_loop_t* loop_;
  Handler handler_;
  Limits limits_;
  uv_tcp_t* listener_;
  std::uint16_t port_ = 0;
  std::string address_;
  std::list<Connection*> connections_;  // in the order they were accepted
};

}  // namespace forkpool::supervisor
