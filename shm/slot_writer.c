/* SPDX-License-Identifier: Apache-2.0 */
/* Worker-side scoreboard writer. See slot_writer.h. */
#define _GNU_SOURCE
#include "shm/slot_writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shm/slot_layout.h"

/* Every offset is aligned for its field (shm/layout.hpp static_asserts the layout) and
 * the slot is a page of its own, so the casts from this void* are aligned. */
static void* field(fp_slot_writer* w, int offset) {
  return (unsigned char*)w->slot + offset;
}

static uint64_t* field_u64(fp_slot_writer* w, int offset) {
  return (uint64_t*)field(w, offset);
}

static uint32_t* field_u32(fp_slot_writer* w, int offset) {
  return (uint32_t*)field(w, offset);
}

/* Publishes the writer's copy: odd counter, fields, even counter (single writer). */
static void publish(fp_slot_writer* w) {
  if (w->slot == NULL) return;
  uint64_t* seq = field_u64(w, FP_SLOT_OFF_SEQ);
  w->seq |= 1u;
  __atomic_store_n(seq, w->seq, __ATOMIC_RELAXED);
  /* Orders the odd counter before the field stores. */
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(field_u32(w, FP_SLOT_OFF_STATE), w->state, __ATOMIC_RELAXED);
  __atomic_store_n(field_u32(w, FP_SLOT_OFF_IN_FLIGHT), w->in_flight, __ATOMIC_RELAXED);
  __atomic_store_n(field_u64(w, FP_SLOT_OFF_HANDLED), w->connections_handled, __ATOMIC_RELAXED);
  __atomic_store_n((int64_t*)field(w, FP_SLOT_OFF_BUSY_SINCE), w->busy_since_ns, __ATOMIC_RELAXED);
  w->seq += 1;
  __atomic_store_n(seq, w->seq, __ATOMIC_RELEASE);
}

static void reset_copy(fp_slot_writer* w) {
  w->seq = 0;
  w->state = FP_SLOT_STATE_STARTING;
  w->in_flight = 0;
  w->connections_handled = 0;
  w->busy_since_ns = 0;
}

void fp_slot_writer_bind(fp_slot_writer* w, void* slot) {
  memset(w, 0, sizeof *w);
  w->slot = slot;
  reset_copy(w);
  /* Continue from the counter already in place so readers never see it go backwards. */
  if (slot != NULL)
    w->seq = __atomic_load_n(field_u64(w, FP_SLOT_OFF_SEQ), __ATOMIC_RELAXED) & ~1ull;
}

int fp_slot_writer_attach(fp_slot_writer* w, int fd) {
  memset(w, 0, sizeof *w);
  reset_copy(w);
  long page = sysconf(_SC_PAGESIZE);
  struct stat st;
  if (fstat(fd, &st) != 0) return -1;
  if (st.st_size < page) {
    errno = EINVAL;
    return -1;
  }
  size_t size = (size_t)page * 3;
  unsigned char* base = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return -1;
  void* slot =
      mmap(base + page, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (slot == MAP_FAILED) {
    int saved = errno;
    munmap(base, size);
    errno = saved;
    return -1;
  }
  fp_slot_writer_bind(w, slot);
  w->reservation = base;
  w->reservation_size = size;
  return 0;
}

int fp_slot_writer_attach_env(fp_slot_writer* w) {
  memset(w, 0, sizeof *w);
  reset_copy(w);
  const char* text = getenv("FORKPOOL_SCOREBOARD_FD");
  if (text == NULL || *text == '\0') {
    errno = ENOENT;
    return -1;
  }
  char* end = NULL;
  errno = 0;
  long fd = strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || fd < 0 || fd > 0x7fffffff) {
    errno = EBADF;
    return -1;
  }
  return fp_slot_writer_attach(w, (int)fd);
}

void fp_slot_writer_set_ready(fp_slot_writer* w) {
  w->state = w->in_flight > 0 ? FP_SLOT_STATE_BUSY : FP_SLOT_STATE_IDLE;
  publish(w);
}

void fp_slot_writer_mark_busy(fp_slot_writer* w, int64_t now_ns) {
  if (w->in_flight == 0) w->busy_since_ns = now_ns;
  w->in_flight += 1;
  w->state = FP_SLOT_STATE_BUSY;
  publish(w);
}

void fp_slot_writer_mark_idle(fp_slot_writer* w) {
  if (w->in_flight > 0) w->in_flight -= 1;
  w->connections_handled += 1;
  if (w->in_flight == 0) {
    w->state = FP_SLOT_STATE_IDLE;
    w->busy_since_ns = 0;
  }
  publish(w);
}

void fp_slot_writer_detach(fp_slot_writer* w) {
  if (w->reservation != NULL) munmap(w->reservation, (size_t)w->reservation_size);
  memset(w, 0, sizeof *w);
}

int64_t fp_slot_writer_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
