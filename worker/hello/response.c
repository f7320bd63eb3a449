/* SPDX-License-Identifier: Apache-2.0 */
#include "response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define COMMON_MAX 320
#define NAME_MAX_LEN 64
#define HELLO_BODY "Hello, world\n"

static const char* const conn_lines[] = {
    [HELLO_CONN_DEFAULT] = "",
    [HELLO_CONN_KEEP_ALIVE] = "Connection: keep-alive\r\n",
    [HELLO_CONN_CLOSE] = "Connection: close\r\n",
};

/* Headers shared by all responses, Date first so its offset is fixed. */
static char common[COMMON_MAX];
static size_t common_len;
static const size_t date_offset = sizeof "Date: " - 1;

/* The hello response per Connection variant, fully formatted. */
static struct {
  char text[HELLO_RESPONSE_MAX];
  size_t len;
  size_t head_len;
  size_t date_at;
} hello[3];

static time_t date_second = -1;

static const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Internal Server Error";
  }
}

/* Copies an identifier from the environment into a header value, dropping
 * characters that could break the header (CR, LF, other controls). */
static void append_sanitized(char* dst, size_t* len, size_t cap, const char* src) {
  for (size_t i = 0; src[i] != '\0' && i < NAME_MAX_LEN && *len + 1 < cap; i++) {
    unsigned char c = (unsigned char)src[i];
    if (c >= ' ' && c != 0x7f) dst[(*len)++] = (char)c;
  }
}

static void append(char* dst, size_t* len, const char* src, size_t n) {
  memcpy(dst + *len, src, n);
  *len += n;
}

static void append_str(char* dst, size_t* len, const char* src) {
  append(dst, len, src, strlen(src));
}

static void append_uint(char* dst, size_t* len, unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) dst[(*len)++] = tmp[--n];
}

void hello_response_init(pid_t pid, const char* pool, const char* worker) {
  common_len = 0;
  append_str(common, &common_len, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
  append_str(common, &common_len, "Server: forkpool-hello\r\nX-Worker-Pid: ");
  append_uint(common, &common_len, (unsigned long long)pid);
  append_str(common, &common_len, "\r\n");
  if (pool != NULL && worker != NULL) {
    append_str(common, &common_len, "X-Worker: ");
    append_sanitized(common, &common_len, COMMON_MAX, pool);
    common[common_len++] = '-';
    append_sanitized(common, &common_len, COMMON_MAX, worker);
    append_str(common, &common_len, "\r\n");
  }

  for (int c = HELLO_CONN_DEFAULT; c <= HELLO_CONN_CLOSE; c++) {
    size_t len = hello_response_compose(hello[c].text, 200, "", HELLO_BODY, sizeof HELLO_BODY - 1,
                                        (enum hello_conn_header)c, false);
    hello[c].len = len;
    hello[c].head_len = len - (sizeof HELLO_BODY - 1);
    hello[c].date_at = sizeof "HTTP/1.1 200 OK\r\n" - 1 + date_offset;
  }
  date_second = -1;
}

void hello_response_set_time(time_t now) {
  if (now == date_second) return;
  date_second = now;
  struct tm tm;
  char date[DATE_LEN + 1];
  /* The C locale is in effect (setlocale is never called), so day and month
   * names are the English ones RFC 9110 requires. */
  if (gmtime_r(&now, &tm) == NULL ||
      strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) != DATE_LEN) {
    return;
  }
  memcpy(common + date_offset, date, DATE_LEN);
  for (int c = HELLO_CONN_DEFAULT; c <= HELLO_CONN_CLOSE; c++) {
    memcpy(hello[c].text + hello[c].date_at, date, DATE_LEN);
  }
}

size_t hello_response_hello(char* out, enum hello_conn_header conn, bool head_only) {
  size_t len = head_only ? hello[conn].head_len : hello[conn].len;
  memcpy(out, hello[conn].text, len);
  return len;
}

size_t hello_response_compose(char* out, int status, const char* extra, const char* body,
                              size_t body_len, enum hello_conn_header conn, bool head_only) {
  /* Everything but the body and extra headers is bounded by construction
   * (well under 600 bytes); bound those two before writing anything. */
  if (body_len + strlen(extra) > 256) abort();
  size_t len = 0;
  append_str(out, &len, "HTTP/1.1 ");
  append_uint(out, &len, (unsigned long long)status);
  out[len++] = ' ';
  append_str(out, &len, reason(status));
  append_str(out, &len, "\r\n");
  append(out, &len, common, common_len);
  append_str(out, &len, extra);
  append_str(out, &len, "Content-Type: text/plain\r\nContent-Length: ");
  append_uint(out, &len, (unsigned long long)body_len);
  append_str(out, &len, "\r\n");
  append_str(out, &len, conn_lines[conn]);
  append_str(out, &len, "\r\n");
  if (!head_only) append(out, &len, body, body_len);
  return len;
}
