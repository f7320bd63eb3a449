/* SPDX-License-Identifier: Apache-2.0 */
#include "listeners.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define SD_LISTEN_FDS_START 3
#define LISTEN_BACKLOG 1024

/* Strict decimal: the whole string, no sign, no overflow. */
static bool parse_long(const char* s, long* out) {
  if (s == NULL || *s < '0' || *s > '9') return false;
  errno = 0;
  char* end;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

/* Formats a socket's local address for log lines; port 0 shows as resolved. */
static void describe_address(int fd, char* buf, size_t cap, bool* is_tcp) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  *is_tcp = false;
  if (getsockname(fd, (struct sockaddr*)&ss, &len) != 0) {
    snprintf(buf, cap, "fd %d", fd);
    return;
  }
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    char host[64], port[8]; /* a numeric address with a scope id fits */
    *is_tcp = true;
    if (getnameinfo((struct sockaddr*)&ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
      snprintf(buf, cap, "fd %d", fd);
    } else if (ss.ss_family == AF_INET6) {
      snprintf(buf, cap, "[%s]:%s", host, port);
    } else {
      snprintf(buf, cap, "%s:%s", host, port);
    }
  } else if (ss.ss_family == AF_UNIX) {
    const struct sockaddr_un* un = (const struct sockaddr_un*)&ss;
    size_t n = len > offsetof(struct sockaddr_un, sun_path)
                   ? len - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    if (n > 0 && un->sun_path[0] == '\0') {
      snprintf(buf, cap, "unix:@%.*s", (int)(n - 1), un->sun_path + 1);
    } else {
      snprintf(buf, cap, "unix:%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
    }
  } else {
    snprintf(buf, cap, "fd %d (family %d)", fd, (int)ss.ss_family);
  }
}

/* An inherited fd must be a listening stream socket; it is made non-blocking
 * and close-on-exec, as sd_listen_fds(3) leaves that to the program. */
static int adopt_inherited(int fd, const char* fdname, struct hello_listener* out) {
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    hello_log("LISTEN_FDS: fd %d is not a socket: %s", fd, strerror(errno));
    return -1;
  }
  len = sizeof listening;
  if (type != SOCK_STREAM || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
      !listening) {
    hello_log("LISTEN_FDS: fd %d is not a listening stream socket", fd);
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    hello_log("LISTEN_FDS: fcntl(fd %d): %s", fd, strerror(errno));
    return -1;
  }
  char addr[128];
  out->fd = fd;
  describe_address(fd, addr, sizeof addr, &out->is_tcp);
  if (fdname != NULL && *fdname != '\0') {
    snprintf(out->name, sizeof out->name, "%s (%s)", fdname, addr);
  } else {
    snprintf(out->name, sizeof out->name, "%s", addr);
  }
  return 0;
}

int hello_listeners_from_env(struct hello_listener* out, int max) {
  const char* fds_s = getenv("LISTEN_FDS");
  const char* pid_s = getenv("LISTEN_PID");
  /* Copied because unsetenv below may free the environment strings. */
  char* names = getenv("LISTEN_FDNAMES") != NULL ? strdup(getenv("LISTEN_FDNAMES")) : NULL;
  long nfds = 0, pid = 0;
  int result = 0;

  if (fds_s == NULL || pid_s == NULL) goto done;
  if (!parse_long(pid_s, &pid) || !parse_long(fds_s, &nfds)) {
    hello_log("LISTEN_FDS=%s LISTEN_PID=%s: not numbers", fds_s, pid_s);
    result = -1;
    goto done;
  }
  if (pid != (long)getpid()) {
    /* Meant for another process (inherited by mistake): ignore, as systemd does. */
    hello_log("LISTEN_PID=%ld is not this process, ignoring LISTEN_FDS", pid);
    goto done;
  }
  if (nfds > max) {
    hello_log("LISTEN_FDS=%ld: at most %d listeners are supported", nfds, max);
    result = -1;
    goto done;
  }

  char* save = NULL;
  char* name = names != NULL ? strtok_r(names, ":", &save) : NULL;
  for (long i = 0; i < nfds; i++) {
    if (adopt_inherited(SD_LISTEN_FDS_START + (int)i, name, &out[i]) != 0) {
      result = -1;
      goto done;
    }
    if (name != NULL) name = strtok_r(NULL, ":", &save);
  }
  result = (int)nfds;

done:
  free(names);
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDNAMES");
  return result;
}

static int bind_unix(const char* path, struct hello_listener* out) {
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof un.sun_path) {
    hello_log("--listen unix:%s: path empty or too long", path);
    return -1;
  }
  memcpy(un.sun_path, path, n);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  if (path[0] == '@') {
    un.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  } else {
    /* Replace a stale socket left by an earlier run, but never another kind of file. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr*)&un, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
    hello_log("--listen unix:%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  out->fd = fd;
  describe_address(fd, out->name, sizeof out->name, &out->is_tcp);
  return 0;
}

static int bind_tcp(const char* spec, struct hello_listener* out) {
  char host[256];
  const char* port;
  if (spec[0] == '[') {
    const char* close_bracket = strchr(spec, ']');
    if (close_bracket == NULL || close_bracket[1] != ':') goto bad;
    snprintf(host, sizeof host, "%.*s", (int)(close_bracket - spec - 1), spec + 1);
    port = close_bracket + 2;
  } else {
    const char* colon = strrchr(spec, ':');
    if (colon == NULL) goto bad;
    snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
    port = colon + 1;
  }
  if (*port == '\0') goto bad;

  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo* ai = NULL;
  int rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &ai);
  if (rc != 0) {
    hello_log("--listen %s: %s", spec, gai_strerror(rc));
    return -1;
  }
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  int one = 1;
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
    hello_log("--listen %s: %s", spec, strerror(errno));
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  out->fd = fd;
  describe_address(fd, out->name, sizeof out->name, &out->is_tcp);
  return 0;

bad:
  hello_log("--listen %s: expected HOST:PORT, [V6]:PORT or unix:PATH", spec);
  return -1;
}

int hello_listener_bind(const char* spec, struct hello_listener* out) {
  if (strncmp(spec, "unix:", 5) == 0) return bind_unix(spec + 5, out);
  if (strncmp(spec, "tcp://", 6) == 0) spec += 6;
  return bind_tcp(spec, out);
}
