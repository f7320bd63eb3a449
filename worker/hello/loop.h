/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The single-threaded epoll loop of one worker process: listeners, the signal
 * self-pipe and connections, plus the graceful drain. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forkpool/worker.h"
#include "listeners.h"

struct hello_conn;

/* What an epoll event's data.ptr points at; first member of each source. */
enum hello_source_kind {
  HELLO_SOURCE_LISTENER,
  HELLO_SOURCE_SIGNAL,
  HELLO_SOURCE_CONN,
  HELLO_SOURCE_CHANNEL, /* the master's channel (dispatch = "master") */
};
struct hello_source {
  enum hello_source_kind kind;
};

struct hello_loop_listener {
  struct hello_source src;
  struct hello_listener l;
};

struct hello_loop {
  int epfd;
  struct hello_source signal_src;
  int signal_fd; /* read end of the self-pipe; bytes are signal numbers */
  struct hello_loop_listener listeners[HELLO_MAX_LISTENERS];
  size_t n_listeners;
  bool listeners_armed;
  int64_t accept_resume_ms; /* accepting paused after EMFILE until then; 0 = not paused */
  bool accept_failing;      /* logged once until an accept succeeds again */
  bool drain_requested;     /* set from the signal pipe, acted on after the event batch */
  bool draining;
  int64_t now_ms; /* CLOCK_MONOTONIC_COARSE, refreshed once per wake-up */
  int64_t next_sweep_ms;
  struct hello_conn* conns; /* all open connections, a doubly linked list */
  size_t n_conns;
  /* Under forkpool: the worker library (scoreboard, READY/DONE), or NULL. In master
   * dispatch the channel brings the connections and the loop watches it. */
  fp_worker* worker;
  struct hello_source channel_src;
  bool channel_watched;
};

int hello_loop_init(struct hello_loop* loop, int signal_fd);
int hello_loop_add_listener(struct hello_loop* loop, const struct hello_listener* l);

/* Adds an already accepted, connected stream socket to the loop; whatever its
 * source (a listener here, later a descriptor passed by the master). The loop
 * owns fd from here on, and closes it on failure. Returns 0 or -1. */
int hello_adopt_connection(struct hello_loop* loop, int fd);

/* Adopts a connection the master passed; on failure it is closed and reported done. */
int hello_adopt_passed(struct hello_loop* loop, fp_conn* passed);

/* Stops accepting and lets connections finish their current response. */
void hello_loop_begin_drain(struct hello_loop* loop);

/* Runs until drained; returns the process exit status. */
int hello_loop_run(struct hello_loop* loop);

/* For connections: */
void hello_loop_update_clock(struct hello_loop* loop);
/* Reads pending signals from the self-pipe (sets drain_requested). */
void hello_loop_poll_signals(struct hello_loop* loop);
void hello_loop_close_conn(struct hello_loop* loop, struct hello_conn* c);
/* keepalive = "master": hands an idle connection back to the master (PARK) and forgets it. */
void hello_loop_park_conn(struct hello_loop* loop, struct hello_conn* c);
