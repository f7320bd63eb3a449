// SPDX-License-Identifier: Apache-2.0
#include "supervisor/signal_queue.hpp"

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace forkpool::supervisor {

namespace {
// What the master acts on (Master::on_signal), SIGCHLD excepted.
constexpr int kHandled[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU};
// Default action "terminate" (or "core"), and nothing a supervisor should die of. SIGPIPE
// is ignored outright (a write to a gone peer returns EPIPE), SIGABRT, SIGSEGV, SIGBUS,
// SIGFPE, SIGILL and SIGTRAP are the program's own faults, and SIGKILL and SIGSTOP
// cannot be caught.
constexpr int kIgnored[] = {SIGXFSZ, SIGXCPU, SIGVTALRM, SIGPROF, SIGALRM, SIGIO, SIGPWR, SIGSTKFLT, SIGSYS};
}  // namespace

bool is_ignored_signal(int signo) {
  for (int s : kIgnored)
    if (s == signo) return true;
  return signo >= SIGRTMIN && signo <= SIGRTMAX;
}

sigset_t master_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kHandled) sigaddset(&set, s);
  for (int s : kIgnored) sigaddset(&set, s);
  // SIGRTMIN is glibc's first free one (it keeps two for itself, which stay untouched).
  for (int s = SIGRTMIN; s <= SIGRTMAX; ++s) sigaddset(&set, s);
  return set;
}

SignalQueue::SignalQueue(uv_loop_t* loop, std::function<void(int)> callback) : callback_(std::move(callback)) {
  const sigset_t set = master_signal_set();
  // Blocked before the signalfd exists: one arriving in between stays pending for it.
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd_) throw std::runtime_error(std::string("signalfd: ") + std::strerror(errno));
  watch_ = std::make_unique<FdWatch>(loop, fd_.get());
  watch_->start(UV_READABLE, [this](int, int) { drain(); });
}

void SignalQueue::drain() {
  // One at a time: the callback of one may re-execute the master (SIGUSR2), and what it
  // has not read yet must still be pending then, not in a buffer here.
  signalfd_siginfo info;
  while (true) {
    const ssize_t n = ::read(fd_.get(), &info, sizeof info);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof info)) return;  // EAGAIN: read them all
    callback_(static_cast<int>(info.ssi_signo));
  }
}

}  // namespace forkpool::supervisor
