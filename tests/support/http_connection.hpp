// SPDX-License-Identifier: Apache-2.0
#pragma once
// One HTTP/1.1 client connection kept open across requests (keep-alive, pipelining,
// bodies), for tests: responses are read by their framing (Content-Length, chunked, or
// the end of the connection), so the same connection can carry the next request.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "support/http_client.hpp"

namespace forkpool::test {

class HttpConnection {
 public:
  // Connects to "127.0.0.1:PORT", "[::1]:PORT" or "unix:PATH"; check connected().
  explicit HttpConnection(const std::string& address, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Sends raw bytes (one or more requests, or a part of one); false on an error.
  bool send(std::string_view bytes);
  // Sends "METHOD PATH HTTP/1.1" with Host, the extra header lines (each ending in
  // "\r\n") and the body (with its Content-Length unless the extra headers frame it).
  bool request(const std::string& method, const std::string& path, const std::string& extra_headers = "",
               const std::string& body = "");
  // Reads the next response; `head` for the answer to a HEAD request (no body). A chunked
  // body is returned decoded. Nothing on timeout, a malformed response or the connection
  // ending before the response is complete.
  std::optional<HttpResponse> read_response(bool head = false);
  // Reads until `text` has arrived (it stays buffered); false on EOF, error or timeout.
  bool wait_for(std::string_view text);
  // True once the server has closed the connection (reads and drops what comes first),
  // false if it is still open when the timeout passes.
  bool closed_by_peer();
  // Everything received and not yet taken by read_response().
  const std::string& buffered() const { return in_; }
  // Why the last call that failed did ("connect: Connection refused", "recv: timed out",
  // "closed by the server after 0 bytes", ...).
  const std::string& failure() const { return failure_; }

 private:
  bool fill();  // one recv into in_; false on EOF, error or timeout
  bool need(std::size_t n);

  int fd_ = -1;
  std::string in_;
  std::string address_;
  std::string failure_;
  std::size_t received_ = 0;  // bytes received on the connection in all
};

}  // namespace forkpool::test
