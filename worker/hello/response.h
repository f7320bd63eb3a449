/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Preformatted HTTP responses. The headers every response shares (Date,
 * Server, X-Worker-Pid, X-Worker) are formatted once at startup; the Date is
 * patched in place when the second changes. The hot path is one memcpy. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

/* Room a caller must have before composing any one response. */
#define HELLO_RESPONSE_MAX 1024

enum hello_conn_header {
  HELLO_CONN_DEFAULT,    /* HTTP/1.1 keep-alive: no Connection header */
  HELLO_CONN_KEEP_ALIVE, /* HTTP/1.0 keep-alive: "Connection: keep-alive" */
  HELLO_CONN_CLOSE,      /* the server closes after this response */
};

/* pool and worker may be NULL; X-Worker is sent only when both are set. */
void hello_response_init(pid_t pid, const char* pool, const char* worker);

/* Refreshes the Date header; cheap when the second has not changed. */
void hello_response_set_time(time_t now);

/* The "Hello, world" response; returns its length. */
size_t hello_response_hello(char* out, enum hello_conn_header conn, bool head_only);

/* Any other response: `extra` is "" or complete header lines ending in CRLF.
 * body_len plus extra must stay well under HELLO_RESPONSE_MAX. */
size_t hello_response_compose(char* out, int status, const char* extra, const char* body,
                              size_t body_len, enum hello_conn_header conn, bool head_only);
