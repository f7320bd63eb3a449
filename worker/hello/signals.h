/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* forkpool-hello's signals. TERM and INT ask for a graceful stop: the handler writes the
 * signal number to a self-pipe the loop watches. QUIT ends the process at once. */

#include <stdbool.h>

/* Installs the handlers and unblocks the signals. Returns the read end of the self-pipe
 * (non-blocking), or -1 after logging why. */
int hello_signals_install(void);

/* A stop signal arrived (the self-pipe holds it until the loop reads it). */
bool hello_signals_stop_pending(void);

/* Around a blocking read of `fd` that is the only thing the process waits for (no epoll):
 * between begin and end, a stop signal shuts down fd's reading side, so the read returns
 * at once whenever the signal comes. begin returns false, and arms nothing, when a stop
 * signal arrived already: then do not block. */
bool hello_signals_block_begin(int fd);
void hello_signals_block_end(void);
