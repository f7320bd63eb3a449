/* SPDX-License-Identifier: Apache-2.0 */
/* forkpool worker protocol, version 1 (SPEC section 4), shared by the master (C++) and
 * the worker library (C). Messages on the channel are fixed 16-byte records in host
 * byte order, one per SOCK_SEQPACKET datagram; a CONN message carries one fd. */
#ifndef FORKPOOL_WORKER_PROTOCOL_H
#define FORKPOOL_WORKER_PROTOCOL_H

#include <stdint.h>

#define FP_PROTOCOL_VERSION 1

enum fp_msg_type {
  FP_MSG_CONN = 1,   /* master -> worker: one connection; SCM_RIGHTS carries its fd */
  FP_MSG_READY = 16, /* worker -> master: ready for work */
  FP_MSG_DONE = 17,  /* worker -> master: connection `id` finished and closed */
  FP_MSG_PARK = 18   /* worker -> master: connection `id` idle between requests; SCM_RIGHTS
                        carries its fd back (keepalive = "master" pools only) */
};

struct fp_msg {
  uint16_t type;
  uint16_t arg;      /* CONN: listener index */
  uint32_t reserved; /* READY, CONN, PARK: FP_FD_* flags; otherwise 0 */
  uint64_t id;       /* connection id */
};

/* In `reserved`. READY: the worker wants its connections non-blocking. CONN and PARK: the
 * descriptor's O_NONBLOCK is known to be set (the master accepted it with SOCK_NONBLOCK
 * for a worker that asked, or the worker that parked it kept it non-blocking), so a
 * receiver that wants it so need not set it; clear means unknown. Older receivers ignore
 * it, as they ignore `reserved`, and a worker that does not ask gets no connection the
 * master made non-blocking. */
#define FP_FD_NONBLOCK 0x1u
/* In `reserved`. CONN and PARK: a TCP connection with TCP_NODELAY known to be set (the
 * master sets it on its master-dispatch TCP listeners and accepted connections inherit
 * it; a worker that parks one it left so says so), so a receiver that wants it need not
 * set it; clear means unknown (a Unix socket, an older master). Not used in READY. */
#define FP_FD_NODELAY 0x2u
/* In `reserved`. CONN only: the master will not hold this connection again (a reload took
 * its pool out of master dispatch): answer what the client sends now and close it, with
 * "Connection: close", instead of parking it or keeping it for more requests. Older
 * workers ignore it; a connection they park anyway waits in the master as any other. */
#define FP_FD_LAST 0x4u

#ifdef __cplusplus
static_assert(sizeof(struct fp_msg) == 16, "the wire record is 16 bytes");
#else
_Static_assert(sizeof(struct fp_msg) == 16, "the wire record is 16 bytes");
#endif

#endif
