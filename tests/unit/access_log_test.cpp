// SPDX-License-Identifier: Apache-2.0
// The access log's two line formats, from records as the master makes them.

#include "supervisor/observe/access_log.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>

namespace al = forkpool::access_log;
using forkpool::config::LogFormat;

namespace {

sockaddr_storage v4(const char* ip, int port, socklen_t& len) {
  sockaddr_storage s{};
  auto* a = reinterpret_cast<sockaddr_in*>(&s);
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, ip, &a->sin_addr);
  len = sizeof(sockaddr_in);
  return s;
}

}  // namespace

TEST_CASE("access log text line: nine fields, exact seconds, dashes for what does not apply",
          "[access_log]") {
  socklen_t len = 0;
  const auto peer = v4("127.0.0.1", 50312, len);
  al::Record r;
  r.pool = "web";
  r.worker = 3;
  r.pid = 1234;
  r.peer = &peer;
  r.peer_len = len;
  r.id = 17;
  r.queue_wait = std::chrono::microseconds(41);
  r.held = std::chrono::microseconds(4'502'301);
  r.outcome = al::Outcome::Done;
  const std::string line = al::format(r, LogFormat::Text);
  static const std::regex re(
      R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z web 3 1234 127\.0\.0\.1:50312 17 0\.000041 4\.502301 done$)");
  CHECK(std::regex_match(line, re));

  r.worker.reset();
  r.pid = 0;
  r.held.reset();
  r.queue_wait = std::chrono::microseconds(10'000'833);
  r.outcome = al::Outcome::QueueTimeout;
  CHECK_THAT(al::format(r, LogFormat::Text),
             Catch::EndsWith(" web - - 127.0.0.1:50312 17 10.000833 - queue_timeout"));
}

TEST_CASE("access log peers: IPv6 in brackets, a Unix socket as unix", "[access_log]") {
  sockaddr_storage s{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&s);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(40112);
  ::inet_pton(AF_INET6, "::1", &a->sin6_addr);
  al::Record r;
  r.pool = "api";
  r.peer = &s;
  r.peer_len = sizeof(sockaddr_in6);
  r.outcome = al::Outcome::Closed;
  CHECK_THAT(al::format(r, LogFormat::Text), Catch::Contains(" [::1]:40112 "));

  sockaddr_storage u{};
  reinterpret_cast<sockaddr_un*>(&u)->sun_family = AF_UNIX;
  r.peer = &u;
  r.peer_len = sizeof(sa_family_t);
  CHECK_THAT(al::format(r, LogFormat::Text),
             Catch::Contains(" unix ") && Catch::EndsWith(" closed"));
}

TEST_CASE("access log JSON line carries the same facts, null where nothing applies",
          "[access_log]") {
  socklen_t len = 0;
  const auto peer = v4("10.1.2.3", 8080, len);
  al::Record r;
  r.pool = "web";
  r.worker = 0;
  r.pid = 99;
  r.peer = &peer;
  r.peer_len = len;
  r.id = 5;
  r.queue_wait = std::chrono::microseconds(250);
  r.held = std::chrono::microseconds(1'500'000);
  r.outcome = al::Outcome::Lost;
  const std::string line = al::format(r, LogFormat::Json);
  CHECK(line.rfind("{\"time\":", 0) == 0);
  const auto j = nlohmann::json::parse(line);
  CHECK(j["pool"] == "web");
  CHECK(j["worker"] == 0);
  CHECK(j["pid"] == 99);
  CHECK(j["peer"] == "10.1.2.3:8080");
  CHECK(j["conn"] == 5);
  CHECK(j["queue_wait_s"] == Approx(0.00025));
  CHECK(j["held_s"] == Approx(1.5));
  CHECK(j["outcome"] == "lost");

  r.worker.reset();
  r.pid = 0;
  r.held.reset();
  const auto k = nlohmann::json::parse(al::format(r, LogFormat::Json));
  CHECK(k["worker"].is_null());
  CHECK(k["pid"].is_null());
  CHECK(k["held_s"].is_null());
}
