// SPDX-License-Identifier: Apache-2.0
#include "support/http_client.hpp"

#include "support/http_connection.hpp"

namespace forkpool::test {

std::optional<HttpResponse> http_get(const std::string& address, const std::string& path,
                                     std::chrono::milliseconds timeout, std::string* why) {
  HttpConnection conn(address, timeout);
  std::optional<HttpResponse> r;
  if (conn.connected() && conn.request("GET", path, "Connection: close\r\n")) r = conn.read_response();
  if (!r && why != nullptr) *why = conn.failure();
  return r;
}

}  // namespace forkpool::test
