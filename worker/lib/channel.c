/* SPDX-License-Identifier: Apache-2.0 */
/* The channel to the master: receiving CONN messages with their descriptor, sending
 * READY and DONE. Every received message is checked before it is believed (STYLE 12):
 * size, truncation of data or control, the control message's level and type, and the
 * number of descriptors; a descriptor nobody expects is closed at once. */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC, POLLRDHUP, strtok_r, strdup */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker/lib/worker_internal.h"
#include "worker/protocol.h"

/* Room for more descriptors than any message may carry, so a message with too many is
 * still received whole and each of them closed; beyond this the kernel sets MSG_CTRUNC
 * and closes the rest itself. */
#define MAX_FDS 8
/* Records one read takes at most. */
#define RECV_BATCH 8

enum receive_result {
  RECEIVED_CONN,
  RECEIVED_OTHER, /* a message without a connection, or one rejected: read on */
  RECEIVED_EOF,
};

static bool is_would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

static void close_all(const int* fds, size_t n) {
  for (size_t i = 0; i < n; i++) close(fds[i]);
}

/* Waits until the channel is readable or writable; EINTR is not an error. */
static int wait_for(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events};
  int r;
  do {
    r = poll(&p, 1, -1);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -1 : 0;
}

/* Sends one record (and the descriptor `fd` with it, when fd >= 0). */
static int send_record(fp_worker* w, unsigned type, unsigned long long id, int fd, uint32_t fd_flags) {
  struct fp_msg m;
  memset(&m, 0, sizeof m);
  m.type = (uint16_t)type;
  m.reserved = fd_flags;
  m.id = (uint64_t)id;
  struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t n = sendmsg(w->channel_fd, &msg, MSG_NOSIGNAL);
    if (n == (ssize_t)sizeof m) return 0;
    if (n >= 0) { /* a SOCK_SEQPACKET send is all or nothing */
      errno = EIO;
      return -1;
    }
    if (errno == EINTR) continue;
    /* The channel may have been made non-blocking by the program; a record is tiny and
     * the master reads promptly, so wait rather than lose it. */
    if (is_would_block(errno)) {
      if (wait_for(w->channel_fd, POLLOUT) != 0) return -1;
      continue;
    }
    if (errno == EPIPE || errno == ECONNRESET) w->master_gone = true;
    return -1;
  }
}

int fp_channel_send(fp_worker* w, unsigned type, unsigned long long id) { return send_record(w, type, id, -1, 0); }

int fp_channel_send_fd(fp_worker* w, unsigned type, unsigned long long id, int fd, uint32_t fd_flags) {
  return send_record(w, type, id, fd, fd_flags);
}

/* recvmsg returns 0 both at EOF and for an empty record. Only a peer that is gone (or
 * shut down its side) sets POLLHUP/POLLRDHUP, so ask. */
static bool at_eof(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
  int r;
  do {
    r = poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r > 0 && (p.revents & (POLLHUP | POLLRDHUP)) != 0;
}

/* A CONN the library cannot deliver is still answered with DONE, so the master does not
 * count it in flight on this worker for ever. */
static void refuse_conn(fp_worker* w, uint64_t id) {
  if (!w->master_gone) fp_channel_send(w, FP_MSG_DONE, id);
}

/* Records read ahead by one recvmmsg and not yet handed out. */
struct fp_batch {
  struct mmsghdr hdr[RECV_BATCH];
  struct iovec iov[RECV_BATCH];
  struct fp_msg rec[RECV_BATCH];
  _Alignas(struct cmsghdr) char control[RECV_BATCH][CMSG_SPACE(sizeof(int) * MAX_FDS)];
  unsigned len, next;
  /* The last read stopped short of RECV_BATCH: it took everything pending then. */
  bool drained;
};

/* Reads what is pending, up to RECV_BATCH records in one call; with `wait`, blocks for one
 * record and reads only that. A blocking read is made by a program that holds nothing to
 * do, and the master, with max_inflight = 1, never has a second record queued then:
 * reading a batch (MSG_WAITFORONE) would make the kernel try for a second record, and fail,
 * at every connection. Returns the number read, 0 for EAGAIN, -1 on error. */
static int fill(fp_worker* w, bool wait) {
  struct fp_batch* b = w->batch;
  if (b == NULL) {
    b = w->batch = calloc(1, sizeof *b);
    if (b == NULL) return -1;
  }
  const unsigned want = wait ? 1 : RECV_BATCH;
  for (unsigned i = 0; i < want; i++) {
    b->iov[i] = (struct iovec){.iov_base = &b->rec[i], .iov_len = sizeof b->rec[i]};
    memset(&b->hdr[i], 0, sizeof b->hdr[i]);
    b->hdr[i].msg_hdr.msg_iov = &b->iov[i];
    b->hdr[i].msg_hdr.msg_iovlen = 1;
    b->hdr[i].msg_hdr.msg_control = b->control[i];
    b->hdr[i].msg_hdr.msg_controllen = sizeof b->control[i];
  }
  int n;
  for (;;) {
    n = recvmmsg(w->channel_fd, b->hdr, want, (wait ? 0 : MSG_DONTWAIT) | MSG_CMSG_CLOEXEC, NULL);
    if (n >= 0) break;
    /* ECONNRESET is reported once when the master closed with our records unread; the
     * records it sent before closing are still queued, so read on. */
    if (errno == EINTR || errno == ECONNRESET) continue;
    return is_would_block(errno) ? 0 : -1;
  }
  b->len = (unsigned)n;
  b->next = 0;
  b->drained = (unsigned)n < want;
  return n;
}

/* Closes the descriptors of records read ahead and not handed out (fp_worker_close). Their
 * connections end as if the records had stayed unread in the channel. */
void fp_channel_discard(fp_worker* w) {
  struct fp_batch* b = w->batch;
  if (b == NULL) return;
  for (; b->next < b->len; b->next++) {
    struct msghdr* msg = &b->hdr[b->next].msg_hdr;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        close(fd);
      }
    }
  }
  free(b);
  w->batch = NULL;
}

/* Takes the next record read ahead, checking it before it is believed. */
static enum receive_result receive_one(fp_worker* w, fp_conn* conn) {
  struct fp_batch* b = w->batch;
  unsigned at = b->next++;
  struct fp_msg m = b->rec[at];
  struct msghdr msg = b->hdr[at].msg_hdr;
  ssize_t n = (ssize_t)b->hdr[at].msg_len;

  int fds[MAX_FDS];
  size_t nfds = 0;
  bool bad_control = false;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) {
      bad_control = true;
      continue;
    }
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count && nfds < MAX_FDS; i++) {
      memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
  }

  if (n == 0 && nfds == 0 && !bad_control && at_eof(w->channel_fd)) {
    w->end_of_work = true;
    return RECEIVED_EOF;
  }
  bool well_formed =
      n == (ssize_t)sizeof m && (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0 && !bad_control;
  if (!well_formed) {
    /* Nothing in it can be trusted, the id included: drop it whole. */
    close_all(fds, nfds);
    w->rejected++;
    return RECEIVED_OTHER;
  }
  if (m.type != FP_MSG_CONN) {
    /* READY and DONE only go the other way; unknown types are for later versions. None
     * of them carries a descriptor. */
    if (nfds > 0) {
      close_all(fds, nfds);
      w->rejected++;
    }
    return RECEIVED_OTHER;
  }
  if (nfds != 1) {
    close_all(fds, nfds);
    w->rejected++;
    refuse_conn(w, m.id);
    return RECEIVED_OTHER;
  }

  /* The mode is set only when the record does not say it is the one wanted already: an
   * event loop pays nothing for a connection the master accepted non-blocking. */
  bool known_nonblocking = (m.reserved & FP_FD_NONBLOCK) != 0;
  int on = w->nonblocking_conns ? 1 : 0;
  if (!(known_nonblocking && w->nonblocking_conns) && ioctl(fds[0], FIONBIO, &on) != 0) {
    /* Not something a socket refuses: the descriptor is not what the master meant. */
    close(fds[0]);
    w->rejected++;
    refuse_conn(w, m.id);
    return RECEIVED_OTHER;
  }
  conn->fd = fds[0];
  conn->listener = m.arg;
  conn->id = m.id;
  conn->flags_ = FP_CONN_LIVE | ((m.reserved & FP_FD_NODELAY) != 0 ? FP_CONN_NODELAY : 0u) |
                 ((m.reserved & FP_FD_LAST) != 0 ? FP_CONN_LAST : 0u);
  w->in_flight++;
  fp_slot_writer_mark_busy(&w->slot, fp_slot_writer_now_ns());
  return RECEIVED_CONN;
}

/* Hands out records until a connection, EOF, an error or (without `wait`) nothing more.
 * After a read that took everything pending, "nothing more" is said once without asking
 * the kernel: the channel's readiness (level- or edge-triggered) tells of newer records. */
static int next(fp_worker* w, fp_conn* conn, bool wait) {
  if (w->end_of_work) return FP_WORKER_END;
  for (;;) {
    struct fp_batch* b = w->batch;
    if (b == NULL || b->next == b->len) {
      if (!wait && b != NULL && b->drained) {
        b->drained = false;
        return FP_WORKER_PENDING;
      }
      int got = fill(w, wait);
      if (got < 0) return -1;
      if (got == 0) {
        if (!wait) return FP_WORKER_PENDING;
        /* A blocking call on a channel the program made non-blocking. */
        if (wait_for(w->channel_fd, POLLIN) != 0) return -1;
        continue;
      }
    }
    switch (receive_one(w, conn)) {
      case RECEIVED_CONN:
        return 0;
      case RECEIVED_OTHER:
        continue;
      case RECEIVED_EOF:
        return FP_WORKER_END;
    }
  }
}

int fp_worker_next(fp_worker* w, fp_conn* conn) {
  return next(w, conn, true);
}

int fp_worker_try_next(fp_worker* w, fp_conn* conn) {
  return next(w, conn, false);
}

int fp_worker_refuse_more(fp_worker* w) {
  if (w->end_of_work) return 0;
  if (shutdown(w->channel_fd, SHUT_RD) != 0) return -1;
  /* The channel cannot make a reader wait any more: the next try_next reads it. */
  if (w->batch != NULL) w->batch->drained = false;
  return 0;
}

int fp_worker_done(fp_worker* w, fp_conn* conn) {
  if (!fp_conn_live(conn)) {
    errno = EINVAL;
    return -1;
  }
  if (conn->fd >= 0) close(conn->fd);
  conn->fd = -1;
  conn->flags_ = 0;
  if (w->in_flight > 0) w->in_flight--;
  fp_slot_writer_mark_idle(&w->slot);
  /* End of work is the master shutting down its sending side only: it still reads DONE
   * for what the worker finishes. A master that is gone makes the send fail (EPIPE). */
  if (w->master_gone) return 0;
  if (fp_channel_send(w, FP_MSG_DONE, conn->id) != 0) return w->master_gone ? 0 : -1;
  return 0;
}

int fp_worker_park(fp_worker* w, fp_conn* conn) {
  if (!fp_conn_live(conn) || conn->fd < 0) {
    errno = EINVAL;
    return -1;
  }
  if (!w->keepalive_master) {
    errno = EOPNOTSUPP;
    return -1;
  }
  int result = 0;
  int saved = 0;
  /* After end of work the master still reads the channel (it shut down only its sending
   * side), so a park still reaches it; a master that is gone makes the send fail. */
  /* A program that asked for non-blocking connections hands them back that way, and one
   * told TCP_NODELAY is on leaves it on (the contract of fp_worker_park), so the next
   * worker need not set either. */
  uint32_t fd_flags = (w->nonblocking_conns ? FP_FD_NONBLOCK : 0u) |
                      ((conn->flags_ & FP_CONN_NODELAY) != 0 ? FP_FD_NODELAY : 0u);
  if (!w->master_gone && fp_channel_send_fd(w, FP_MSG_PARK, conn->id, conn->fd, fd_flags) != 0 &&
      !w->master_gone) {
    result = -1;
    saved = errno;
  }
  close(conn->fd);
  conn->fd = -1;
  conn->flags_ = 0;
  if (w->in_flight > 0) w->in_flight--;
  fp_slot_writer_mark_idle(&w->slot);
  if (result != 0) errno = saved;
  return result;
}

int fp_worker_keepalive_master(const fp_worker* w) { return w->keepalive_master ? 1 : 0; }

int fp_conn_nodelay(const fp_conn* conn) { return fp_conn_live(conn) && (conn->flags_ & FP_CONN_NODELAY) != 0 ? 1 : 0; }

int fp_conn_last(const fp_conn* conn) { return fp_conn_live(conn) && (conn->flags_ & FP_CONN_LAST) != 0 ? 1 : 0; }

int fp_worker_ready(fp_worker* w) {
  int result = 0;
  int saved = 0;
  /* Asking for non-blocking connections lets the master accept them so: no ioctl here. */
  uint32_t fd_flags = w->nonblocking_conns ? FP_FD_NONBLOCK : 0;
  if (!w->end_of_work && !w->master_gone && send_record(w, FP_MSG_READY, 0, -1, fd_flags) != 0 &&
      !w->master_gone) {
    result = -1;
    saved = errno;
  }
  fp_slot_writer_set_ready(&w->slot);
  if (fp_worker_notify(w, "READY=1") != 0 && result == 0) {
    result = -1;
    saved = errno;
  }
  if (result != 0) errno = saved;
  return result;
}
