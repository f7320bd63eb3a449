/* SPDX-License-Identifier: Apache-2.0 */
/* prefork_ref: the reference server the forkpool benchmarks compare against.
 *
 * A plain C prefork HTTP/1.1 "Hello, world" server with no supervisor, no
 * channel and no scoreboard: N children, each a single-threaded epoll loop.
 * It answers like worker/hello (same routes, same response headers in the
 * same order and of about the same length, same /sleep semantics: the whole
 * process blocks) and pays the same per-connection costs (accept4 until
 * EAGAIN, TCP_NODELAY, one epoll registration removed before close, a FIONREAD
 * probe before a server-side close), so that a ratio against it measures what forkpool adds.
 *
 *   prefork_ref --listen 127.0.0.1:PORT --workers N --mode reuseport|shared|fdpass
 *               [--max-inflight N] [--respawn]
 *
 * reuseport: every child opens its own SO_REUSEPORT listener and the kernel
 *            spreads connections over them by a hash of the 4-tuple.
 * shared:    the parent binds one listener and the children inherit it; each
 *            child watches it with EPOLLEXCLUSIVE, as forkpool-hello does.
 * fdpass:    the C limit of forkpool's master dispatch. The parent alone owns the
 *            (non-blocking) listener, accepts in batches from an epoll loop and passes
 *            each connection over a SOCK_SEQPACKET socketpair with SCM_RIGHTS (an
 *            FP_MSG_CONN record of worker/protocol.h) to the least-busy child, ties to
 *            the one that became idle most recently; the child answers with an
 *            FP_MSG_DONE record once it has closed the connection. When every child
 *            has --max-inflight (default 1) connections, new ones wait in a FIFO in
 *            the parent. Children are blocking and serve one connection at a time.
 *
 * PORT may be 0: the parent picks a free port and prints it. The parent
 * prints "prefork_ref: listening on HOST:PORT" once every child is set up,
 * forwards SIGTERM/SIGINT to the children and exits when they are gone.
 * --respawn (shared mode): a child that dies is replaced at once by a fresh fork of
 * the parent, which is the C limit of "a SIGKILLed worker replaced and serving"
 * (bench/respawn.py). Without it the parent does not respawn children. It skips
 * request bodies only by Content-Length (no chunked bodies). */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../worker/protocol.h"

#define MAX_WORKERS 256
#define BACKLOG 1024
#define MAX_EVENTS 128
#define IN_CAP 4096   /* larger request heads get 431, as forkpool-hello's limit is larger */
#define OUT_CAP 4096  /* room for responses to pipelined requests */
#define RESPONSE_MAX 1024
#define DATE_LEN 29
#define SLEEP_MAX_MS 600000u
#define BODY "Hello, world\n"

enum mode { MODE_REUSEPORT, MODE_SHARED, MODE_FDPASS };
static const char* const mode_names[] = {"reuseport", "shared", "fdpass"};

struct conn {
  int kind; /* first member: epoll data.ptr points at it */
  int fd;
  bool close_after;
  bool want_out;
  uint64_t body_left;
  size_t in_len;
  size_t out_off, out_len;
  char* in;
  char out[OUT_CAP];
};

enum { KIND_LISTENER = 1, KIND_CONN = 2 };

static int listener_kind = KIND_LISTENER;
static int epfd = -1;
static int listen_fd = -1;
static volatile sig_atomic_t stop_requested = 0;

/* Preformatted responses: [0] HTTP/1.1 keep-alive, [1] HTTP/1.0 keep-alive, [2] close. */
static char hello_text[3][RESPONSE_MAX];
static size_t hello_len[3];
static size_t date_at;
static char common[256];
static size_t common_len;
static time_t date_second = -1;

static const char* const conn_lines[3] = {"", "Connection: keep-alive\r\n", "Connection: close\r\n"};

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void die(const char* what) {
  fprintf(stderr, "prefork_ref[%ld]: %s: %s\n", (long)getpid(), what, strerror(errno));
  exit(1);
}

static const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Internal Server Error";
  }
}

static size_t compose(char* out, int status, const char* body, size_t body_len, int conn) {
  int n = snprintf(out, RESPONSE_MAX,
                   "HTTP/1.1 %d %s\r\n%.*sContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n",
                   status, reason(status), (int)common_len, common, body_len, conn_lines[conn]);
  if (n < 0 || (size_t)n + body_len > RESPONSE_MAX) abort();
  memcpy(out + n, body, body_len);
  return (size_t)n + body_len;
}

/* The same headers as forkpool-hello, in the same order; "ref" stands in for the pool. */
static void responses_init(int worker) {
  common_len = (size_t)snprintf(common, sizeof common,
                                "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: forkpool-hello\r\n"
                                "X-Worker-Pid: %ld\r\nX-Worker: ref-%d\r\n",
                                (long)getpid(), worker);
  for (int c = 0; c < 3; c++) hello_len[c] = compose(hello_text[c], 200, BODY, sizeof BODY - 1, c);
  date_at = sizeof "HTTP/1.1 200 OK\r\nDate: " - 1;
  date_second = -1;
}

static void update_date(void) {
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME_COARSE, &wall);
  if (wall.tv_sec == date_second) return;
  date_second = wall.tv_sec;
  struct tm tm;
  char date[DATE_LEN + 1];
  if (gmtime_r(&wall.tv_sec, &tm) == NULL ||
      strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) != DATE_LEN) {
    return;
  }
  memcpy(common + sizeof "Date: " - 1, date, DATE_LEN);
  for (int c = 0; c < 3; c++) memcpy(hello_text[c] + date_at, date, DATE_LEN);
}

static int open_listener(const struct sockaddr_in* addr, bool reuseport) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    die("setsockopt(SO_REUSEPORT)");
  }
  if (bind(fd, (const struct sockaddr*)addr, sizeof *addr) != 0) die("bind");
  return fd;
}

static void conn_close(struct conn* c) {
  /* forkpool-hello drops the registration before close (a descriptor the master
   * passed may still be open in the master, so close alone would not drop it);
   * the reference pays the same syscall so that it is not counted against forkpool. */
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->in);
  free(c);
}

static void set_out_interest(struct conn* c, bool out) {
  if (c->want_out == out) return;
  struct epoll_event ev = {.events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->want_out = out;
}

static bool header_is(const char* p, size_t n, const char* name) {
  size_t m = strlen(name);
  return n > m && p[m] == ':' && strncasecmp(p, name, m) == 0;
}

static bool value_has(const char* v, size_t n, const char* token) {
  size_t m = strlen(token);
  for (size_t i = 0; i + m <= n; i++) {
    if (strncasecmp(v + i, token, m) == 0) return true;
  }
  return false;
}

static void sleep_ms(unsigned ms) {
  struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

static bool query_ms(const char* q, size_t n, unsigned* ms) {
  if (n < 4 || memcmp(q, "ms=", 3) != 0) return false;
  unsigned long v = 0;
  for (size_t i = 3; i < n && q[i] != '&'; i++) {
    if (q[i] < '0' || q[i] > '9') return false;
    v = v * 10 + (unsigned long)(q[i] - '0');
    if (v > SLEEP_MAX_MS) return false;
  }
  *ms = (unsigned)v;
  return true;
}

/* Sends what fits without blocking; used before a /sleep so earlier pipelined
 * answers are not held back by it (forkpool-hello does the same). */
static void send_some(struct conn* c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n <= 0) return;
    c->out_off += (size_t)n;
  }
}

/* Answers one complete head of head_len bytes at c->in. */
static void answer(struct conn* c, size_t head_len) {
  const char* p = c->in;
  const char* end = p + head_len;
  const char* eol = memchr(p, '\n', head_len);
  char* out = c->out + c->out_len;
  /* Request line: METHOD SP TARGET SP HTTP/1.x */
  const char* sp1 = memchr(p, ' ', (size_t)(eol - p));
  const char* sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  if (sp2 == NULL || eol - sp2 < 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
    c->out_len += compose(out, 400, "Bad Request\n", 12, 2);
    c->close_after = true;
    return;
  }
  bool http10 = sp2[8] == '0';
  bool conn_close = false, conn_keep = false;
  for (const char* h = eol + 1; h < end;) {
    const char* next = memchr(h, '\n', (size_t)(end - h));
    size_t n = (size_t)(next - h);
    if (header_is(h, n, "connection")) {
      conn_close = value_has(h + 11, n - 11, "close");
      conn_keep = value_has(h + 11, n - 11, "keep-alive");
    } else if (header_is(h, n, "content-length")) {
      c->body_left = strtoull(h + 15, NULL, 10);
    }
    h = next + 1;
  }
  bool keep = !conn_close && (!http10 || conn_keep);
  int conn = !keep ? 2 : http10 ? 1 : 0;

  bool head = sp1 - p == 4 && memcmp(p, "HEAD", 4) == 0;
  bool get = sp1 - p == 3 && memcmp(p, "GET", 3) == 0;
  const char* path = sp1 + 1;
  const char* q = memchr(path, '?', (size_t)(sp2 - path));
  size_t path_len = (size_t)((q != NULL ? q : sp2) - path);
  bool root = path_len == 1 && path[0] == '/';
  bool is_sleep = path_len == 6 && memcmp(path, "/sleep", 6) == 0;
  size_t len;
  if (!root && !is_sleep) {
    len = compose(out, 404, "Not Found\n", 10, conn);
  } else if (!get && !head) {
    len = compose(out, 405, "Method Not Allowed\n", 19, conn);
  } else if (root) {
    len = head ? hello_len[conn] - (sizeof BODY - 1) : hello_len[conn];
    memcpy(out, hello_text[conn], len);
  } else {
    unsigned ms;
    if (q == NULL || !query_ms(q + 1, (size_t)(sp2 - q - 1), &ms)) {
      len = compose(out, 400, "expected /sleep?ms=0..600000\n", 29, conn);
    } else {
      send_some(c);
      sleep_ms(ms);
      update_date();
      char body[48];
      int n = snprintf(body, sizeof body, "slept %u ms\n", ms);
      out = c->out + c->out_len;
      len = compose(out, 200, body, (size_t)n, conn);
    }
  }
  c->out_len += len;
  c->close_after = conn == 2;
}

/* Answers the complete requests in the input buffer. */
static void process(struct conn* c) {
  if (c->out_off > 0) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  while (!c->close_after && c->in_len > 0 && OUT_CAP - c->out_len >= RESPONSE_MAX) {
    if (c->body_left > 0) {
      size_t take = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
      memmove(c->in, c->in + take, c->in_len - take);
      c->in_len -= take;
      c->body_left -= take;
      continue;
    }
    /* Empty lines before a request line are ignored. */
    size_t skip = 0;
    while (skip < c->in_len && (c->in[skip] == '\r' || c->in[skip] == '\n')) skip++;
    if (skip > 0) {
      memmove(c->in, c->in + skip, c->in_len - skip);
      c->in_len -= skip;
      continue;
    }
    const char* e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (e == NULL) {
      if (c->in_len == IN_CAP) {
        c->out_len += compose(c->out + c->out_len, 431, "Request Header Fields Too Large\n", 32, 2);
        c->close_after = true;
      }
      return;
    }
    size_t head_len = (size_t)(e - c->in) + 4;
    answer(c, head_len);
    memmove(c->in, c->in + head_len, c->in_len - head_len);
    c->in_len -= head_len;
  }
}

/* 1 = all sent, 0 = socket full, -1 = broken. */
static int flush(struct conn* c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return 0;
    } else {
      return -1;
    }
  }
  c->out_off = c->out_len = 0;
  return 1;
}

/* Like forkpool-hello: a server-side close first checks whether the peer is
 * still sending; if so, it shuts down the write side and reads to EOF (here
 * simply: reads what is there, then closes). */
static void finish(struct conn* c) {
  int unread = 0;
  if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) shutdown(c->fd, SHUT_WR);
  conn_close(c);
}

static void run(struct conn* c) {
  for (;;) {
    process(c);
    int sent = flush(c);
    if (sent < 0) {
      conn_close(c);
      return;
    }
    if (sent == 0) {
      set_out_interest(c, true);
      return;
    }
    if (c->close_after) {
      finish(c);
      return;
    }
    if (OUT_CAP - c->out_len >= RESPONSE_MAX) break;
  }
  set_out_interest(c, false);
}

static void on_conn(struct conn* c, uint32_t events) {
  if (c->want_out) {
    run(c);
    return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) return;
  ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
  if (n > 0) {
    c->in_len += (size_t)n;
    run(c);
  } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return;
  } else {
    conn_close(c);
  }
}

static void accept_all(void) {
  for (;;) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN, or out of descriptors: a benchmark tool just waits */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn* c = malloc(sizeof *c);
    char* in = malloc(IN_CAP);
    if (c == NULL || in == NULL) {
      free(c);
      free(in);
      close(fd);
      continue;
    }
    c->kind = KIND_CONN;
    c->fd = fd;
    c->close_after = false;
    c->want_out = false;
    c->body_left = 0;
    c->in_len = 0;
    c->out_off = c->out_len = 0;
    c->in = in;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) conn_close(c);
  }
}

/* Serves on listen_fd (already listening) until SIGTERM/SIGINT. */
static _Noreturn void child_main(int worker) {
  responses_init(worker);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  /* EPOLLEXCLUSIVE matters for the shared listener; on a private one it is harmless. */
  struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listener_kind};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &lev) != 0) die("epoll_ctl(listener)");

  struct epoll_event events[MAX_EVENTS];
  while (!stop_requested) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, 1000);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    /* forkpool-hello reads both clocks once per wake-up; so does this. */
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    update_date();
    for (int i = 0; i < n; i++) {
      int* kind = events[i].data.ptr;
      if (*kind == KIND_LISTENER) {
        accept_all();
      } else {
        on_conn((struct conn*)(void*)kind, events[i].events);
      }
    }
  }
  _exit(0);
}

/* ---- fdpass mode ------------------------------------------------------------------ */

#define QUEUE_CAP 8192 /* connections waiting for a child; the listener pauses when full */
#define ACCEPT_BATCH 64

struct worker_state {
  int chan;           /* parent's end of the child's socketpair (reads use MSG_DONTWAIT) */
  int inflight;       /* CONN sent minus DONE received */
  uint64_t idle_tick; /* when its in-flight count last dropped (larger = more recent) */
  bool dead;
};

static struct worker_state pool[MAX_WORKERS];
static int pool_size;
static int max_inflight = 1;
static bool respawn = false; /* --respawn: replace a child that dies (shared mode) */
static uint64_t idle_clock;
static int queue[QUEUE_CAP];
static size_t queue_head, queue_len;
static bool listener_paused;
static uint64_t next_conn_id = 1;

/* One 16-byte record over a SOCK_SEQPACKET channel, with fd in SCM_RIGHTS if fd >= 0. */
static bool send_record(int chan, uint16_t type, uint64_t id, int fd) {
  struct fp_msg msg = {.type = type, .arg = 0, .reserved = 0, .id = id};
  struct iovec iov = {.iov_base = &msg, .iov_len = sizeof msg};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&control, 0, sizeof control);
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof control.buf;
    struct cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t n = sendmsg(chan, &mh, MSG_NOSIGNAL);
    if (n == (ssize_t)sizeof msg) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

/* Least busy live child below max_inflight, ties to the most recently idle; -1 if none. */
static int pick_worker(void) {
  int best = -1;
  for (int w = 0; w < pool_size; w++) {
    const struct worker_state* s = &pool[w];
    if (s->dead || s->inflight >= max_inflight) continue;
    if (best < 0 || s->inflight < pool[best].inflight ||
        (s->inflight == pool[best].inflight && s->idle_tick > pool[best].idle_tick)) {
      best = w;
    }
  }
  return best;
}

/* Passes fd to a child and closes the parent's copy; false (fd kept) if every child is full. */
static bool dispatch(int fd) {
  for (;;) {
    int w = pick_worker();
    if (w < 0) return false;
    if (send_record(pool[w].chan, FP_MSG_CONN, next_conn_id++, fd)) {
      pool[w].inflight++;
      close(fd);
      return true;
    }
    /* The channel is broken: that child takes nothing more. */
    pool[w].dead = true;
  }
}

static void set_listener_paused(bool paused) {
  if (listener_paused == paused) return;
  struct epoll_event ev = {.events = paused ? 0 : EPOLLIN, .data.u32 = MAX_WORKERS};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &ev) == 0) listener_paused = paused;
}

static void drain_queue(void) {
  while (queue_len > 0 && dispatch(queue[queue_head])) {
    queue_head = (queue_head + 1) % QUEUE_CAP;
    queue_len--;
  }
  if (queue_len < QUEUE_CAP) set_listener_paused(false);
}

static void accept_batch(void) {
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    if (queue_len == QUEUE_CAP) {
      set_listener_paused(true);
      return;
    }
    /* No SOCK_NONBLOCK: the children serve the connection with blocking calls. */
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (queue_len == 0 && dispatch(fd)) continue;
    queue[(queue_head + queue_len) % QUEUE_CAP] = fd;
    queue_len++;
  }
}

/* Reads every DONE record a child has sent: recvmmsg takes up to DONE_BATCH records in
 * one call and returns as soon as none is left, so a wake-up costs one syscall. */
#define DONE_BATCH 16
static void on_channel(int w, uint32_t events) {
  struct fp_msg msgs[DONE_BATCH];
  struct mmsghdr vec[DONE_BATCH];
  struct iovec iov[DONE_BATCH];
  for (;;) {
    memset(vec, 0, sizeof vec);
    for (int i = 0; i < DONE_BATCH; i++) {
      iov[i].iov_base = &msgs[i];
      iov[i].iov_len = sizeof msgs[i];
      vec[i].msg_hdr.msg_iov = &iov[i];
      vec[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(pool[w].chan, vec, DONE_BATCH, MSG_DONTWAIT, NULL);
    for (int i = 0; i < n; i++) {
      if (vec[i].msg_len == 0) { /* EOF: the child is gone */
        n = 0;
        break;
      }
      if (vec[i].msg_len == sizeof msgs[i] && msgs[i].type == FP_MSG_DONE && pool[w].inflight > 0) {
        pool[w].inflight--;
        pool[w].idle_tick = ++idle_clock;
      }
    }
    if (n == DONE_BATCH) continue;
    if (n > 0) return;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && (events & (EPOLLHUP | EPOLLERR)) == 0) {
      return;
    }
    /* EOF, error or hang-up: the child is gone. */
    if (!stop_requested) fprintf(stderr, "prefork_ref: child %d exited unexpectedly\n", w);
    pool[w].dead = true;
    epoll_ctl(epfd, EPOLL_CTL_DEL, pool[w].chan, NULL);
    return;
  }
}

static void parent_fdpass_loop(void) {
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = MAX_WORKERS};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) != 0) die("epoll_ctl(listener)");
  for (int w = 0; w < pool_size; w++) {
    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = (uint32_t)w};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, pool[w].chan, &cev) != 0) die("epoll_ctl(channel)");
  }
  struct epoll_event events[MAX_EVENTS];
  while (!stop_requested) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    /* DONE records first, so that the queue goes out before newly accepted connections. */
    bool listener_ready = false, done = false;
    for (int i = 0; i < n; i++) {
      if (events[i].data.u32 == MAX_WORKERS) {
        listener_ready = true;
      } else {
        on_channel((int)events[i].data.u32, events[i].events);
        done = true;
      }
    }
    if (done) drain_queue();
    if (listener_ready) accept_batch();
  }
}

/* Child: serves one blocking connection to its end, then closes it. */
static void serve_blocking(int fd) {
  static char in[IN_CAP];
  static struct conn c;
  c.kind = KIND_CONN;
  c.fd = fd;
  c.close_after = false;
  c.want_out = false;
  c.body_left = 0;
  c.in_len = 0;
  c.out_off = c.out_len = 0;
  c.in = in;
  for (;;) {
    ssize_t n = recv(fd, c.in + c.in_len, IN_CAP - c.in_len, 0);
    if (n < 0 && errno == EINTR && !stop_requested) continue;
    if (n <= 0) break;
    c.in_len += (size_t)n;
    update_date();
    /* Blocking sends drain the output, so process() only stops for a partial head. */
    bool progress = true;
    while (progress) {
      size_t before = c.in_len;
      process(&c);
      if (flush(&c) < 0) {
        close(fd);
        return;
      }
      if (c.close_after) {
        int unread = 0;
        if (ioctl(fd, FIONREAD, &unread) == 0 && unread > 0) shutdown(fd, SHUT_WR);
        close(fd);
        return;
      }
      progress = c.in_len != before && c.in_len > 0;
    }
  }
  close(fd);
}

static _Noreturn void child_fdpass_main(int worker, int chan) {
  responses_init(worker);
  while (!stop_requested) {
    struct fp_msg msg;
    struct iovec iov = {.iov_base = &msg, .iov_len = sizeof msg};
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } control;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(chan, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* the parent is gone */
    struct cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    if (n != (ssize_t)sizeof msg || msg.type != FP_MSG_CONN || cm == NULL ||
        cm->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    serve_blocking(fd);
    if (!send_record(chan, FP_MSG_DONE, msg.id, -1)) break;
  }
  _exit(0);
}

static void usage(FILE* f) {
  fprintf(f, "usage: prefork_ref --listen HOST:PORT [--workers N] [--mode reuseport|shared|fdpass]\n"
             "                   [--max-inflight N] [--respawn (shared mode)]\n");
}

int main(int argc, char** argv) {
  const char* listen_spec = NULL;
  int workers = 4;
  enum mode mode = MODE_REUSEPORT;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--respawn") == 0) {
      respawn = true;
      continue;
    }
    if (i + 1 >= argc) {
      usage(stderr);
      return 2;
    }
    if (strcmp(argv[i], "--listen") == 0) {
      listen_spec = argv[++i];
    } else if (strcmp(argv[i], "--workers") == 0) {
      workers = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--mode") == 0) {
      const char* m = argv[++i];
      if (strcmp(m, "reuseport") == 0) {
        mode = MODE_REUSEPORT;
      } else if (strcmp(m, "shared") == 0) {
        mode = MODE_SHARED;
      } else if (strcmp(m, "fdpass") == 0) {
        mode = MODE_FDPASS;
      } else {
        usage(stderr);
        return 2;
      }
    } else if (strcmp(argv[i], "--max-inflight") == 0) {
      max_inflight = atoi(argv[++i]);

    } else {
      usage(stderr);
      return 2;
    }
  }
  if (listen_spec == NULL || workers < 1 || workers > MAX_WORKERS || max_inflight < 1 ||
      (respawn && mode != MODE_SHARED)) {
    usage(stderr);
    return 2;
  }
  if (strncmp(listen_spec, "tcp://", 6) == 0) listen_spec += 6;
  char host[64];
  const char* colon = strrchr(listen_spec, ':');
  if (colon == NULL || (size_t)(colon - listen_spec) >= sizeof host) {
    usage(stderr);
    return 2;
  }
  memcpy(host, listen_spec, (size_t)(colon - listen_spec));
  host[colon - listen_spec] = '\0';
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "prefork_ref: %s: expected an IPv4 address\n", host);
    return 2;
  }

  /* In both modes the parent binds first: in shared mode this is the listener;
   * in reuseport mode it only reserves the port (port 0 included) until the
   * children have bound their own, then it is closed. */
  int parent_fd = open_listener(&addr, mode == MODE_REUSEPORT);
  socklen_t alen = sizeof addr;
  if (getsockname(parent_fd, (struct sockaddr*)&addr, &alen) != 0) die("getsockname");
  if (mode != MODE_REUSEPORT) {
    if (listen(parent_fd, BACKLOG) != 0) die("listen");
    listen_fd = parent_fd;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);

  pid_t pids[MAX_WORKERS];
  int ready_pipe[2];
  if (pipe(ready_pipe) != 0) die("pipe");
  for (int w = 0; w < workers; w++) {
    int pair[2] = {-1, -1};
    if (mode == MODE_FDPASS) {
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) die("socketpair");
      pool[w].chan = pair[0];
    }
    pids[w] = fork();
    if (pids[w] < 0) die("fork");
    if (pids[w] == 0) {
      close(ready_pipe[0]);
      if (mode == MODE_REUSEPORT) close(parent_fd);
      /* Tell the parent this child's listener is open, then serve. */
      if (mode == MODE_REUSEPORT) {
        listen_fd = open_listener(&addr, true);
        if (listen(listen_fd, BACKLOG) != 0) die("listen");
      }
      ssize_t ignored = write(ready_pipe[1], "r", 1);
      (void)ignored;
      close(ready_pipe[1]);
      if (mode == MODE_FDPASS) {
        close(parent_fd);
        for (int j = 0; j <= w; j++) close(pool[j].chan);
        child_fdpass_main(w, pair[1]);
      }
      child_main(w);
    }
    if (mode == MODE_FDPASS) close(pair[1]);
  }
  pool_size = workers;
  close(ready_pipe[1]);
  for (int w = 0; w < workers; w++) {
    char b;
    if (read(ready_pipe[0], &b, 1) != 1) break;
  }
  close(ready_pipe[0]);
  if (mode == MODE_REUSEPORT) close(parent_fd);
  printf("prefork_ref: listening on %s:%u (%d workers, %s)\n", host, (unsigned)ntohs(addr.sin_port),
         workers, mode_names[mode]);
  fflush(stdout);

  if (mode == MODE_FDPASS) parent_fdpass_loop(); /* returns on SIGTERM/SIGINT */

  int alive = workers;
  bool signalled = false;
  while (alive > 0) {
    if (stop_requested && !signalled) {
      for (int w = 0; w < workers; w++) kill(pids[w], SIGTERM);
      signalled = true;
    }
    int status;
    pid_t p = wait(&status);
    if (p > 0 && respawn && !stop_requested) {
      for (int w = 0; w < workers; w++) {
        if (pids[w] != p) continue;
        pids[w] = fork();
        if (pids[w] < 0) die("fork");
        if (pids[w] == 0) child_main(w);
      }
    } else if (p > 0) {
      alive--;
      if (!stop_requested) fprintf(stderr, "prefork_ref: child %ld exited unexpectedly\n", (long)p);
    } else if (errno != EINTR) {
      break;
    }
  }
  return 0;
}
