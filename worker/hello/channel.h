/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* dispatch = "master": connections arrive on the channel from the master, through
 * libforkpool-worker, instead of from listeners. */

#include "loop.h"

/* Watches the library's channel fd in the loop; the library asks for non-blocking
 * connections. Returns 0 or -1 after logging why. */
int hello_channel_watch(struct hello_loop* loop);

/* Adopts every connection pending on the channel. At end of work (the master closed
 * its end) or on a channel error, stops watching and requests the drain. */
void hello_channel_receive(struct hello_loop* loop);

/* For the drain: adopts what is already pending, then stops watching. */
void hello_channel_stop(struct hello_loop* loop);
