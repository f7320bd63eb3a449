/* SPDX-License-Identifier: Apache-2.0 */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_parse.h"
#include "log.h"
#include "routes.h"

#define IN_INITIAL 4096
#define IDLE_TIMEOUT_MS 60000  /* no byte in or out for this long: close */
#define DRAIN_TIMEOUT_MS 5000  /* the same while draining */
/* While draining, an idle keep-alive connection waits this long for its next request,
 * which is answered with Connection: close. Closing it at once would race with a
 * request already on its way: the client would see its connection reset with nothing
 * answered, and most clients (ab -k, wrk) count that as a failure rather than retry. */
#define IDLE_DRAIN_GRACE_MS 1000
#define LINGER_TIMEOUT_MS 2000 /* a lingering close waits this long for EOF */

/* Connections closed recently, kept with their input buffer for the next ones: a worker
 * serving one connection after another then allocates nothing per connection. */
#define SPARE_MAX 16
#define SPARE_BUFFER_MAX (64 * 1024) /* a buffer grown beyond this is given back */
static struct hello_conn* spare;
static unsigned n_spare;

struct hello_conn* hello_conn_create(int fd, int64_t now_ms) {
  struct hello_conn* c = spare;
  if (c != NULL) {
    spare = c->next;
    n_spare--;
  } else {
    c = malloc(sizeof *c);
    if (c == NULL) return NULL;
    c->in = malloc(IN_INITIAL);
    if (c->in == NULL) {
      free(c);
      return NULL;
    }
    c->in_cap = IN_INITIAL;
  }
  c->src.kind = HELLO_SOURCE_CONN;
  c->prev = c->next = NULL;
  c->fd = fd;
  c->interest = EPOLLIN;
  c->registered = false;
  c->close_after = false;
  c->lingering = false;
  c->served = false;
  c->counted = false;
  c->passed = false;
  c->last = false;
  c->last_active_ms = now_ms;
  c->body_left = 0;
  c->scan = 0;
  c->in_len = 0;
  c->out_off = c->out_len = 0;
  return c;
}

void hello_conn_release(struct hello_conn* c) {
  if (n_spare < SPARE_MAX && c->in_cap <= SPARE_BUFFER_MAX) {
    c->next = spare;
    spare = c;
    n_spare++;
    return;
  }
  free(c->in);
  free(c);
}

void hello_conn_destroy(struct hello_conn* c) {
  close(c->fd);
  hello_conn_release(c);
}

static int set_interest(struct hello_loop* loop, struct hello_conn* c, uint32_t events) {
  if (c->registered && c->interest == events) return 0;
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(loop->epfd, c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0) return -1;
  c->interest = events;
  c->registered = true;
  return 0;
}

int hello_conn_watch(struct hello_loop* loop, struct hello_conn* c) { return set_interest(loop, c, EPOLLIN); }

/* Waits for `events`; a connection that cannot be watched at all is closed rather than
 * left to the idle sweep. */
static void wait_or_close(struct hello_loop* loop, struct hello_conn* c, uint32_t events) {
  if (set_interest(loop, c, events) != 0 && !c->registered) {
    hello_log("epoll_ctl(connection fd %d): %s", c->fd, strerror(errno));
    hello_loop_close_conn(loop, c);
  }
}

/* Sends pending output. Returns 1 when all is sent, 0 when the socket is
 * full, -1 when the connection is broken. */
static int flush(struct hello_loop* loop, struct hello_conn* c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += (size_t)n;
      c->last_active_ms = loop->now_ms;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return 0;
    } else {
      return -1;
    }
  }
  c->out_off = c->out_len = 0;
  return 1;
}

struct block_ctx {
  struct hello_loop* loop;
  struct hello_conn* conn;
};

static void before_block(void* ctx) {
  struct hello_conn* c = ((struct block_ctx*)ctx)->conn;
  /* Best effort and non-blocking: what does not fit is sent after the block. */
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n <= 0) return;
    c->out_off += (size_t)n;
  }
}

static bool after_block(void* ctx) {
  struct hello_loop* loop = ((struct block_ctx*)ctx)->loop;
  hello_loop_update_clock(loop);
  hello_loop_poll_signals(loop);
  return loop->drain_requested || loop->draining;
}

/* The server ends the connection after its last response. When the peer may
 * still be sending, the write side is shut down first and input is discarded
 * until EOF: closing with unread input would reset the connection, and the
 * reset could destroy the response before the client read it. */
static void finish(struct hello_loop* loop, struct hello_conn* c) {
  int unread = 0;
  bool peer_sending =
      c->in_len > 0 || c->body_left > 0 || (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0);
  if (!peer_sending || shutdown(c->fd, SHUT_WR) != 0) {
    hello_loop_close_conn(loop, c);
    return;
  }
  c->lingering = true;
  c->last_active_ms = loop->now_ms;
  wait_or_close(loop, c, EPOLLIN);
}

static void linger_read(struct hello_loop* loop, struct hello_conn* c) {
  for (;;) {
    ssize_t n = recv(c->fd, c->in, c->in_cap, 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    hello_loop_close_conn(loop, c);
    return;
  }
}

/* keepalive = "master": idle connections go back to the master between requests. */
static bool parks(const struct hello_loop* loop, const struct hello_conn* c) {
  return c->passed && !c->last && loop->worker != NULL && fp_worker_keepalive_master(loop->worker);
}

/* Answers the complete requests in the input buffer, in order. Returns true
 * when it stopped because the output buffer has no room for another answer. */
static bool process(struct hello_loop* loop, struct hello_conn* c) {
  if (c->out_off > 0) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  size_t pos = 0;
  bool out_full = false;
  while (!c->close_after) {
    if (c->body_left > 0) {
      size_t take = c->in_len - pos < c->body_left ? c->in_len - pos : (size_t)c->body_left;
      pos += take;
      c->body_left -= take;
      if (c->body_left > 0) break;
    }
    if (pos == c->in_len) break;
    if (HELLO_CONN_OUT_CAP - c->out_len < HELLO_RESPONSE_MAX) {
      out_full = true;
      break;
    }
    struct hello_request req;
    enum hello_parse_result r =
        hello_http_parse(c->in + pos, c->in_len - pos, &c->scan, HELLO_HEAD_LIMIT, &req);
    if (r == HELLO_PARSE_INCOMPLETE) break;
    c->scan = 0;
    if (r == HELLO_PARSE_ERROR) {
      c->out_len += hello_route_error(req.error_status, c->out + c->out_len);
      c->close_after = true;
      break;
    }
    pos += req.head_len;
    c->body_left = req.content_length;
    /* Draining, a connection is kept only if it can be parked: the master then hands its
     * next request to another worker. One the master will not hold again is closed. */
    bool keep = req.keep_alive && !c->last && (!loop->draining || parks(loop, c));
    enum hello_conn_header ch = !keep                    ? HELLO_CONN_CLOSE
                                : req.version_minor == 0 ? HELLO_CONN_KEEP_ALIVE
                                                         : HELLO_CONN_DEFAULT;
    struct block_ctx bctx = {loop, c};
    struct hello_block_hooks hooks = {before_block, after_block, &bctx};
    c->out_len += hello_route(&req, &ch, c->out + c->out_len, &hooks);
    c->close_after = ch == HELLO_CONN_CLOSE;
    c->served = true;
  }
  if (pos > 0) {
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
  }
  return out_full;
}

/* Answers what can be answered and sends it, until it must wait for input
 * or for room in the socket. */
static void run(struct hello_loop* loop, struct hello_conn* c) {
  for (;;) {
    bool out_full = process(loop, c);
    int sent = flush(loop, c);
    if (sent < 0) {
      hello_loop_close_conn(loop, c);
      return;
    }
    if (sent == 0) {
      wait_or_close(loop, c, EPOLLOUT);
      return;
    }
    if (c->close_after) {
      finish(loop, c);
      return;
    }
    if (!out_full) break;
  }
  /* Everything answered and sent, nothing of a next request read yet (bytes still in
   * the socket go along with it): the master holds it until the next request. */
  if (parks(loop, c) && c->served && c->in_len == 0 && c->body_left == 0) {
    hello_loop_park_conn(loop, c);
    return;
  }
  wait_or_close(loop, c, EPOLLIN);
}

static void on_readable(struct hello_loop* loop, struct hello_conn* c) {
  if (c->in_len == c->in_cap) {
    /* Grows only while a head is incomplete; process() answers 431 at the limit. */
    size_t cap = c->in_cap * 2 < HELLO_HEAD_LIMIT ? c->in_cap * 2 : HELLO_HEAD_LIMIT;
    char* in = cap > c->in_cap ? realloc(c->in, cap) : NULL;
    if (in == NULL) {
      hello_loop_close_conn(loop, c);
      return;
    }
    c->in = in;
    c->in_cap = cap;
  }
  ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
  if (n > 0) {
    c->in_len += (size_t)n;
    c->last_active_ms = loop->now_ms;
    run(loop, c);
  } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    /* Nothing yet: wait for it (a no-op for a connection watched already). */
    wait_or_close(loop, c, EPOLLIN);
  } else {
    /* EOF or error: nothing more can be answered on this connection. */
    hello_loop_close_conn(loop, c);
  }
}

void hello_conn_handle(struct hello_loop* loop, struct hello_conn* c, uint32_t events) {
  if (c->lingering) {
    linger_read(loop, c);
  } else if (c->interest == EPOLLOUT) {
    /* Writable, or EPOLLERR/EPOLLHUP, which the send in run() reports. */
    run(loop, c);
  } else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    on_readable(loop, c);
  }
}

void hello_conn_start(struct hello_loop* loop, struct hello_conn* c) { on_readable(loop, c); }

void hello_conn_drain(struct hello_loop* loop, struct hello_conn* c) {
  if (c->lingering) return;
  if (c->out_off < c->out_len) c->close_after = true; /* a response is on its way: send it, then close */
  /* Otherwise the connection is idle between requests, a request is partly received,
   * or the first one is yet to come on a connection just accepted: the next answer
   * says Connection: close, and IDLE_DRAIN_GRACE_MS or DRAIN_TIMEOUT_MS bound the
   * wait for it. Both count from now: a connection idle for a while already gets the
   * whole grace, or a request on its way would meet a closed connection. */
  c->last_active_ms = loop->now_ms;
}

void hello_conn_check_timeout(struct hello_loop* loop, struct hello_conn* c) {
  bool idle = c->served && c->in_len == 0 && c->out_off == c->out_len;
  int64_t limit = c->lingering              ? LINGER_TIMEOUT_MS
                  : loop->draining && idle ? IDLE_DRAIN_GRACE_MS
                  : loop->draining         ? DRAIN_TIMEOUT_MS
                                           : IDLE_TIMEOUT_MS;
  if (loop->now_ms - c->last_active_ms >= limit) hello_loop_close_conn(loop, c);
}
