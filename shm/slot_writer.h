/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's side of the scoreboard, in C11 for the C worker library.
 *
 * A worker gets FORKPOOL_SCOREBOARD_FD: a memfd of one page that holds its slot's
 * activity fields and nothing else (see slot_layout.h). It is the only writer of that
 * page, so every update is plain stores inside a seqlock, no locks and no read-modify-
 * write; the values are kept in this struct and never read back from shared memory.
 *
 * Typical use:
 *   fp_slot_writer w;
 *   if (fp_slot_writer_attach_env(&w) == 0) {
 *     fp_slot_writer_set_ready(&w);
 *     for each connection: fp_slot_writer_mark_busy(&w, fp_slot_writer_now_ns());
 *                          ... serve ...
 *                          fp_slot_writer_mark_idle(&w);
 *     fp_slot_writer_detach(&w);
 *   }
 * Every function is safe to call on a writer that failed to attach (it does nothing), so
 * a worker runs the same with or without a scoreboard.
 */
#ifndef FORKPOOL_SHM_SLOT_WRITER_H
#define FORKPOOL_SHM_SLOT_WRITER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_slot_writer {
  void* reservation; /* guard page + slot page + guard page, or NULL */
  unsigned long reservation_size;
  void* slot; /* the slot page inside the reservation, or NULL */
  /* The worker's own copy of what it last published. */
  uint64_t seq;
  uint32_t state;
  uint32_t in_flight;
  uint64_t connections_handled;
  int64_t busy_since_ns;
} fp_slot_writer;

/* Maps `fd` (one page) read-write between two inaccessible guard pages, so a stray write
 * just past the slot faults instead of landing in other memory. Returns 0, or -1 with
 * errno (EBADF, EINVAL if the fd is smaller than a page, or an mmap error). The fd is
 * not closed and may be closed right after. */
int fp_slot_writer_attach(fp_slot_writer* w, int fd);
/* Same, with the fd taken from FORKPOOL_SCOREBOARD_FD; -1 with ENOENT if it is unset. */
int fp_slot_writer_attach_env(fp_slot_writer* w);
/* For tests and benchmarks: writes to caller-provided memory (at least
 * FP_SLOT_ACTIVITY_SIZE bytes, 8-byte aligned) instead of a mapping. */
void fp_slot_writer_bind(fp_slot_writer* w, void* slot);

/* Ready for work: state idle, nothing in flight. */
void fp_slot_writer_set_ready(fp_slot_writer* w);
/* A connection begins at `now_ns` (CLOCK_MONOTONIC). The busy-since time is kept from the
 * first of several overlapping connections. */
void fp_slot_writer_mark_busy(fp_slot_writer* w, int64_t now_ns);
/* A connection ends: counted as handled; idle again once nothing is in flight. */
void fp_slot_writer_mark_idle(fp_slot_writer* w);
/* Unmaps the page; the writer can be attached again afterwards. */
void fp_slot_writer_detach(fp_slot_writer* w);

/* CLOCK_MONOTONIC in nanoseconds, the clock the scoreboard uses. */
int64_t fp_slot_writer_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* FORKPOOL_SHM_SLOT_WRITER_H */
