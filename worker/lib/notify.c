/* SPDX-License-Identifier: Apache-2.0 */
/* sd_notify(3) without libsystemd: one datagram to NOTIFY_SOCKET, a path or, with a
 * leading '@', a name in the abstract namespace. */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC, POLLRDHUP, strtok_r, strdup */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "worker/lib/worker_internal.h"

int fp_worker_notify(fp_worker* w, const char* message) {
  if (w->notify_socket == NULL) return 0;
  const char* path = w->notify_socket;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t len = strlen(path);
  if (path[0] != '/' && path[0] != '@') {
    errno = EAFNOSUPPORT; /* vsock: and the like are systemd's, not forkpool's */
    return -1;
  }
  if (len > sizeof addr.sun_path - (path[0] == '/' ? 1 : 0)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);

  if (w->notify_fd < 0) {
    w->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (w->notify_fd < 0) return -1;
  }
  size_t size = strlen(message);
  for (;;) {
    ssize_t n =
        sendto(w->notify_fd, message, size, MSG_NOSIGNAL, (struct sockaddr*)&addr, addr_len);
    if (n >= 0) return 0;
    if (errno != EINTR) return -1;
  }
}
