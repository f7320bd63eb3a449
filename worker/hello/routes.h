/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the server answers: GET / and GET /sleep?ms=N; 404 otherwise. */

#include <stdbool.h>
#include <stddef.h>

#include "http_parse.h"
#include "response.h"

/* Around a request that blocks the process. `before` runs first, so that
 * answers to earlier pipelined requests are not held back by the block;
 * `after` returns true when the connection must close after this answer
 * (a stop was requested meanwhile). */
struct hello_block_hooks {
  void (*before)(void* ctx);
  bool (*after)(void* ctx);
  void* ctx;
};

/* Writes the answer to req into out (at least HELLO_RESPONSE_MAX bytes) and
 * returns its length. *conn may change to HELLO_CONN_CLOSE across a block. */
size_t hello_route(const struct hello_request* req, enum hello_conn_header* conn, char* out,
                   const struct hello_block_hooks* hooks);

/* The answer to a head that failed to parse; the connection closes after it. */
size_t hello_route_error(int status, char* out);
