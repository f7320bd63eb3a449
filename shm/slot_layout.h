/* SPDX-License-Identifier: Apache-2.0 */
/* The worker-writable part of a scoreboard slot, as C sees it.
 *
 * Each worker receives one memfd of one page (FORKPOOL_SCOREBOARD_FD) whose first
 * FP_SLOT_ACTIVITY_SIZE bytes hold the fields below, and nothing else. The C++ side
 * (shm/layout.hpp) declares the same fields as std::atomic and static_asserts that every
 * offset and size here matches, so the two views cannot drift apart silently.
 *
 * Only the worker owning the page writes these fields; the master and forkpoolctl only
 * read them, and treat every value as untrusted input.
 */
#ifndef FORKPOOL_SHM_SLOT_LAYOUT_H
#define FORKPOOL_SHM_SLOT_LAYOUT_H

#include <stdint.h>

/* Values of the `state` field. They are the numeric values of forkpool::shm::WorkerState;
 * a worker only ever writes these three. */
#define FP_SLOT_STATE_STARTING 1u /* not ready yet */
#define FP_SLOT_STATE_IDLE 2u     /* ready, no connection in flight */
#define FP_SLOT_STATE_BUSY 3u     /* at least one connection in flight */

/* Byte offsets inside the slot page. Every field is naturally aligned. */
#define FP_SLOT_OFF_SEQ 0        /* uint64_t: seqlock counter, odd while writing */
#define FP_SLOT_OFF_STATE 8      /* uint32_t: FP_SLOT_STATE_* */
#define FP_SLOT_OFF_IN_FLIGHT 12 /* uint32_t: connections currently held */
#define FP_SLOT_OFF_HANDLED 16   /* uint64_t: connections finished since exec */
#define FP_SLOT_OFF_BUSY_SINCE \
  24 /* int64_t: CLOCK_MONOTONIC ns when in_flight left 0; 0 when idle */
#define FP_SLOT_ACTIVITY_SIZE 64 /* one cache line; the rest of the page is unused */

/* The same layout as a struct, for code that prefers names to offsets. Accessed only
 * through __atomic builtins. */
typedef struct fp_slot_activity {
  uint64_t seq;
  uint32_t state;
  uint32_t in_flight;
  uint64_t connections_handled;
  int64_t busy_since_ns;
  uint8_t reserved[32];
} fp_slot_activity;

#endif /* FORKPOOL_SHM_SLOT_LAYOUT_H */
