/* SPDX-License-Identifier: Apache-2.0 */
#include "routes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SLEEP_MAX_MS 600000u /* ten minutes: longer is surely a typo */

static bool path_is(const struct hello_request* req, const char* p) {
  size_t n = strlen(p);
  return req->path_len == n && memcmp(req->path, p, n) == 0;
}

/* Finds ms=N among the &-separated query parameters. */
static bool query_ms(const struct hello_request* req, unsigned* ms) {
  const char* q = req->query;
  const char* end = q + req->query_len;
  while (q != NULL && q < end) {
    const char* amp = memchr(q, '&', (size_t)(end - q));
    const char* stop = amp != NULL ? amp : end;
    if (stop - q > 3 && memcmp(q, "ms=", 3) == 0) {
      unsigned long v = 0;
      for (const char* d = q + 3; d < stop; d++) {
        if (*d < '0' || *d > '9') return false;
        v = v * 10 + (unsigned long)(*d - '0');
        if (v > SLEEP_MAX_MS) return false;
      }
      *ms = (unsigned)v;
      return true;
    }
    q = stop + 1;
  }
  return false;
}

/* Occupies the whole process, like a blocking CGI or PHP handler would;
 * a signal (EINTR) does not shorten the sleep. */
static void sleep_ms(unsigned ms) {
  struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

static size_t text(char* out, int status, const char* body, enum hello_conn_header conn,
                   bool head) {
  return hello_response_compose(out, status, "", body, strlen(body), conn, head);
}

size_t hello_route(const struct hello_request* req, enum hello_conn_header* conn, char* out,
                   const struct hello_block_hooks* hooks) {
  bool head = req->method == HELLO_METHOD_HEAD;
  bool known = path_is(req, "/") || path_is(req, "/sleep");
  if (!known) return text(out, 404, "Not Found\n", *conn, head);
  if (req->method == HELLO_METHOD_OTHER) {
    return hello_response_compose(out, 405, "Allow: GET, HEAD\r\n", "Method Not Allowed\n",
                                  sizeof "Method Not Allowed\n" - 1, *conn, false);
  }
  if (path_is(req, "/")) return hello_response_hello(out, *conn, head);

  unsigned ms;
  if (!query_ms(req, &ms)) return text(out, 400, "expected /sleep?ms=0..600000\n", *conn, head);
  hooks->before(hooks->ctx);
  sleep_ms(ms);
  if (hooks->after(hooks->ctx)) *conn = HELLO_CONN_CLOSE;
  char body[48];
  int n = snprintf(body, sizeof body, "slept %u ms\n", ms);
  return hello_response_compose(out, 200, "", body, (size_t)n, *conn, head);
}

size_t hello_route_error(int status, char* out) {
  const char* body;
  switch (status) {
    case 431:
      body = "Request Header Fields Too Large\n";
      break;
    case 501:
      body = "Transfer-Encoding is not supported\n";
      break;
    case 505:
      body = "HTTP Version Not Supported\n";
      break;
    default:
      body = "Bad Request\n";
      break;
  }
  return text(out, status, body, HELLO_CONN_CLOSE, false);
}
