/* SPDX-License-Identifier: Apache-2.0 */
#include "http_parse.h"

#include <string.h>

/* RFC 9110 5.6.2: token characters (letters, digits and "!#$%&'*+-.^_`|~"), by byte
 * value; none from 128 up. A table, not a search per character. */
static const unsigned char kTchar[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
};

static bool is_tchar(unsigned char c) {
  return kTchar[c] != 0;
}

static char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive comparison of s[0, n) with a lower-case literal. */
static bool equals_ci(const char* s, size_t n, const char* lit) {
  size_t m = strlen(lit);
  if (n != m) return false;
  for (size_t i = 0; i < n; i++) {
    if (lower(s[i]) != lit[i]) return false;
  }
  return true;
}

static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

/* A field value may hold no control character but HTAB (RFC 9110 5.5). */
static bool is_value_ctl(unsigned char u) {
  return (u < ' ' && u != '\t') || u == 0x7f;
}

/* Whether the eight bytes at p may hold a control character: exact for "none" (a byte
 * below 0x20, a tab included, or a DEL sets it), so a clear word needs no byte check. */
static bool word_may_hold_ctl(const char* p) {
  const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
  uint64_t x;
  memcpy(&x, p, sizeof x);
  const uint64_t below_space = (x - ones * 0x20) & ~x & highs;
  const uint64_t y = x ^ (ones * 0x7f);
  const uint64_t del = (y - ones) & ~y & highs;
  return (below_space | del) != 0;
}

/* Whether v[0, n) holds a control character other than HTAB: a word at a time, the
 * last word overlapping the one before, bytes only where a word may hold one. */
static bool has_value_ctl(const char* v, size_t n) {
  if (n < 8) {
    for (size_t i = 0; i < n; i++)
      if (is_value_ctl((unsigned char)v[i])) return true;
    return false;
  }
  for (size_t i = 0;; i += 8) {
    if (i + 8 > n) i = n - 8;
    if (word_may_hold_ctl(v + i)) {
      for (size_t j = i; j < i + 8; j++)
        if (is_value_ctl((unsigned char)v[j])) return true;
    }
    if (i + 8 == n) return false;
  }
}

/* Returns the length of the line at p (up to end) without its CR LF or LF. */
static size_t line_length(const char* p, const char* end, const char** next) {
  const char* nl = memchr(p, '\n', (size_t)(end - p));
  /* The caller only walks lines inside a head whose blank line was found. */
  *next = nl + 1;
  size_t n = (size_t)(nl - p);
  if (n > 0 && p[n - 1] == '\r') n--;
  return n;
}

static int parse_request_line(const char* p, size_t n, struct hello_request* req) {
  const char* end = p + n;
  const char* q = p;
  while (q < end && is_tchar((unsigned char)*q)) q++;
  if (q == p || q == end || *q != ' ') return 400;
  size_t mlen = (size_t)(q - p);
  if (mlen == 3 && memcmp(p, "GET", 3) == 0) {
    req->method = HELLO_METHOD_GET;
  } else if (mlen == 4 && memcmp(p, "HEAD", 4) == 0) {
    req->method = HELLO_METHOD_HEAD;
  } else {
    req->method = HELLO_METHOD_OTHER;
  }

  const char* target = ++q;
  while (q < end && (unsigned char)*q > ' ' && *q != 0x7f) q++;
  if (q == target || q == end || *q != ' ') return 400;
  const char* target_end = q++;

  /* Exactly "HTTP/" DIGIT "." DIGIT up to the end of the line. */
  if (end - q != 8 || memcmp(q, "HTTP/", 5) != 0 || q[6] != '.') return 400;
  if (q[5] < '0' || q[5] > '9' || q[7] < '0' || q[7] > '9') return 400;
  if (q[5] != '1') return 505;
  req->version_minor = q[7] - '0';

  /* Absolute form (RFC 9112 3.2.2) must be accepted by servers; keep its
   * path. The asterisk form ("OPTIONS *") is kept as a path that routes to 404. */
  const char* path = target;
  if (*path != '/' && !(target_end - path == 1 && *path == '*')) {
    const char* authority = NULL;
    for (const char* s = path; s + 3 <= target_end; s++) {
      if (s[0] == ':' && s[1] == '/' && s[2] == '/') {
        authority = s + 3;
        break;
      }
    }
    if (authority == NULL) return 400;
    path = memchr(authority, '/', (size_t)(target_end - authority));
    if (path == NULL) {
      req->path = "/";
      req->path_len = 1;
      req->query = NULL;
      req->query_len = 0;
      return 0;
    }
  }
  const char* qmark = memchr(path, '?', (size_t)(target_end - path));
  req->path = path;
  req->path_len = (size_t)((qmark != NULL ? qmark : target_end) - path);
  req->query = qmark != NULL ? qmark + 1 : NULL;
  req->query_len = qmark != NULL ? (size_t)(target_end - qmark - 1) : 0;
  return 0;
}

/* Content-Length: 1*DIGIT, without overflow. */
static bool parse_length(const char* v, size_t n, uint64_t* out) {
  if (n == 0 || n > 19) return false;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return false;
    x = x * 10 + (uint64_t)(v[i] - '0');
  }
  *out = x;
  return true;
}

struct head_flags {
  bool has_length;
  bool has_transfer_encoding;
  bool conn_close;
  bool conn_keep_alive;
};

/* Connection: a comma-separated list of options, case-insensitive. */
static void parse_connection(const char* v, size_t n, struct head_flags* f) {
  const char* end = v + n;
  while (v < end) {
    while (v < end && (*v == ',' || is_ows(*v))) v++;
    const char* t = v;
    while (v < end && *v != ',' && !is_ows(*v)) v++;
    if (equals_ci(t, (size_t)(v - t), "close")) f->conn_close = true;
    if (equals_ci(t, (size_t)(v - t), "keep-alive")) f->conn_keep_alive = true;
  }
}

static int parse_header(const char* p, size_t n, struct hello_request* req, struct head_flags* f) {
  /* obs-fold (a line starting with whitespace) is rejected, RFC 9112 5.2. The name is
   * tchars up to the first colon: this also rejects whitespace before the colon, RFC
   * 9112 5.1, and a line without one. */
  const char* end = p + n;
  const char* colon = p;
  while (colon < end && is_tchar((unsigned char)*colon)) colon++;
  if (colon == p || colon == end || *colon != ':') return 400;
  size_t name_len = (size_t)(colon - p);
  const char* v = colon + 1;
  while (v < end && is_ows(*v)) v++;
  while (end > v && is_ows(end[-1])) end--;
  if (has_value_ctl(v, (size_t)(end - v))) return 400;
  size_t vlen = (size_t)(end - v);

  if (equals_ci(p, name_len, "content-length")) {
    uint64_t len;
    if (!parse_length(v, vlen, &len)) return 400;
    if (f->has_length && len != req->content_length) return 400;
    f->has_length = true;
    req->content_length = len;
  } else if (equals_ci(p, name_len, "transfer-encoding")) {
    f->has_transfer_encoding = true;
  } else if (equals_ci(p, name_len, "connection")) {
    parse_connection(v, vlen, f);
  }
  return 0;
}

/* Parses a head known to be complete in buf[start, head_end). */
static int parse_head(const char* buf, size_t start, size_t head_end, struct hello_request* req) {
  const char* end = buf + head_end;
  const char* next;
  const char* p = buf + start;
  size_t n = line_length(p, end, &next);
  int status = parse_request_line(p, n, req);
  if (status != 0) return status;

  struct head_flags f = {0};
  for (p = next; p < end; p = next) {
    n = line_length(p, end, &next);
    if (n == 0) break;
    status = parse_header(p, n, req, &f);
    if (status != 0) return status;
  }
  /* A body framed by chunked coding cannot be skipped without decoding it. */
  if (f.has_transfer_encoding) return f.has_length ? 400 : 501;
  req->keep_alive = !f.conn_close && (req->version_minor >= 1 || f.conn_keep_alive);
  return 0;
}

enum hello_parse_result hello_http_parse(const char* buf, size_t len, size_t* scan, size_t limit,
                                         struct hello_request* req) {
  /* Empty lines before a request line are ignored, RFC 9112 2.2. */
  size_t start = 0;
  while (start < len && (buf[start] == '\r' || buf[start] == '\n')) start++;
  size_t pos = *scan > start ? *scan : start;

  size_t head_end = 0;
  while (pos < len) {
    const char* nl = memchr(buf + pos, '\n', len - pos);
    if (nl == NULL) break;
    size_t at = (size_t)(nl - buf);
    size_t n = at - pos;
    if (n > 0 && buf[at - 1] == '\r') n--;
    if (n == 0 && pos > start) {
      head_end = at + 1;
      break;
    }
    pos = at + 1;
  }
  if (head_end == 0 || head_end > limit) {
    *scan = pos;
    if (len < limit && head_end == 0) return HELLO_PARSE_INCOMPLETE;
    req->error_status = 431;
    return HELLO_PARSE_ERROR;
  }

  req->content_length = 0;
  req->keep_alive = false;
  req->head_len = head_end;
  int status = parse_head(buf, start, head_end, req);
  if (status != 0) {
    req->error_status = status;
    req->keep_alive = false;
    return HELLO_PARSE_ERROR;
  }
  req->error_status = 0;
  return HELLO_PARSE_DONE;
}
