/* SPDX-License-Identifier: Apache-2.0 */
/* fp-testworker: a worker with misbehaviour modes for the supervisor's
 * integration tests. Options combine; the startup steps run in this order:
 *   --stdout/--stderr, --pidfile, --report, --orphan/--orphan-and-exit,
 * then a timeline from startup: --notify-after-ms (READY=1 and --status),
 * --watchdog-ms pings, and --exit/--raise after --exit-after-ms but never
 * before the READY notification. Without --exit it waits for signals:
 * SIGTERM (unless --ignore-term) and SIGINT end it with status 0.
 * Channel modes (master dispatch, $FORKPOOL_CHANNEL_FD): --channel-junk sends
 * malformed records at startup, --channel-ready a READY record after them, and
 * --serve answers every CONN with a fixed HTTP response and a DONE (with
 * --junk-before-done, a malformed record before each DONE). */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "worker/protocol.h"

extern char** environ;

struct options {
  bool do_exit;
  int exit_code;
  long exit_after_ms;
  int raise_signal; /* 0: none */
  bool ignore_term;
  long notify_after_ms; /* -1: never */
  const char* status;
  long watchdog_ms;    /* -1: no pings */
  long watchdog_count; /* -1: forever */
  const char* report;
  const char* pidfile;
  const char* orphan;
  bool orphan_and_exit;
  const char* stdout_text;
  const char* stderr_text;
  bool close_channel;   /* close FORKPOOL_CHANNEL_FD at startup, then go on */
  long channel_junk; /* malformed records to send at startup */
  long junk_size;    /* their size in bytes (0: empty records) */
  bool channel_ready;
  bool serve;
  bool junk_before_done;
};

static volatile sig_atomic_t stop_requested;
/* --detach-orphan: the grandchild leaves the worker's process group and session, as a
 * daemonizing program does, so only its reaper (the master) can still find it. */
static bool orphan_detach;

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void on_child(int sig) {
  (void)sig;
}

static void usage(FILE* f) {
  fputs(
      "usage: fp-testworker [OPTION]...\n"
      "  --exit CODE            exit with CODE after the startup steps\n"
      "  --exit-after-ms MS     ...this long after startup (implies --exit 0)\n"
      "  --raise SIGNAL         instead of exiting, die by SIGNAL (name or number)\n"
      "  --ignore-term          ignore SIGTERM (the supervisor must use SIGKILL)\n"
      "  --notify-after-ms MS   send READY=1 to $NOTIFY_SOCKET after MS ms\n"
      "  --status TEXT          send STATUS=TEXT (with READY=1, else at startup)\n"
      "  --watchdog-ms MS       send WATCHDOG=1 every MS ms...\n"
      "  --watchdog-count N     ...N times, then stay silent (default: forever)\n"
      "  --report FILE          write key=value facts about this process to FILE\n"
      "  --pidfile FILE         write the pid to FILE\n"
      "  --orphan FILE          fork a grandchild that writes its pid to FILE and pauses\n"
      "  --orphan-and-exit FILE the same, then this process exits 0\n"
      "  --detach-orphan        the grandchild calls setsid() (leaves the process group)\n"
      "  --stdout TEXT          write TEXT and a newline to stdout\n"
      "  --stderr TEXT          write TEXT and a newline to stderr\n"
      "  --close-channel        close the master's channel (FORKPOOL_CHANNEL_FD) and go on\n"
      "  --hold-fds             keep inherited fds open (the default; accepted for clarity)\n"
      "  --tag TEXT             ignored; shows in the report's argv\n"
      "  --channel-junk N       send N malformed records on the channel at startup\n"
      "  --junk-size BYTES      ...of this size (default 0: empty records)\n"
      "  --channel-ready        then send a READY record on the channel\n"
      "  --serve                answer each CONN with a small HTTP response and DONE\n"
      "  --junk-before-done     ...sending a malformed record before each DONE\n"
      "Files are written atomically (FILE.tmp, then rename).\n"
      "Exit status: 0, or CODE; 2 on a usage error.\n",
      f);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char* what, const char* detail) {
  fprintf(stderr, "fp-testworker[%ld]: %s: %s\n", (long)getpid(), what, detail);
}

/* ---- files ------------------------------------------------------------ */

static bool write_all(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= (size_t)n;
  }
  return true;
}

/* Readers never see a partial file: FILE.tmp is written, then renamed.
 * Uses only async-signal-safe calls, so a freshly forked child may use it. */
static bool write_file_atomic(const char* path, const char* data, size_t len) {
  char tmp[PATH_MAX];
  size_t n = strlen(path);
  if (n + sizeof ".tmp" > sizeof tmp) return false;
  memcpy(tmp, path, n);
  memcpy(tmp + n, ".tmp", sizeof ".tmp");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = write_all(fd, data, len);
  ok = close(fd) == 0 && ok;
  return ok && rename(tmp, path) == 0;
}

/* Decimal pid and a newline, without stdio (async-signal-safe). */
static bool write_pid_file(const char* path, pid_t pid) {
  char buf[24];
  size_t i = sizeof buf;
  buf[--i] = '\n';
  unsigned long v = (unsigned long)pid;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return write_file_atomic(path, buf + i, sizeof buf - i);
}

/* ---- report ----------------------------------------------------------- */

/* Values are one line each: a newline inside one is written as "\n". */
static void put_value(FILE* f, const char* v) {
  for (; *v != '\0'; v++) {
    if (*v == '\n') {
      fputs("\\n", f);
    } else {
      fputc(*v, f);
    }
  }
  fputc('\n', f);
}

static void put_rlimit(FILE* f, const char* name, int resource) {
  struct rlimit rl;
  if (getrlimit(resource, &rl) != 0) return;
  if (rl.rlim_cur == RLIM_INFINITY) {
    fprintf(f, "rlimit.%s=infinity\n", name);
  } else {
    fprintf(f, "rlimit.%s=%llu\n", name, (unsigned long long)rl.rlim_cur);
  }
}

static void put_signal_set(FILE* f, const char* key, const sigset_t* set) {
  fprintf(f, "%s=", key);
  const char* sep = "";
  for (int s = 1; s < NSIG; s++) {
    if (sigismember(set, s) == 1) {
      fprintf(f, "%s%d", sep, s);
      sep = ",";
    }
  }
  fputc('\n', f);
}

static bool env_reported(const char* entry) {
  return strncmp(entry, "FORKPOOL_", 9) == 0 || strncmp(entry, "LISTEN_", 7) == 0 ||
         strncmp(entry, "NOTIFY_SOCKET=", 14) == 0;
}

static void put_fds(FILE* f) {
  DIR* d = opendir("/proc/self/fd");
  if (d == NULL) return;
  int self = dirfd(d);
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd == self) continue;
    char path[64], target[PATH_MAX];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) continue;
    target[n] = '\0';
    fprintf(f, "fd.%d=", fd);
    put_value(f, target);
  }
  closedir(d);
}

/* blocked and ignored: the signal state found at startup, before this
 * program changed it, so tests can check what the supervisor handed over. */
static bool write_report(const char* file, int argc, char** argv, const sigset_t* blocked,
                         const sigset_t* ignored) {
  char* buf = NULL;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (f == NULL) return false;

  fprintf(f, "pid=%ld\nppid=%ld\npgid=%ld\nsid=%ld\n", (long)getpid(), (long)getppid(),
          (long)getpgrp(), (long)getsid(0));
  fprintf(f, "uid=%ld\ngid=%ld\neuid=%ld\negid=%ld\n", (long)getuid(), (long)getgid(),
          (long)geteuid(), (long)getegid());
  int ngroups = getgroups(0, NULL);
  gid_t* groups = ngroups > 0 ? calloc((size_t)ngroups, sizeof *groups) : NULL;
  if (groups != NULL) ngroups = getgroups(ngroups, groups);
  fputs("groups=", f);
  for (int i = 0; groups != NULL && i < ngroups; i++) {
    fprintf(f, "%s%ld", i > 0 ? "," : "", (long)groups[i]);
  }
  fputc('\n', f);
  free(groups);

  char cwd[PATH_MAX];
  fputs("cwd=", f);
  put_value(f, getcwd(cwd, sizeof cwd) != NULL ? cwd : "?");
  mode_t mask = umask(0);
  umask(mask);
  fprintf(f, "umask=%04o\n", (unsigned)mask);

  put_rlimit(f, "nofile", RLIMIT_NOFILE);
  put_rlimit(f, "core", RLIMIT_CORE);
  put_rlimit(f, "nproc", RLIMIT_NPROC);
  put_rlimit(f, "as", RLIMIT_AS);
  put_signal_set(f, "sig.blocked", blocked);
  put_signal_set(f, "sig.ignored", ignored);
  put_fds(f);
  for (char** e = environ; *e != NULL; e++) {
    if (!env_reported(*e)) continue;
    fputs("env.", f);
    put_value(f, *e);
  }
  fprintf(f, "argc=%d\nargv=", argc);
  for (int i = 0; i < argc; i++) fprintf(f, "%s%s", i > 0 ? " " : "", argv[i]);
  fputc('\n', f);

  if (fclose(f) != 0) {
    free(buf);
    return false;
  }
  bool ok = write_file_atomic(file, buf, len);
  free(buf);
  return ok;
}

/* ---- sd_notify -------------------------------------------------------- */

/* One datagram to $NOTIFY_SOCKET, as sd_notify(3) sends it. */
static void notify(const char* msg) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == NULL || *path == '\0') {
    say("notify", "NOTIFY_SOCKET is not set");
    return;
  }
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (n >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) {
    say("notify: NOTIFY_SOCKET unusable", path);
    return;
  }
  memcpy(sa.sun_path, path, n);
  if (path[0] == '@') sa.sun_path[0] = '\0'; /* abstract namespace */
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr*)&sa, salen) < 0) {
    say("notify: sendto NOTIFY_SOCKET", strerror(errno));
  }
  if (fd >= 0) close(fd);
}

/* ---- signals and children ------------------------------------------- */

static void set_handler(int sig, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = handler;
  sigaction(sig, &sa, NULL);
}

/* A grandchild that writes its pid to `file` and pauses until killed. It
 * keeps the inherited descriptors, as a careless daemonizing child would.
 * Returns once the file exists, so a test may read it right away. */
static bool spawn_orphan(const char* file) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return false;
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    close(ready[0]);
    set_handler(SIGTERM, SIG_DFL);
    set_handler(SIGINT, SIG_DFL);
    set_handler(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (orphan_detach) setsid();
    if (!write_pid_file(file, getpid())) _exit(1);
    close(ready[1]);
    for (;;) pause();
  }
  close(ready[1]);
  char b;
  while (read(ready[0], &b, 1) < 0 && errno == EINTR) {
  }
  close(ready[0]);
  return true;
}

static void reap_children(void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static int signal_number(const char* s) {
  static const struct {
    const char* name;
    int sig;
  } names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ILL", SIGILL},
               {"ABRT", SIGABRT}, {"FPE", SIGFPE},   {"KILL", SIGKILL}, {"SEGV", SIGSEGV},
               {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
               {"USR2", SIGUSR2}, {"BUS", SIGBUS}};
  if (strncmp(s, "SIG", 3) == 0) s += 3;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strcmp(s, names[i].name) == 0) return names[i].sig;
  }
  char* end;
  long v = strtol(s, &end, 10);
  return (*s != '\0' && *end == '\0' && v > 0 && v < NSIG) ? (int)v : 0;
}

/* Dies by the signal: default action, unblocked, and no core file. */
static void die_by_signal(int sig) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  set_handler(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(sig);
}

/* ---- the channel (master dispatch) ------------------------------------ */

static int channel_fd(void) {
  const char* v = getenv("FORKPOOL_CHANNEL_FD");
  return v != NULL && *v != '\0' ? atoi(v) : -1;
}

/* The worker stops talking to the master but keeps running. */
static void close_channel(void) {
  int fd = channel_fd();
  if (fd >= 0) close(fd);
}

/* One record, blocking until it is queued: a flood must arrive whole so that tests
 * can count it. */
static bool channel_send(int fd, const void* data, size_t len) {
  for (;;) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, -1);
      continue;
    }
    say("channel send", strerror(errno));
    return false;
  }
}

static void channel_message(int fd, uint16_t type, uint64_t id) {
  struct fp_msg m = {.type = type, .id = id};
  channel_send(fd, &m, sizeof m);
}

static void channel_junk(int fd, long count, long size) {
  static char junk[65536];
  memset(junk, 0x5a, (size_t)size);
  for (long i = 0; i < count; i++) {
    if (!channel_send(fd, junk, (size_t)size)) return;
  }
}

/* Reads the request head (so closing cannot reset the connection under the client's
 * feet), answers, closes. */
static void answer_http(int conn) {
  int flags = fcntl(conn, F_GETFL);
  if (flags >= 0) fcntl(conn, F_SETFL, flags & ~O_NONBLOCK);
  char buf[4096];
  size_t have = 0;
  while (have < sizeof buf - 1) {
    ssize_t n = recv(conn, buf + have, sizeof buf - 1 - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = '\0';
    if (strstr(buf, "\r\n\r\n") != NULL) break;
  }
  static const char reply[] =
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
  write_all(conn, reply, sizeof reply - 1);
  close(conn);
}

/* One record from the master: a CONN is answered, anything else ignored. False at the
 * end of work (the master shut its side down). */
static bool serve_one(int fd, const struct options* o) {
  struct fp_msg m;
  char control[CMSG_SPACE(sizeof(int) * 4)];
  struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = sizeof control};
  ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  int conn = -1;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (conn < 0) conn = got;
      else close(got);
    }
  }
  if (n == 0) {
    if (conn >= 0) close(conn);
    return false; /* only the master sends here, and never an empty record */
  }
  if (n != (ssize_t)sizeof m || m.type != FP_MSG_CONN) {
    if (conn >= 0) close(conn);
    return true;
  }
  if (conn >= 0) answer_http(conn);
  if (o->junk_before_done) channel_junk(fd, 1, o->junk_size);
  channel_message(fd, FP_MSG_DONE, m.id);
  return true;
}

/* ---- options ---------------------------------------------------------- */

static bool parse_ms(const char* s, long* out) {
  char* end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *s < '0' || *s > '9' || *end != '\0') return false;
  *out = v;
  return true;
}

/* Returns false after printing why the command line is wrong. */
static bool parse_options(int argc, char** argv, struct options* o) {
  *o = (struct options){.notify_after_ms = -1, .watchdog_ms = -1, .watchdog_count = -1};
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--ignore-term") == 0) {
      o->ignore_term = true;
      continue;
    }
    if (strcmp(a, "--hold-fds") == 0) continue;
    if (strcmp(a, "--detach-orphan") == 0) {
      orphan_detach = true;
      continue;
    }
    if (strcmp(a, "--close-channel") == 0) {
      o->close_channel = true;
      continue;
    }
    if (strcmp(a, "--channel-ready") == 0) {
      o->channel_ready = true;
      continue;
    }
    if (strcmp(a, "--serve") == 0) {
      o->serve = true;
      continue;
    }
    if (strcmp(a, "--junk-before-done") == 0) {
      o->junk_before_done = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "fp-testworker: %s: unknown option or missing value\n", a);
      return false;
    }
    const char* v = argv[++i];
    long n = 0;
    bool number_ok = parse_ms(v, &n);
    if (strcmp(a, "--exit") == 0 && number_ok && n <= 255) {
      o->do_exit = true;
      o->exit_code = (int)n;
    } else if (strcmp(a, "--exit-after-ms") == 0 && number_ok) {
      o->do_exit = true;
      o->exit_after_ms = n;
    } else if (strcmp(a, "--raise") == 0 && signal_number(v) != 0) {
      o->do_exit = true;
      o->raise_signal = signal_number(v);
    } else if (strcmp(a, "--notify-after-ms") == 0 && number_ok) {
      o->notify_after_ms = n;
    } else if (strcmp(a, "--watchdog-ms") == 0 && number_ok && n > 0) {
      o->watchdog_ms = n;
    } else if (strcmp(a, "--watchdog-count") == 0 && number_ok) {
      o->watchdog_count = n;
    } else if (strcmp(a, "--status") == 0) {
      o->status = v;
    } else if (strcmp(a, "--report") == 0) {
      o->report = v;
    } else if (strcmp(a, "--pidfile") == 0) {
      o->pidfile = v;
    } else if (strcmp(a, "--orphan") == 0 || strcmp(a, "--orphan-and-exit") == 0) {
      o->orphan = v;
      o->orphan_and_exit = strcmp(a, "--orphan-and-exit") == 0;
    } else if (strcmp(a, "--stdout") == 0) {
      o->stdout_text = v;
    } else if (strcmp(a, "--stderr") == 0) {
      o->stderr_text = v;
    } else if (strcmp(a, "--channel-junk") == 0 && number_ok) {
      o->channel_junk = n;
    } else if (strcmp(a, "--junk-size") == 0 && number_ok && n <= 65536) {
      o->junk_size = n;
    } else if (strcmp(a, "--tag") == 0) {
      /* Only for the report's argv. */
    } else {
      fprintf(stderr, "fp-testworker: %s %s: unknown option or bad value\n", a, v);
      return false;
    }
  }
  return true;
}

/* ---- main ------------------------------------------------------------- */

static void write_line(int fd, const char* text) {
  size_t n = strlen(text);
  char* line = malloc(n + 1);
  if (line == NULL) return;
  memcpy(line, text, n);
  line[n] = '\n';
  write_all(fd, line, n + 1);
  free(line);
}

static int64_t earliest(int64_t a, int64_t b) {
  if (a < 0) return b;
  if (b < 0) return a;
  return a < b ? a : b;
}

int main(int argc, char** argv) {
  struct options o;
  if (!parse_options(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }

  /* The signal state as inherited, for the report, before changing it. */
  sigset_t inherited_blocked, ignored, wait_mask, stop_set;
  sigprocmask(SIG_SETMASK, NULL, &inherited_blocked);
  sigemptyset(&ignored);
  for (int s = 1; s < NSIG; s++) {
    struct sigaction old;
    if (sigaction(s, NULL, &old) == 0 && old.sa_handler == SIG_IGN) sigaddset(&ignored, s);
  }

  /* Stop signals stay blocked except inside ppoll, which unblocks them
   * atomically: a signal can never slip in between a check and the wait. */
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGTERM);
  sigaddset(&stop_set, SIGINT);
  sigaddset(&stop_set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &stop_set, NULL);
  wait_mask = inherited_blocked;
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGCHLD);
  set_handler(SIGTERM, o.ignore_term ? SIG_IGN : on_stop);
  set_handler(SIGINT, on_stop);
  set_handler(SIGCHLD, on_child);

  if (o.stdout_text != NULL) write_line(STDOUT_FILENO, o.stdout_text);
  if (o.stderr_text != NULL) write_line(STDERR_FILENO, o.stderr_text);
  if (o.pidfile != NULL && !write_pid_file(o.pidfile, getpid())) {
    say(o.pidfile, strerror(errno));
    return 1;
  }
  if (o.report != NULL && !write_report(o.report, argc, argv, &inherited_blocked, &ignored)) {
    say(o.report, strerror(errno));
    return 1;
  }
  if (o.orphan != NULL) {
    if (!spawn_orphan(o.orphan)) {
      say("fork", strerror(errno));
      return 1;
    }
    if (o.orphan_and_exit) return 0;
  }

  if (o.close_channel) close_channel();
  const int chan = channel_fd();
  if ((o.channel_junk > 0 || o.channel_ready || o.serve) && chan < 0) {
    say("channel", "FORKPOOL_CHANNEL_FD is not set");
    return 1;
  }
  if (o.channel_junk > 0) channel_junk(chan, o.channel_junk, o.junk_size);
  if (o.channel_ready) channel_message(chan, FP_MSG_READY, 0);
  bool serving = o.serve;

  const int64_t start = now_ms();
  int64_t notify_at = o.notify_after_ms >= 0 ? start + o.notify_after_ms : -1;
  if (notify_at < 0 && o.status != NULL) {
    char msg[4096];
    snprintf(msg, sizeof msg, "STATUS=%s", o.status);
    notify(msg);
  }
  int64_t ping_at = o.watchdog_ms > 0 && o.watchdog_count != 0 ? start + o.watchdog_ms : -1;
  long pings_left = o.watchdog_count;
  int64_t exit_at = o.do_exit ? start + o.exit_after_ms : -1;
  if (exit_at >= 0 && notify_at > exit_at) exit_at = notify_at; /* READY=1 goes out first */

  for (;;) {
    if (stop_requested) return 0;
    reap_children();
    int64_t now = now_ms();
    if (notify_at >= 0 && now >= notify_at) {
      char msg[4096];
      snprintf(msg, sizeof msg, "READY=1%s%s", o.status != NULL ? "\nSTATUS=" : "",
               o.status != NULL ? o.status : "");
      notify(msg);
      notify_at = -1;
    }
    if (ping_at >= 0 && now >= ping_at) {
      notify("WATCHDOG=1");
      if (pings_left > 0) pings_left--;
      ping_at = pings_left == 0 ? -1 : ping_at + o.watchdog_ms;
    }
    if (exit_at >= 0 && now >= exit_at) {
      if (o.raise_signal != 0) die_by_signal(o.raise_signal);
      return o.exit_code;
    }

    int64_t next = earliest(earliest(notify_at, ping_at), exit_at);
    struct timespec timeout;
    if (next >= 0) {
      int64_t wait = next > now ? next - now : 0;
      timeout.tv_sec = (time_t)(wait / 1000);
      timeout.tv_nsec = (long)(wait % 1000) * 1000000L;
    }
    struct pollfd chan_poll = {.fd = chan, .events = POLLIN};
    int ready = ppoll(serving ? &chan_poll : NULL, serving ? 1 : 0, next >= 0 ? &timeout : NULL, &wait_mask);
    if (serving && ready > 0 && (chan_poll.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (!serve_one(chan, &o)) return 0; /* end of work: finish and exit 0, as the protocol asks */
    }
  }
}
