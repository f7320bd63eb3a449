/* SPDX-License-Identifier: Apache-2.0 */
/* The fp_worker object, shared by the library's source files and nothing else. */
#ifndef FORKPOOL_WORKER_INTERNAL_H
#define FORKPOOL_WORKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "forkpool/worker.h"
#include "shm/slot_writer.h"

/* fp_conn.flags_ of a connection delivered and not yet done; a magic value rather than
 * one bit, so done() on an uninitialised fp_conn is very likely refused. Its lowest bit,
 * FP_CONN_NODELAY, is set when the CONN said TCP_NODELAY is on (FP_FD_NODELAY). */
#define FP_CONN_LIVE 0x46504c56u /* "FPLV" */
#define FP_CONN_NODELAY 0x1u
/* Bit 3 (clear in FP_CONN_LIVE): the CONN said FP_FD_LAST. */
#define FP_CONN_LAST 0x8u
static inline bool fp_conn_live(const fp_conn* conn) {
  return conn != NULL && (conn->flags_ & ~(FP_CONN_NODELAY | FP_CONN_LAST)) == FP_CONN_LIVE;
}

struct fp_worker {
  int channel_fd;
  bool end_of_work;       /* EOF seen on the channel: next() keeps returning 1 */
  bool master_gone;       /* a send failed with EPIPE/ECONNRESET: DONE is not sent */
  bool nonblocking_conns; /* the mode connections are switched to on delivery */
  bool keepalive_master;  /* FORKPOOL_KEEPALIVE=master: idle connections may be parked */
  unsigned in_flight;
  unsigned long rejected;
  struct fp_batch* batch; /* channel.c: records read ahead, made on the first read */
  fp_slot_writer slot; /* no-op when the scoreboard is absent */

  char* pool;
  int number;
  unsigned long generation;
  char* listeners_text; /* FORKPOOL_LISTENERS, split in place */
  char** listeners;
  size_t listener_count;

  char* notify_socket; /* NOTIFY_SOCKET, or NULL */
  int notify_fd;       /* datagram socket made on first use, or -1 */
};

/* channel.c */
int fp_channel_send(fp_worker* w, unsigned type, unsigned long long id);
/* Closes the descriptors of records read and not handed out, and frees the read buffer. */
void fp_channel_discard(fp_worker* w);
/* The same record with one descriptor attached (SCM_RIGHTS); fd_flags (FP_FD_*) go in
 * `reserved`. */
int fp_channel_send_fd(fp_worker* w, unsigned type, unsigned long long id, int fd, uint32_t fd_flags);

#endif
