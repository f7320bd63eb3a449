/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* dispatch = "master": connections arrive on the channel from the master, through
 * libforkpool-worker, instead of from listeners. */

#include <stdbool.h>

#include "loop.h"

/* Watches the library's channel fd in the loop; the library asks for non-blocking
 * connections. Returns 0 or -1 after logging why. */
int hello_channel_watch(struct hello_loop* loop);

/* Adopts every connection pending on the channel. At end of work (the master closed
 * its end) or on a channel error, stops watching and requests the drain. */
void hello_channel_receive(struct hello_loop* loop);

/* Whether the loop may sleep in the channel itself instead of epoll_wait: it holds no
 * connection and has no listener, so the channel and the stop signals are all it waits
 * for, and a blocking read of the channel saves the epoll_wait before every connection. */
bool hello_channel_can_wait(const struct hello_loop* loop);

/* Sleeps in the channel until the master sends a connection, ends the work, or a stop
 * signal arrives (hello_signals_block_begin), and handles what came as
 * hello_channel_receive does. */
void hello_channel_wait(struct hello_loop* loop);

/* For the drain: shuts down the reading side of the channel (the master's later CONNs
 * fail, and go to other workers), adopts what was sent before, then stops watching. */
void hello_channel_stop(struct hello_loop* loop);
