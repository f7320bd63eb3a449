/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* An HTTP/1.x request-head parser: no allocation, no copies; the request's
 * fields point into the caller's buffer and are valid until it changes. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hello_method { HELLO_METHOD_GET, HELLO_METHOD_HEAD, HELLO_METHOD_OTHER };

enum hello_parse_result {
  HELLO_PARSE_INCOMPLETE, /* the head's blank line has not arrived yet */
  HELLO_PARSE_DONE,       /* a complete, valid head */
  HELLO_PARSE_ERROR,      /* answer error_status and close the connection */
};

struct hello_request {
  enum hello_method method;
  const char* path; /* origin-form path, without the query */
  size_t path_len;
  const char* query; /* after '?', NULL when the target has none */
  size_t query_len;
  int version_minor;       /* HTTP/1.<minor> */
  bool keep_alive;         /* after the version's default and Connection */
  uint64_t content_length; /* body bytes that follow the head (0 if none) */
  size_t head_len;         /* bytes of the head, blank line included */
  int error_status;        /* with HELLO_PARSE_ERROR: 400, 431, 501 or 505 */
};

/* Parses the head at the start of buf[0, len). *scan carries the offset where
 * the search for the blank line resumes; it must be 0 for a new request and is
 * relative to buf, so the caller may move the bytes between calls. A head not
 * complete within `limit` bytes is an error with status 431. */
enum hello_parse_result hello_http_parse(const char* buf, size_t len, size_t* scan, size_t limit,
                                         struct hello_request* req);
