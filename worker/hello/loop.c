/* SPDX-License-Identifier: Apache-2.0 */
#include "loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "conn.h"
#include "log.h"
#include "response.h"

#define MAX_EVENTS 128
#define SWEEP_INTERVAL_MS 1000
#define ACCEPT_PAUSE_MS 100 /* after EMFILE and the like, so the loop does not spin */

/* The coarse clock (a few milliseconds' resolution, no hardware read): the loop's times
 * are timeouts, the shortest of them 100 ms. */
static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hello_loop_update_clock(struct hello_loop* loop) {
  loop->now_ms = monotonic_ms();
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME_COARSE, &wall);
  hello_response_set_time(wall.tv_sec);
}

int hello_loop_init(struct hello_loop* loop, int signal_fd) {
  memset(loop, 0, sizeof *loop);
  loop->signal_src.kind = HELLO_SOURCE_SIGNAL;
  loop->signal_fd = signal_fd;
  loop->listeners_armed = true;
  loop->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epfd < 0) {
    hello_log("epoll_create1: %s", strerror(errno));
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &loop->signal_src};
  if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, signal_fd, &ev) != 0) {
    hello_log("epoll_ctl(signal pipe): %s", strerror(errno));
    return -1;
  }
  hello_loop_update_clock(loop);
  loop->next_sweep_ms = loop->now_ms + SWEEP_INTERVAL_MS;
  return 0;
}

static int arm_listener(struct hello_loop* loop, struct hello_loop_listener* ll) {
  /* EPOLLEXCLUSIVE: with many workers on one shared socket, a new connection
   * wakes one waiting worker instead of all of them. */
  struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &ll->src};
  return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, ll->l.fd, &ev);
}

int hello_loop_add_listener(struct hello_loop* loop, const struct hello_listener* l) {
  if (loop->n_listeners == HELLO_MAX_LISTENERS) return -1;
  struct hello_loop_listener* ll = &loop->listeners[loop->n_listeners];
  ll->src.kind = HELLO_SOURCE_LISTENER;
  ll->l = *l;
  if (arm_listener(loop, ll) != 0) {
    hello_log("epoll_ctl(listener %s): %s", l->name, strerror(errno));
    return -1;
  }
  loop->n_listeners++;
  return 0;
}

static void set_listeners_armed(struct hello_loop* loop, bool armed) {
  if (loop->listeners_armed == armed) return;
  for (size_t i = 0; i < loop->n_listeners; i++) {
    if (armed) {
      arm_listener(loop, &loop->listeners[i]);
    } else {
      epoll_ctl(loop->epfd, EPOLL_CTL_DEL, loop->listeners[i].l.fd, NULL);
    }
  }
  loop->listeners_armed = armed;
}

/* Returns the new connection, or NULL after closing fd. `watch`: register it for input
 * now; otherwise the caller reads it first (hello_conn_start). `nodelay`: TCP_NODELAY is
 * known to be set (the master said so). */
static struct hello_conn* adopt(struct hello_loop* loop, int fd, bool watch, bool nodelay) {
  /* Small responses must not wait for Nagle's algorithm. On a Unix socket
   * this fails harmlessly, which costs less than finding out the family. */
  if (!nodelay) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }

  struct hello_conn* c = hello_conn_create(fd, loop->now_ms);
  if (c == NULL) {
    hello_log("out of memory for a connection; closing it");
    close(fd);
    return NULL;
  }
  if (watch && hello_conn_watch(loop, c) != 0) {
    hello_log("epoll_ctl(connection fd %d): %s", fd, strerror(errno));
    hello_conn_destroy(c);
    return NULL;
  }
  c->next = loop->conns;
  if (loop->conns != NULL) loop->conns->prev = c;
  loop->conns = c;
  loop->n_conns++;
  return c;
}

int hello_adopt_connection(struct hello_loop* loop, int fd) {
  /* A connection this worker accepted has rarely received its request yet: watch it. */
  struct hello_conn* c = adopt(loop, fd, true, false);
  if (c == NULL) return -1;
  if (loop->worker != NULL) {
    /* Shared dispatch under forkpool: the scoreboard shows this worker busy. */
    fp_worker_conn_begin(loop->worker);
    c->counted = true;
  }
  return 0;
}

int hello_adopt_passed(struct hello_loop* loop, fp_conn* passed) {
  struct hello_conn* c = adopt(loop, passed->fd, false, fp_conn_nodelay(passed) != 0);
  passed->fd = -1; /* the loop owns it now, or adopt() closed it */
  if (c == NULL) {
    fp_worker_done(loop->worker, passed);
    return -1;
  }
  c->passed = true;
  c->last = fp_conn_last(passed) != 0;
  c->master = *passed;
  hello_conn_start(loop, c); /* may answer and close or park it before returning */
  return 0;
}

static void unlink_conn(struct hello_loop* loop, struct hello_conn* c) {
  if (c->prev != NULL) {
    c->prev->next = c->next;
  } else {
    loop->conns = c->next;
  }
  if (c->next != NULL) c->next->prev = c->prev;
  loop->n_conns--;
}

void hello_loop_close_conn(struct hello_loop* loop, struct hello_conn* c) {
  unlink_conn(loop, c);
  bool passed = c->passed, counted = c->counted;
  fp_conn master = c->master;
  /* Closing an fd drops its epoll registration only when no other reference to the
   * socket is left (a forked child that has not exec'd yet holds one, say); a stale
   * registration would later report events for the freed connection. */
  if (c->registered) epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  hello_conn_destroy(c); /* closes the fd before the master hears it is done */
  if (passed && fp_worker_done(loop->worker, &master) != 0) {
    hello_log("sending DONE to the master: %s", strerror(errno));
  }
  if (counted) fp_worker_conn_end(loop->worker);
}

void hello_loop_park_conn(struct hello_loop* loop, struct hello_conn* c) {
  unlink_conn(loop, c);
  if (c->registered) epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  fp_conn master = c->master;
  master.fd = c->fd;
  c->fd = -1;
  /* fp_worker_park sends the fd back and closes our copy, even when the send fails. */
  if (fp_worker_park(loop->worker, &master) != 0) hello_log("sending PARK to the master: %s", strerror(errno));
  hello_conn_release(c);
}

static void accept_all(struct hello_loop* loop, struct hello_loop_listener* ll) {
  for (;;) {
    int fd = accept4(ll->l.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      loop->accept_failing = false;
      hello_adopt_connection(loop, fd);
      continue;
    }
    switch (errno) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return;
      case EINTR:
        /* A stop signal ends the batch: the drain at the end of this loop turn serves
         * what was accepted. Only a listener made blocking under us (its O_NONBLOCK
         * belongs to the open file it shares with others) gets here with nothing left
         * to accept, and then the signal is what gets us out. */
        hello_loop_poll_signals(loop);
        if (loop->drain_requested) return;
        continue;
      case ECONNABORTED:
      case EPROTO:
      case EPERM: /* refused by a firewall rule */
        continue;
      default:
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connections stay in
         * the backlog, and the level-triggered listener would wake us at once,
         * so stop watching the listeners for a moment. */
        if (!loop->accept_failing) {
          hello_log("accept4(%s): %s; pausing accepts for %d ms at a time", ll->l.name,
                    strerror(errno), ACCEPT_PAUSE_MS);
        }
        loop->accept_failing = true;
        set_listeners_armed(loop, false);
        loop->accept_resume_ms = loop->now_ms + ACCEPT_PAUSE_MS;
        return;
    }
  }
}

void hello_loop_poll_signals(struct hello_loop* loop) {
  unsigned char sigs[64];
  ssize_t n;
  while ((n = read(loop->signal_fd, sigs, sizeof sigs)) > 0) {
    for (ssize_t i = 0; i < n; i++) {
      if (sigs[i] == SIGTERM || sigs[i] == SIGINT) loop->drain_requested = true;
    }
  }
}

void hello_loop_begin_drain(struct hello_loop* loop) {
  if (loop->draining) return;
  loop->draining = true;
  /* Connections the master already sent are served (and told to close) rather than
   * lost; then the channel is no longer read. */
  hello_channel_stop(loop);
  hello_log("stopping: %zu connection(s) open", loop->n_conns);
  /* Closing the listeners hands pending connections to the other workers
   * sharing them (the supervisor keeps its copies open). */
  set_listeners_armed(loop, false);
  for (size_t i = 0; i < loop->n_listeners; i++) close(loop->listeners[i].l.fd);
  loop->n_listeners = 0;
  loop->accept_resume_ms = 0;
  struct hello_conn* next;
  for (struct hello_conn* c = loop->conns; c != NULL; c = next) {
    next = c->next;
    hello_conn_drain(loop, c);
  }
}

static void sweep(struct hello_loop* loop) {
  struct hello_conn* next;
  for (struct hello_conn* c = loop->conns; c != NULL; c = next) {
    next = c->next;
    hello_conn_check_timeout(loop, c);
  }
  loop->next_sweep_ms = loop->now_ms + SWEEP_INTERVAL_MS;
}

static int wait_timeout(const struct hello_loop* loop) {
  /* Idle and without connections, the process sleeps until something happens. */
  int64_t deadline = -1;
  if (loop->n_conns > 0) deadline = loop->next_sweep_ms;
  if (loop->accept_resume_ms != 0 && (deadline < 0 || loop->accept_resume_ms < deadline)) {
    deadline = loop->accept_resume_ms;
  }
  if (deadline < 0) return -1;
  return deadline > loop->now_ms ? (int)(deadline - loop->now_ms) : 0;
}

int hello_loop_run(struct hello_loop* loop) {
  struct epoll_event events[MAX_EVENTS];
  while (!(loop->draining && loop->n_conns == 0)) {
    if (hello_channel_can_wait(loop)) {
      hello_channel_wait(loop);
      if (loop->drain_requested) hello_loop_begin_drain(loop);
      continue;
    }
    int n = epoll_wait(loop->epfd, events, MAX_EVENTS, wait_timeout(loop));
    if (n < 0 && errno != EINTR) {
      hello_log("epoll_wait: %s", strerror(errno));
      return 1;
    }
    hello_loop_update_clock(loop);
    for (int i = 0; i < n; i++) {
      /* data.ptr points at the source's first member; convert from void *. */
      void* ptr = events[i].data.ptr;
      const struct hello_source* src = ptr;
      switch (src->kind) {
        case HELLO_SOURCE_CONN:
          hello_conn_handle(loop, ptr, events[i].events);
          break;
        case HELLO_SOURCE_LISTENER:
          if (loop->listeners_armed) accept_all(loop, ptr);
          break;
        case HELLO_SOURCE_SIGNAL:
          hello_loop_poll_signals(loop);
          break;
        case HELLO_SOURCE_CHANNEL:
          if (loop->channel_watched) hello_channel_receive(loop);
          break;
      }
    }
    /* Work that may close connections runs after the batch, so that no event
     * of this batch refers to a connection freed meanwhile. */
    if (loop->drain_requested) hello_loop_begin_drain(loop);
    if (loop->accept_resume_ms != 0 && loop->now_ms >= loop->accept_resume_ms) {
      loop->accept_resume_ms = 0;
      set_listeners_armed(loop, true);
    }
    if (loop->now_ms >= loop->next_sweep_ms) sweep(loop);
  }
  return 0;
}
