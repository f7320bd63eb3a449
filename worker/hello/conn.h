/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One HTTP connection: non-blocking reads into a per-connection buffer,
 * in-order answers to pipelined requests, and the way it ends (close, or a
 * lingering close when the peer may still be sending). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#define HELLO_HEAD_LIMIT 16384  /* larger request heads get 431 */
#define HELLO_CONN_OUT_CAP 4096 /* responses to pipelined requests, batched */

struct hello_conn {
  struct hello_source src; /* first: epoll data.ptr points here */
  struct hello_conn *prev, *next;
  int fd;
  uint32_t interest; /* EPOLLIN or EPOLLOUT, as registered */
  bool registered;   /* in the loop's epoll set (a passed connection joins it only to wait) */
  bool close_after;  /* close once the pending output is sent */
  bool lingering;    /* write side shut down; discarding input until EOF */
  bool served;       /* answered at least one request (so it can be idle) */
  bool counted;      /* on the scoreboard as busy (shared dispatch under forkpool) */
  bool passed;       /* came from the master; `master` must be reported done */
  bool last;         /* the master will not hold it again (fp_conn_last): close after answering */
  fp_conn master;
  int64_t last_active_ms;
  uint64_t body_left; /* request body bytes still to skip */
  size_t scan;        /* resume offset of the head parser */
  char* in;
  size_t in_len, in_cap;
  size_t out_off, out_len;
  char out[HELLO_CONN_OUT_CAP];
};

/* Returns NULL when out of memory; the fd is then still the caller's. */
struct hello_conn* hello_conn_create(int fd, int64_t now_ms);
/* Closes the connection's fd and releases it. */
void hello_conn_destroy(struct hello_conn* c);
/* Releases a connection whose fd is closed or handed on already. */
void hello_conn_release(struct hello_conn* c);

void hello_conn_handle(struct hello_loop* loop, struct hello_conn* c, uint32_t events);
/* Watches the connection for input (registers it if it is not yet): 0, or -1 with errno. */
int hello_conn_watch(struct hello_loop* loop, struct hello_conn* c);
/* Reads and answers what has arrived on a connection not yet watched; it is watched only
 * if it must wait. A passed connection's request has usually arrived by the time the
 * master hands it over (always, for a parked one), so most are answered and closed or
 * parked without an epoll registration. */
void hello_conn_start(struct hello_loop* loop, struct hello_conn* c);

/* Drain: every connection closes after its next response (Connection: close); one
 * idle between requests waits a short grace for that request, then closes. */
void hello_conn_drain(struct hello_loop* loop, struct hello_conn* c);

/* Closes the connection if it has been inactive too long. */
void hello_conn_check_timeout(struct hello_loop* loop, struct hello_conn* c);
