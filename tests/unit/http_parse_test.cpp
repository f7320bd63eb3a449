// SPDX-License-Identifier: Apache-2.0
// forkpool-hello's request-head parser on the characters it must refuse: every byte value
// as part of a header name, and every byte value at every position of header values of
// every length up to 40 (the value check reads eight bytes at a time, so each position
// of a word, the overlapping last word and the short values all get every byte). The
// expected result comes from the RFC's rules written out here, not from the parser.

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

extern "C" {
#include "worker/hello/http_parse.h"
}

namespace {

hello_parse_result parse(const std::string& head, hello_request& q) {
  std::size_t scan = 0;
  return hello_http_parse(head.data(), head.size(), &scan, 16384, &q);
}

// RFC 9110 5.6.2.
bool is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

}  // namespace

TEST_CASE("hello's parser takes a header name of token characters only", "[hello][http]") {
  for (int c = 0; c < 256; ++c) {
    INFO("byte " << c);
    hello_request q{};
    const std::string head = std::string("GET / HTTP/1.1\r\nA") + static_cast<char>(c) + "B: x\r\n\r\n";
    const hello_parse_result r = parse(head, q);
    // A colon ends the name "A" early: "B: x" is then its value, which is fine.
    if (is_tchar(static_cast<unsigned char>(c)) || c == ':') {
      CHECK(r == HELLO_PARSE_DONE);
    } else {
      REQUIRE(r == HELLO_PARSE_ERROR);
      CHECK(q.error_status == 400);
    }
  }
}

TEST_CASE("hello's parser refuses a control character anywhere in a header value, a tab excepted", "[hello][http]") {
  for (int c = 0; c < 256; ++c) {
    // A control character, or DEL (RFC 9110 5.5). A line feed splits the line, and the
    // rest ("x...z") is a header line without a colon: refused as well.
    const bool refused = (c < 0x20 && c != '\t') || c == 0x7f;
    for (std::size_t len = 1; len <= 40; ++len) {
      for (std::size_t at = 0; at < len; ++at) {
        std::string value(len, 'x');
        value[at] = static_cast<char>(c);
        // A value ends with "z": a tab or space at its end would otherwise be trimmed OWS.
        const std::string head = "GET / HTTP/1.1\r\nA: " + value + "z\r\n\r\n";
        hello_request q{};
        const hello_parse_result r = parse(head, q);
        if (refused != (r == HELLO_PARSE_ERROR)) {
          FAIL("byte " << c << " at " << at << " of a " << len << "-byte value: "
                       << (r == HELLO_PARSE_ERROR ? "refused" : "taken"));
        }
        if (refused) CHECK(q.error_status == 400);
      }
    }
  }
}

TEST_CASE("hello's parser reads the head a benchmark client sends", "[hello][http]") {
  hello_request q{};
  const std::string head =
      "GET /path?x=1 HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n"
      "Connection: Keep-Alive\r\nContent-Length: 5\r\n\r\nhello";
  REQUIRE(parse(head, q) == HELLO_PARSE_DONE);
  CHECK(q.method == HELLO_METHOD_GET);
  CHECK(std::string(q.path, q.path_len) == "/path");
  CHECK(std::string(q.query, q.query_len) == "x=1");
  CHECK(q.version_minor == 0);
  CHECK(q.keep_alive);
  CHECK(q.content_length == 5);
  CHECK(q.head_len == head.size() - 5);
}
