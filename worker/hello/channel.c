/* SPDX-License-Identifier: Apache-2.0 */
#include "channel.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "log.h"

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

void hello_channel_receive(struct hello_loop* loop) {
  for (;;) {
    fp_conn c;
    int r = fp_worker_try_next(loop->worker, &c);
    if (r == 0) {
      hello_adopt_passed(loop, &c);
      continue;
    }
    if (r == FP_WORKER_PENDING) return;
    if (r == FP_WORKER_END) {
      hello_log("end of work from the master: %zu connection(s) open", loop->n_conns);
    } else {
      hello_log("receiving from the master's channel: %s", strerror(errno));
    }
    /* EOF and errors stay readable: watching on would spin. */
    unwatch(loop);
    loop->drain_requested = true;
    return;
  }
}

void hello_channel_stop(struct hello_loop* loop) {
  if (!loop->channel_watched) return;
  hello_channel_receive(loop);
  unwatch(loop);
}
