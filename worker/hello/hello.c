/* SPDX-License-Identifier: Apache-2.0 */
/* forkpool-hello: the example worker. A minimal HTTP/1.1 "Hello, world"
 * server, one single-threaded epoll loop per process, for the quick start,
 * the integration tests and the benchmarks. */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/version.h"
#include "channel.h"
#include "listeners.h"
#include "log.h"
#include "loop.h"
#include "response.h"
#include "signals.h"

#define EXIT_USAGE 2
#define EXIT_CONFIG 78 /* EX_CONFIG: the supervisor does not respawn it before ready */

static void usage(FILE* f) {
  fprintf(f,
          "usage: forkpool-hello [--listen ADDRESS]...\n"
          "\n"
          "An HTTP/1.1 \"Hello, world\" server. Listening sockets are taken from\n"
          "LISTEN_FDS/LISTEN_PID (systemd socket activation, as forkpool's shared\n"
          "dispatch passes them), and from --listen for standalone use. Under\n"
          "forkpool's master dispatch (FORKPOOL_CHANNEL_FD, no LISTEN_FDS) the\n"
          "connections are passed by the master instead.\n"
          "\n"
          "  --listen ADDRESS  bind HOST:PORT, [V6]:PORT, tcp://HOST:PORT or unix:PATH\n"
          "                    (repeatable; port 0 picks a free port, logged at start)\n"
          "  --help            this text\n"
          "  --version         the version\n"
          "\n"
          "Routes: GET / -> \"Hello, world\"; GET /sleep?ms=N blocks the process N ms.\n"
          "Signals: TERM/INT stop gracefully, QUIT stops at once.\n");
}

int main(int argc, char** argv) {
  struct hello_listener listeners[HELLO_MAX_LISTENERS];
  /* First, so the variables are consumed whatever happens next. */
  int n = hello_listeners_from_env(listeners, HELLO_MAX_LISTENERS);
  if (n < 0) return EXIT_CONFIG;

  for (int i = 1; i < argc; i++) {
    const char* arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(arg, "--version") == 0) {
      printf("forkpool-hello %s\n", FORKPOOL_VERSION);
      return 0;
    }
    const char* value = NULL;
    if (strncmp(arg, "--listen=", 9) == 0) {
      value = arg + 9;
    } else if (strcmp(arg, "--listen") == 0 && i + 1 < argc) {
      value = argv[++i];
    } else {
      fprintf(stderr, "forkpool-hello: %s: unknown option or missing value\n", arg);
      usage(stderr);
      return EXIT_USAGE;
    }
    if (n == HELLO_MAX_LISTENERS) {
      fprintf(stderr, "forkpool-hello: at most %d listeners\n", HELLO_MAX_LISTENERS);
      return EXIT_USAGE;
    }
    if (hello_listener_bind(value, &listeners[n]) != 0) return 1;
    n++;
  }
  /* Under forkpool the worker library reports readiness and activity; with no listener
   * (dispatch = "master") it also brings the connections. */
  fp_worker* worker = NULL;
  const char* channel = getenv("FORKPOOL_CHANNEL_FD");
  if (channel != NULL && *channel != '\0') {
    worker = fp_worker_open();
    if (worker == NULL && n == 0) {
      hello_log("FORKPOOL_CHANNEL_FD=%s: %s", channel, strerror(errno));
      return EXIT_CONFIG;
    }
    if (worker == NULL)
      hello_log("FORKPOOL_CHANNEL_FD=%s: %s; not reporting activity", channel, strerror(errno));
  }
  bool from_master = n == 0 && worker != NULL;
  if (n == 0 && !from_master) {
    fprintf(stderr,
            "forkpool-hello: no listening socket: expected LISTEN_FDS (socket activation),\n"
            "FORKPOOL_CHANNEL_FD (forkpool's master dispatch) or --listen ADDRESS\n");
    usage(stderr);
    return EXIT_USAGE;
  }

  int signal_fd = hello_signals_install();
  if (signal_fd < 0) return 1;
  hello_response_init(getpid(), getenv("FORKPOOL_POOL"), getenv("FORKPOOL_WORKER"));

  static struct hello_loop loop;
  if (hello_loop_init(&loop, signal_fd) != 0) return 1;
  for (int i = 0; i < n; i++) {
    if (hello_loop_add_listener(&loop, &listeners[i]) != 0) return 1;
    hello_log("listening on %s", listeners[i].name);
  }
  loop.worker = worker;
  if (from_master) {
    if (hello_channel_watch(&loop) != 0) return 1;
    hello_log("serving connections passed by the master (pool %s, worker %d)",
              fp_worker_pool(worker), fp_worker_number(worker));
  }
  if (worker != NULL && fp_worker_ready(worker) != 0) {
    hello_log("reporting ready to the master: %s", strerror(errno));
  }
  int status = hello_loop_run(&loop);
  fp_worker_close(worker);
  hello_log("exiting with status %d", status);
  return status;
}
