/* SPDX-License-Identifier: Apache-2.0 */
/* libforkpool-worker: the worker's side of forkpool's protocol, version 1.
 *
 * A worker started by forkpool finds its channel to the master, its scoreboard slot and
 * its identity in FORKPOOL_* environment variables (docs/protocol.md). This library
 * reads them, receives the connections the master passes (dispatch = "master"), reports
 * each finished connection back, and keeps the worker's scoreboard slot up to date.
 *
 * Typical blocking worker:
 *
 *   fp_worker *w = fp_worker_open();
 *   if (w == NULL) { perror("fp_worker_open"); return 1; }
 *   fp_worker_ready(w);
 *   fp_conn c;
 *   int r;
 *   while ((r = fp_worker_next(w, &c)) == 0) {
 *     serve(c.fd);
 *     fp_worker_done(w, &c);          // closes c.fd, tells the master
 *   }
 *   fp_worker_close(w);
 *   return r == 1 ? 0 : 1;            // 1: the master asked us to finish and exit
 *
 * An event loop polls fp_worker_fd() for readability and drains it with
 * fp_worker_try_next(); it may hold several connections at once (the pool's
 * max_inflight) and calls fp_worker_done() for each as it finishes.
 *
 * Not thread-safe: one fp_worker is used by one thread at a time (the caller locks if
 * several threads share it). No function logs or raises signals: every send uses
 * MSG_NOSIGNAL, and every error is returned as -1 with errno.
 */
#ifndef FORKPOOL_WORKER_H
#define FORKPOOL_WORKER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FP_WORKER_PROTOCOL 1

/* The library is built with -fvisibility=hidden: only what is marked FP_WORKER_API is
 * exported from libforkpool-worker.so.1 (the ABI), everything else stays internal. */
#if defined(__GNUC__)
#define FP_WORKER_API __attribute__((visibility("default")))
#else
#define FP_WORKER_API
#endif

typedef struct fp_worker fp_worker;

/* One connection passed by the master. */
typedef struct fp_conn {
  int fd;            /* connected stream socket, close-on-exec; set to -1 if you close it */
  uint16_t listener; /* index of the listener it came in on (see fp_worker_listener) */
  uint64_t id;       /* the master's connection id, echoed in DONE */
  uint32_t flags_;   /* private to the library */
} fp_conn;

/* Results of fp_worker_next and fp_worker_try_next besides 0 and -1. */
#define FP_WORKER_END 1     /* end of work: the master closed the channel */
#define FP_WORKER_PENDING 2 /* try_next only: nothing to receive right now */

/* Reads FORKPOOL_PROTOCOL, FORKPOOL_CHANNEL_FD, FORKPOOL_SCOREBOARD_FD, FORKPOOL_POOL,
 * FORKPOOL_WORKER, FORKPOOL_GENERATION, FORKPOOL_LISTENERS and NOTIFY_SOCKET; maps the
 * scoreboard slot (if any) and marks the channel and slot fds close-on-exec, so programs
 * the worker runs do not inherit them. Returns NULL with errno: ENOENT when
 * FORKPOOL_CHANNEL_FD is unset (not running under forkpool), EPROTONOSUPPORT for a
 * protocol other than 1, EBADF/ENOTSOCK/EPROTOTYPE when the channel fd is not a
 * SOCK_SEQPACKET socket, ENOMEM. A missing or unusable scoreboard is not an error: the
 * scoreboard functions then do nothing. */
FP_WORKER_API fp_worker* fp_worker_open(void);

/* Closes the channel (the master sees EOF) and unmaps the slot. Connections still held
 * are not closed. NULL is allowed. */
FP_WORKER_API void fp_worker_close(fp_worker* w);

/* Ready for work: sends READY on the channel, marks the slot idle and, when
 * NOTIFY_SOCKET is set, sends "READY=1" there. Call once the worker can serve (after
 * loading the application). Calling it again is harmless. Returns 0, or -1 with errno
 * when one of the sends failed (the others are still attempted). */
FP_WORKER_API int fp_worker_ready(fp_worker* w);

/* Waits for the next connection. 0: *conn holds it and the slot counts it in flight;
 * FP_WORKER_END (1): the master closed the channel, meaning "finish the connections you
 * hold and exit" (every later call returns 1 again); -1: error, errno set. Malformed
 * messages are skipped (see fp_worker_rejected); EINTR is retried. */
FP_WORKER_API int fp_worker_next(fp_worker* w, fp_conn* conn);

/* The same without waiting: FP_WORKER_PENDING (2) when nothing is pending. For event
 * loops: call it until it returns something other than 0 whenever fp_worker_fd() is
 * readable. */
FP_WORKER_API int fp_worker_try_next(fp_worker* w, fp_conn* conn);

/* The connection is finished: closes conn->fd unless it is -1, sends DONE with conn->id,
 * and counts the connection on the scoreboard. Returns 0; -1 with EINVAL when conn was
 * not returned by next/try_next or is already done, or with the send's errno (the fd is
 * closed and the slot updated even then). If the master has already closed the channel
 * (end of work), the DONE is dropped and 0 returned. */
FP_WORKER_API int fp_worker_done(fp_worker* w, fp_conn* conn);

/* For a stop the worker begins on its own (a stop signal without end of work from the
 * master): shuts down the channel's reading side. What the master sent until now is still
 * delivered by next/try_next, which then return FP_WORKER_END without waiting; a CONN the
 * master sends from now on fails there, and the master gives that connection to another
 * worker instead of losing it in a channel nobody reads. DONE and PARK still go out.
 * Returns 0 (also when the work had ended already), or -1 with errno. */
FP_WORKER_API int fp_worker_refuse_more(fp_worker* w);

/* keepalive = "master" (FORKPOOL_KEEPALIVE=master): 1 when idle keep-alive connections
 * may be handed back to the master with fp_worker_park, else 0. */
FP_WORKER_API int fp_worker_keepalive_master(const fp_worker* w);

/* Hands an idle keep-alive connection back to the master (PARK): call it after a
 * response, when the client may send another request and none of its bytes are
 * buffered in this process. The master watches the connection and passes it again,
 * as a new fp_conn with the same id, when the next request arrives; it closes it after
 * keepalive_timeout or when the client does. Closes conn->fd here and counts the
 * connection finished on the scoreboard; no fp_worker_done follows. Returns 0; -1 with
 * EINVAL (not a live connection), EOPNOTSUPP (the pool does not have
 * keepalive = "master"; the connection is untouched then) or the send's errno (the fd is
 * closed even then, and the client sees the connection end). After
 * fp_worker_set_nonblocking(w, 1) the descriptor must still be non-blocking, as it was
 * delivered, and one fp_conn_nodelay said has TCP_NODELAY must still have it: the master
 * tells the next worker so. */
FP_WORKER_API int fp_worker_park(fp_worker* w, fp_conn* conn);

/* 1 when the master said this connection has TCP_NODELAY set (docs/protocol.md,
 * FP_FD_NODELAY: it sets it on its TCP listeners for master dispatch), so a worker that
 * wants small responses sent at once need not set it; 0 when unknown (a Unix socket, an
 * older master) or `conn` is not a live connection. */
FP_WORKER_API int fp_conn_nodelay(const fp_conn* conn);

/* 1 when the master will not hold this connection again (FP_FD_LAST: a reload took the
 * pool out of master dispatch): answer the requests the client sends now with
 * "Connection: close" and close it (fp_worker_done), rather than fp_worker_park or
 * keeping it; 0 otherwise or when `conn` is not a live connection. */
FP_WORKER_API int fp_conn_last(const fp_conn* conn);

/* Connections delivered are in blocking mode by default (simple read/write workers); an
 * event loop asks for non-blocking ones here, before fp_worker_ready: READY then asks the
 * master to accept them non-blocking (docs/protocol.md, FP_FD_NONBLOCK). A blocking
 * worker pays one ioctl per connection; a non-blocking one only for a connection the
 * master does not say is non-blocking (an older master, a pool that also runs blocking
 * workers, one parked by a worker that did not say). */
FP_WORKER_API void fp_worker_set_nonblocking(fp_worker* w, int nonblocking);

/* The channel fd, to watch for readability with poll/epoll. Owned by the library. */
FP_WORKER_API int fp_worker_fd(const fp_worker* w);

/* Sends one sd_notify(3) message ("STATUS=warming up", "WATCHDOG=1", "STOPPING=1") to
 * NOTIFY_SOCKET. Returns 0 (also when NOTIFY_SOCKET is unset), or -1 with errno. */
FP_WORKER_API int fp_worker_notify(fp_worker* w, const char* message);

/* For workers that accept connections themselves (dispatch = "shared"): count a
 * connection on the scoreboard without any message to the master. Each begin must be
 * paired with one end. */
FP_WORKER_API void fp_worker_conn_begin(fp_worker* w);
FP_WORKER_API void fp_worker_conn_end(fp_worker* w);

/* Identity, from the environment; the strings live as long as w. */
FP_WORKER_API const char* fp_worker_pool(const fp_worker* w);         /* FORKPOOL_POOL, "" if unset */
FP_WORKER_API int fp_worker_number(const fp_worker* w);               /* FORKPOOL_WORKER, -1 if unset */
FP_WORKER_API unsigned long fp_worker_generation(const fp_worker* w); /* FORKPOOL_GENERATION, 0 if unset */
FP_WORKER_API size_t fp_worker_listener_count(const fp_worker* w);
/* The listener's address as written in the config ("tcp://127.0.0.1:8080"), or NULL
 * when index is out of range. */
FP_WORKER_API const char* fp_worker_listener(const fp_worker* w, size_t index);

/* Connections currently held (delivered and not yet done). */
FP_WORKER_API unsigned fp_worker_in_flight(const fp_worker* w);
/* Messages received and dropped as malformed since open: wrong size, truncated control
 * data, a CONN without exactly one fd, a descriptor on a message that carries none.
 * Every descriptor that came with such a message was closed. */
FP_WORKER_API unsigned long fp_worker_rejected(const fp_worker* w);

#ifdef __cplusplus
}
#endif

#endif /* FORKPOOL_WORKER_H */
