/* SPDX-License-Identifier: Apache-2.0 */
/* fp_worker_open/close and the accessors: everything that comes from the environment. */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC, POLLRDHUP, strtok_r, strdup */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/lib/worker_internal.h"
#include "worker/protocol.h"

/* Strict decimal: the whole string, no sign, no overflow. */
static bool parse_ulong(const char* s, unsigned long max, unsigned long* out) {
  if (s == NULL || *s < '0' || *s > '9') return false;
  errno = 0;
  char* end = NULL;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return false;
  *out = v;
  return true;
}

static char* dup_env(const char* name) {
  const char* v = getenv(name);
  return strdup(v != NULL ? v : "");
}

static void set_cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0 && (flags & FD_CLOEXEC) == 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/* The channel must be a SOCK_SEQPACKET socket: a stale FORKPOOL_CHANNEL_FD inherited by a
 * program the worker ran could name any other descriptor. */
static int open_channel(void) {
  const char* proto = getenv("FORKPOOL_PROTOCOL");
  unsigned long version = 0;
  if (proto != NULL && *proto != '\0' &&
      (!parse_ulong(proto, 0xffff, &version) || version != FP_PROTOCOL_VERSION)) {
    errno = EPROTONOSUPPORT;
    return -1;
  }
  const char* text = getenv("FORKPOOL_CHANNEL_FD");
  if (text == NULL || *text == '\0') {
    errno = ENOENT;
    return -1;
  }
  unsigned long fd = 0;
  if (!parse_ulong(text, INT_MAX, &fd)) {
    errno = EBADF;
    return -1;
  }
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return -1;
  if (type != SOCK_SEQPACKET) {
    errno = EPROTOTYPE;
    return -1;
  }
  set_cloexec((int)fd);
  return (int)fd;
}

/* Splits FORKPOOL_LISTENERS on spaces, in place. */
static int split_listeners(fp_worker* w) {
  size_t max = 0;
  for (const char* p = w->listeners_text; *p != '\0'; p++) max += *p != ' ';
  w->listeners = calloc(max + 1, sizeof *w->listeners);
  if (w->listeners == NULL) return -1;
  char* save = NULL;
  for (char* tok = strtok_r(w->listeners_text, " ", &save); tok != NULL;
       tok = strtok_r(NULL, " ", &save)) {
    w->listeners[w->listener_count++] = tok;
  }
  return 0;
}

fp_worker* fp_worker_open(void) {
  int channel = open_channel();
  if (channel < 0) return NULL;
  fp_worker* w = calloc(1, sizeof *w);
  if (w == NULL) return NULL;
  w->channel_fd = channel;
  w->notify_fd = -1;
  w->number = -1;

  w->pool = dup_env("FORKPOOL_POOL");
  w->listeners_text = dup_env("FORKPOOL_LISTENERS");
  const char* notify = getenv("NOTIFY_SOCKET");
  if (notify != NULL && *notify != '\0') {
    w->notify_socket = strdup(notify);
    if (w->notify_socket == NULL) goto nomem;
  }
  if (w->pool == NULL || w->listeners_text == NULL || split_listeners(w) != 0) goto nomem;
  unsigned long v = 0;
  if (parse_ulong(getenv("FORKPOOL_WORKER"), INT_MAX, &v)) w->number = (int)v;
  if (parse_ulong(getenv("FORKPOOL_GENERATION"), ULONG_MAX, &v)) w->generation = v;
  const char* keepalive = getenv("FORKPOOL_KEEPALIVE");
  w->keepalive_master = keepalive != NULL && strcmp(keepalive, "master") == 0;

  /* The scoreboard is optional: without it every slot update is a no-op. */
  if (fp_slot_writer_attach_env(&w->slot) == 0) {
    set_cloexec((int)strtol(getenv("FORKPOOL_SCOREBOARD_FD"), NULL, 10));
  }
  return w;

nomem:
  /* Not fp_worker_close: that would close the channel, which stays the caller's. */
  free(w->pool);
  free(w->listeners_text);
  free(w->listeners);
  free(w->notify_socket);
  free(w);
  errno = ENOMEM;
  return NULL;
}

void fp_worker_close(fp_worker* w) {
  if (w == NULL) return;
  fp_channel_discard(w);
  close(w->channel_fd);
  if (w->notify_fd >= 0) close(w->notify_fd);
  fp_slot_writer_detach(&w->slot);
  free(w->pool);
  free(w->listeners_text);
  free(w->listeners);
  free(w->notify_socket);
  free(w);
}

int fp_worker_fd(const fp_worker* w) {
  return w->channel_fd;
}

void fp_worker_set_nonblocking(fp_worker* w, int nonblocking) {
  w->nonblocking_conns = nonblocking != 0;
}

const char* fp_worker_pool(const fp_worker* w) {
  return w->pool;
}
int fp_worker_number(const fp_worker* w) {
  return w->number;
}
unsigned long fp_worker_generation(const fp_worker* w) {
  return w->generation;
}
size_t fp_worker_listener_count(const fp_worker* w) {
  return w->listener_count;
}

const char* fp_worker_listener(const fp_worker* w, size_t index) {
  return index < w->listener_count ? w->listeners[index] : NULL;
}

unsigned fp_worker_in_flight(const fp_worker* w) {
  return w->in_flight;
}
unsigned long fp_worker_rejected(const fp_worker* w) {
  return w->rejected;
}

void fp_worker_conn_begin(fp_worker* w) {
  fp_slot_writer_mark_busy(&w->slot, fp_slot_writer_now_ns());
}

void fp_worker_conn_end(fp_worker* w) {
  fp_slot_writer_mark_idle(&w->slot);
}
