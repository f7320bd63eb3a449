// SPDX-License-Identifier: Apache-2.0
#pragma once
// A minimal blocking HTTP/1.1 client for tests: one request per connection (built on
// HttpConnection, support/http_connection.hpp).

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace forkpool::test {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// GET http://HOST:PORT/path with Connection: close. `address` is "127.0.0.1:8080",
// "[::1]:8080" or "unix:PATH". Returns nothing on connection errors, a malformed or
// incomplete response, or when `timeout` passes; then `why` (if given) says which.
// Signals do not count as errors (interrupted calls are retried).
std::optional<HttpResponse> http_get(const std::string& address, const std::string& path,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                     std::string* why = nullptr);

}  // namespace forkpool::test
