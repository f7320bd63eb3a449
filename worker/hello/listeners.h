/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Where listening sockets come from: inherited through the systemd
 * socket-activation convention (LISTEN_FDS), or bound here for standalone use
 * (--listen). Sockets are stream sockets: TCP over IPv4/IPv6, or Unix. */

#include <stdbool.h>

#define HELLO_MAX_LISTENERS 64

struct hello_listener {
  int fd;
  bool is_tcp;
  char name[160]; /* for log lines: LISTEN_FDNAMES entry and address */
};

/* Takes the sockets passed with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES and unsets
 * the three variables. Returns how many were stored in out (0 when the
 * variables are absent or meant for another process), or -1 after logging why
 * they are unusable. */
int hello_listeners_from_env(struct hello_listener* out, int max);

/* Binds and listens on "HOST:PORT", "[V6]:PORT", "tcp://..." or "unix:PATH"
 * (a leading '@' in PATH selects the abstract namespace). Returns 0, or -1
 * after logging why. */
int hello_listener_bind(const char* spec, struct hello_listener* out);
