// SPDX-License-Identifier: Apache-2.0
// Fuzz target: forkpool-hello's HTTP/1.x request-head parser. The input is what a client
// sends on one connection, read as conn.c reads it: heads one after another, each
// followed by the body its Content-Length announces. Every head is parsed twice: as the
// bytes arrive one at a time (every split there is), and at once; both must agree, and
// the result must describe bytes inside the buffer. The bytes past what has "arrived" are
// poisoned, so AddressSanitizer reports any read beyond the length the parser was given.

#include <sanitizer/asan_interface.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

extern "C" {
#include "worker/hello/http_parse.h"
}

namespace {

constexpr std::size_t kLimit = 16384;  // HELLO_HEAD_LIMIT (worker/hello/conn.h)

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "http_parse: %s\n", what);
  std::abort();
}

bool inside(const char* p, std::size_t n, const char* buf, std::size_t len) {
  return p >= buf && n <= len && static_cast<std::size_t>(p - buf) <= len - n;
}

void check(hello_parse_result r, const hello_request& q, const char* buf, std::size_t len, std::size_t scan,
           std::size_t limit) {
  switch (r) {
    case HELLO_PARSE_INCOMPLETE:
      if (len >= limit) fail("incomplete at or past the limit");
      if (scan > len) fail("scan offset past the data");
      return;
    case HELLO_PARSE_ERROR:
      if (q.error_status != 400 && q.error_status != 431 && q.error_status != 501 && q.error_status != 505)
        fail("an error status other than 400, 431, 501, 505");
      return;
    case HELLO_PARSE_DONE:
      break;
    default:
      fail("an unknown result");
  }
  if (q.head_len == 0 || q.head_len > len || q.head_len > limit) fail("head_len outside the data or the limit");
  if (buf[q.head_len - 1] != '\n') fail("the head does not end with a line feed");
  if (q.error_status != 0) fail("an error status with a complete head");
  if (q.content_length > 9'999'999'999'999'999'999ULL) fail("content_length of more than 19 digits");
  if (q.version_minor < 0 || q.version_minor > 9) fail("version_minor is not one digit");
  if (q.method != HELLO_METHOD_GET && q.method != HELLO_METHOD_HEAD && q.method != HELLO_METHOD_OTHER)
    fail("an unknown method");
  // The path points into the head, except the "/" of an absolute-form target without one.
  const bool static_root = q.path_len == 1 && q.path != nullptr && !inside(q.path, 1, buf, q.head_len) &&
                           std::memcmp(q.path, "/", 1) == 0;
  if (q.path == nullptr || (!static_root && !inside(q.path, q.path_len, buf, q.head_len)))
    fail("path outside the head");
  if (q.query != nullptr && !inside(q.query, q.query_len, buf, q.head_len)) fail("query outside the head");
  if (q.query == nullptr && q.query_len != 0) fail("a query length without a query");
}

bool same(hello_parse_result ra, const hello_request& a, const char* abuf, hello_parse_result rb,
          const hello_request& b, const char* bbuf) {
  if (ra != rb) return false;
  if (ra == HELLO_PARSE_ERROR) return a.error_status == b.error_status;
  if (ra != HELLO_PARSE_DONE) return true;
  auto offset = [](const char* p, const char* buf) { return p == nullptr ? -1 : p - buf; };
  return a.head_len == b.head_len && a.method == b.method && a.version_minor == b.version_minor &&
         a.keep_alive == b.keep_alive && a.content_length == b.content_length && a.path_len == b.path_len &&
         a.query_len == b.query_len && offset(a.query, abuf) == offset(b.query, bbuf) &&
         (a.path_len == 0 || std::memcmp(a.path, b.path, a.path_len) == 0);
}

// Parses buf[0, len) at once, with a fresh scan offset.
hello_parse_result parse_at_once(const char* buf, std::size_t len, std::size_t limit, hello_request& q) {
  std::size_t scan = 0;
  q = hello_request{};
  const hello_parse_result r = hello_http_parse(buf, len, &scan, limit, &q);
  check(r, q, buf, len, scan, limit);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // An allocation of exactly `size` bytes: ASan's redzone starts where the input ends.
  const std::unique_ptr<char[]> owned(new char[size == 0 ? 1 : size]);
  char* const all = owned.get();
  if (size > 0) std::memcpy(all, data, size);

  std::size_t pos = 0;
  while (pos < size) {
    const char* buf = all + pos;
    const std::size_t avail = size - pos;

    // Byte by byte, as a slow client sends it: the scan offset carries over.
    ASAN_POISON_MEMORY_REGION(buf, avail);
    std::size_t scan = 0, len = 0;
    hello_request inc{};
    hello_parse_result r = HELLO_PARSE_INCOMPLETE;
    while (len < avail && r == HELLO_PARSE_INCOMPLETE) {
      ASAN_UNPOISON_MEMORY_REGION(buf + len, 1);
      ++len;
      inc = hello_request{};
      r = hello_http_parse(buf, len, &scan, kLimit, &inc);
      check(r, inc, buf, len, scan, kLimit);
    }
    ASAN_UNPOISON_MEMORY_REGION(buf, avail);

    // At once, up to where the byte-by-byte parse stopped: the same answer.
    hello_request once{};
    if (!same(r, inc, buf, parse_at_once(buf, len, kLimit, once), once, buf))
      fail("the byte-by-byte parse and the parse at once disagree");

    // With a limit below the head, a complete head is refused with 431.
    if (r == HELLO_PARSE_DONE && inc.head_len > 1) {
      hello_request small{};
      const hello_parse_result rs = parse_at_once(buf, len, inc.head_len - 1, small);
      if (rs != HELLO_PARSE_ERROR || small.error_status != 431) fail("a head longer than the limit is not 431");
    }

    if (r != HELLO_PARSE_DONE) break;  // incomplete at the end, or an error: conn.c closes
    pos += inc.head_len;
    pos += inc.content_length < size - pos ? static_cast<std::size_t>(inc.content_length) : size - pos;
  }
  return 0;
}
