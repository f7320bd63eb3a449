/* SPDX-License-Identifier: Apache-2.0 */
#include "channel.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "log.h"
#include "signals.h"

int hello_channel_watch(struct hello_loop* loop) {
  fp_worker_set_nonblocking(loop->worker, 1);
  loop->channel_src.kind = HELLO_SOURCE_CHANNEL;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &loop->channel_src};
  if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fp_worker_fd(loop->worker), &ev) != 0) {
    hello_log("epoll_ctl(channel fd %d): %s", fp_worker_fd(loop->worker), strerror(errno));
    return -1;
  }
  loop->channel_watched = true;
  return 0;
}

static void unwatch(struct hello_loop* loop) {
  if (!loop->channel_watched) return;
  /* The channel stays open so that DONE can still be sent for what is in flight. */
  epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fp_worker_fd(loop->worker), NULL);
  loop->channel_watched = false;
}

/* After FP_WORKER_END or an error from the library. */
static void end_of_channel(struct hello_loop* loop, int r) {
  if (r == FP_WORKER_END) {
    /* A stop signal that woke hello_channel_wait ends the channel too (it shuts down our
     * reading side): that is no news from the master. */
    if (!loop->drain_requested)
      hello_log("end of work from the master: %zu connection(s) open", loop->n_conns);
  } else {
    hello_log("receiving from the master's channel: %s", strerror(errno));
  }
  /* EOF and errors stay readable: watching on would spin. */
  unwatch(loop);
  loop->drain_requested = true;
}

void hello_channel_receive(struct hello_loop* loop) {
  for (;;) {
    fp_conn c;
    int r = fp_worker_try_next(loop->worker, &c);
    if (r == 0) {
      hello_adopt_passed(loop, &c);
      continue;
    }
    if (r != FP_WORKER_PENDING) end_of_channel(loop, r);
    return;
  }
}

bool hello_channel_can_wait(const struct hello_loop* loop) {
  return loop->channel_watched && loop->n_conns == 0 && loop->n_listeners == 0 && !loop->drain_requested &&
         !loop->draining;
}

void hello_channel_wait(struct hello_loop* loop) {
  fp_conn c;
  int r = FP_WORKER_PENDING;
  if (hello_signals_block_begin(fp_worker_fd(loop->worker))) {
    r = fp_worker_next(loop->worker, &c); /* one read of one record, which sleeps until it comes */
    hello_signals_block_end();
  }
  hello_loop_update_clock(loop);
  if (hello_signals_stop_pending()) hello_loop_poll_signals(loop);
  if (r == 0) {
    /* Records behind this one (max_inflight > 1) are still in the channel, which the loop
     * watches (level-triggered): no read here that would find nothing at every connection. */
    hello_adopt_passed(loop, &c);
  } else if (r != FP_WORKER_PENDING) {
    end_of_channel(loop, r);
  }
}

void hello_channel_stop(struct hello_loop* loop) {
  if (!loop->channel_watched) return;
  /* Refusing first leaves no window: what the master sent before is still read below,
   * and a CONN it sends after fails there, so the master gives that connection to another
   * worker instead of losing it in a channel nobody reads (a stop signal from someone
   * else, with no end of work from the master). The read then ends in end of work. */
  if (fp_worker_refuse_more(loop->worker) != 0)
    hello_log("shutting down the channel's reading side: %s", strerror(errno));
  hello_channel_receive(loop);
  unwatch(loop);
}
