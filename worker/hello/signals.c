/* SPDX-License-Identifier: Apache-2.0 */
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static int signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t stop_signalled;
/* The descriptor the loop is blocked reading, or -1. */
static volatile sig_atomic_t blocked_fd = -1;

/* Hands the signal number to the loop; all work happens there. A loop blocked in a read
 * instead of epoll_wait is woken by shutting down that read: a check of a flag before the
 * read could not close the window between the check and the read. */
static void on_stop_signal(int sig) {
  int saved = errno;
  stop_signalled = 1;
  unsigned char b = (unsigned char)sig;
  ssize_t ignored = write(signal_pipe[1], &b, 1);
  (void)ignored;
  int fd = blocked_fd;
  if (fd >= 0) shutdown(fd, SHUT_RD);
  errno = saved;
}

/* SIGQUIT means "now": the loop may be blocked in a /sleep for a long time,
 * so the handler ends the process itself (_exit is async-signal-safe). */
static void on_quit_signal(int sig) {
  (void)sig;
  _exit(0);
}

int hello_signals_install(void) {
  if (pipe2(signal_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    hello_log("pipe2: %s", strerror(errno));
    return -1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_stop_signal;
  /* No SA_RESTART: a blocked syscall returns EINTR and the caller retries. */
  int failed = sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0;
  sa.sa_handler = on_quit_signal;
  failed = failed || sigaction(SIGQUIT, &sa, NULL) != 0;
  sa.sa_handler = SIG_IGN;
  failed = failed || sigaction(SIGPIPE, &sa, NULL) != 0;

  /* The supervisor resets the mask before exec; be robust when run otherwise. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGQUIT);
  if (failed || sigprocmask(SIG_UNBLOCK, &set, NULL) != 0) {
    hello_log("installing signal handlers: %s", strerror(errno));
    return -1;
  }
  return signal_pipe[0];
}

bool hello_signals_stop_pending(void) { return stop_signalled != 0; }

bool hello_signals_block_begin(int fd) {
  blocked_fd = fd;
  /* The handler runs on this thread: the store must be made before the flag is read. */
  atomic_signal_fence(memory_order_seq_cst);
  if (stop_signalled) {
    blocked_fd = -1;
    return false;
  }
  return true;
}

void hello_signals_block_end(void) {
  atomic_signal_fence(memory_order_seq_cst);
  blocked_fd = -1;
}
