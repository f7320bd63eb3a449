// SPDX-License-Identifier: Apache-2.0
#pragma once
// A request held in a master-dispatch worker for as long as the test wants: its head is
// sent without the blank line that ends it, so the worker that took the connection keeps
// it in flight (busy, with max_inflight 1) until release() sends the rest. Unlike a
// /sleep?ms=N request, no amount of load on the machine makes it end early. Not for shared
// dispatch (forkpool-hello goes on accepting other connections meanwhile), nor across a
// worker's drain (forkpool-hello closes a connection idle for 5 s while it drains).

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "support/http_connection.hpp"

namespace forkpool::test {

class HeldRequest {
 public:
  explicit HeldRequest(const std::string& address) : connection_(address, std::chrono::seconds(60)) {
    REQUIRE(connection_.connected());
    REQUIRE(connection_.send("GET / HTTP/1.1\r\nHost: x\r\n"));
  }
  // Ends the request; the response ("Hello, world" from forkpool-hello), or nothing.
  std::optional<HttpResponse> release() {
    if (!connection_.send("Connection: close\r\n\r\n")) return std::nullopt;
    return connection_.read_response();
  }
  HttpConnection& connection() { return connection_; }

 private:
  HttpConnection connection_;
};

}  // namespace forkpool::test
