// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's signals, read from a signalfd. They stay blocked in every thread of the
// master, so the kernel keeps them pending until the loop reads them: none is taken and
// then lost. That matters at a binary upgrade: a TERM (or TTIN, HUP, ...) that arrives
// while the master prepares to re-execute itself stays pending through execve(2) and the
// new image reads it from its own signalfd, where a libuv signal handler would have
// written it into the old image's pipe and taken it into the exec with it. SIGCHLD alone
// is left to libuv (its own child watching needs the handler).
//
// Besides the ones the master acts on, it reads the signals whose default action would
// end it and that nothing in a supervisor should end it for (SIGXFSZ from a log file
// over its size limit, SIGXCPU, SIGVTALRM, SIGPROF, SIGALRM, SIGIO, SIGPWR, SIGSTKFLT,
// SIGSYS sent by kill, the real-time signals): it logs them and goes on.

#include <signal.h>

#include <functional>
#include <memory>

#include "base/owned_fd.hpp"
#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

// The signals the master reads from its signalfd: what run() leaves blocked in the
// master's thread once the loop is ready (every other thread has them all blocked).
sigset_t master_signal_set();

// True for a signal the master only logs (see above).
bool is_ignored_signal(int signo);

class SignalQueue {
 public:
  // Blocks master_signal_set() in the calling thread and reads it from a signalfd on
  // `loop`; each signal read calls `callback` (a signal sent twice before the loop read it
  // is one, as with any standard signal).
  SignalQueue(uv_loop_t* loop, std::function<void(int)> callback);
  SignalQueue(const SignalQueue&) = delete;
  SignalQueue& operator=(const SignalQueue&) = delete;

 private:
  void drain();
  base::OwnedFd fd_;
  std::unique_ptr<FdWatch> watch_;
  std::function<void(int)> callback_;
};

}  // namespace forkpool::supervisor
