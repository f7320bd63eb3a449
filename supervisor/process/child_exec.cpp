// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/child_exec.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

namespace forkpool::supervisor {
namespace {

[[noreturn]] void fail(int error_fd, ChildStep step, int detail = 0) {
  const ChildFailure f{static_cast<int>(step), errno, detail};
  ssize_t n;
  do {
    n = ::write(error_fd, &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  ::_exit(127);
}

// Moves every planned fd to its target number. Sources are first copied above every
// target, so a target can never overwrite a source that is still to be moved.
// `error_fd` and `master_pidfd` (when >= 0) are moved above the targets as well.
bool apply_fds(const SpawnPlan& plan, int& error_fd, int& master_pidfd) {
  const int floor = plan.highest_target + 1;
  error_fd = ::fcntl(error_fd, F_DUPFD_CLOEXEC, floor);
  if (error_fd < 0) return false;
  if (master_pidfd >= 0) {
    master_pidfd = ::fcntl(master_pidfd, F_DUPFD_CLOEXEC, floor);
    if (master_pidfd < 0) return false;
  }
  int high[64];
  const std::size_t n = plan.fds.size();
  if (n > sizeof high / sizeof high[0]) {
    errno = EMFILE;
    return false;
  }
  for (std::size_t i = 0; i < n; ++i) {
    high[i] = ::fcntl(plan.fds[i].from, F_DUPFD_CLOEXEC, floor);
    if (high[i] < 0) return false;
  }
  for (std::size_t i = 0; i < n; ++i)
    if (::dup2(high[i], plan.fds[i].to) < 0) return false;  // dup2 clears FD_CLOEXEC on the target
  // Everything above the targets closes at exec; the error pipe stays usable until then.
  if (::syscall(SYS_close_range, static_cast<unsigned>(floor), ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = floor; fd < 65536; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  return true;
}

void write_decimal(char* out, std::size_t width, long value) {
  char digits[24];
  std::size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < sizeof digits);
  std::size_t i = 0;
  for (; i < n && i + 1 < width; ++i) out[i] = digits[n - 1 - i];
  out[i] = '\0';
}

}  // namespace

const char* to_string(ChildStep step) {
  switch (step) {
    case ChildStep::ProcessGroup: return "setpgid";
    case ChildStep::Signals: return "sigprocmask";
    case ChildStep::Descriptors: return "dup2";
    case ChildStep::Rlimit: return "setrlimit";
    case ChildStep::Groups: return "setgroups";
    case ChildStep::Gid: return "setgid";
    case ChildStep::Uid: return "setuid";
    case ChildStep::Cwd: return "chdir";
    case ChildStep::ParentDeath: return "prctl(PR_SET_PDEATHSIG)";
    case ChildStep::Exec: return "execve";
  }
  return "?";
}

void exec_child(const SpawnPlan& plan, int error_fd, int master_pidfd) noexcept {
  // Its own process group: a terminal's ^C reaches only the master, which then stops
  // the workers gracefully, and a final SIGKILL can reach the worker's descendants.
  if (::setpgid(0, 0) != 0) fail(error_fd, ChildStep::ProcessGroup);

  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &dfl, nullptr);  // fails harmlessly for the reserved real-time signals
  }
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(error_fd, ChildStep::Signals);

  if (!apply_fds(plan, error_fd, master_pidfd)) fail(error_fd, ChildStep::Descriptors);

  for (std::size_t i = 0; i < plan.rlimits.size(); ++i)
    if (::setrlimit(static_cast<__rlimit_resource>(plan.rlimits[i].first), &plan.rlimits[i].second) != 0)
      fail(error_fd, ChildStep::Rlimit, static_cast<int>(i));
  if (plan.set_umask) ::umask(plan.umask_value);

  if (plan.change_ids) {
    if (::setgroups(plan.groups.size(), plan.groups.data()) != 0) fail(error_fd, ChildStep::Groups);
    if (::setgid(plan.gid) != 0) fail(error_fd, ChildStep::Gid);
    if (::setuid(plan.uid) != 0) fail(error_fd, ChildStep::Uid);
  } else if (plan.change_gid_only) {
    if (::setgroups(1, &plan.gid) != 0) fail(error_fd, ChildStep::Groups);
    if (::setgid(plan.gid) != 0) fail(error_fd, ChildStep::Gid);
  }
  // After the id change, as the worker: it must be able to enter its own folder.
  if (!plan.cwd.empty() && ::chdir(plan.cwd.c_str()) != 0) fail(error_fd, ChildStep::Cwd);

  // Set after the id change, which clears it. If the master died before this point,
  // the signal will never come, so check the parent once more.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(error_fd, ChildStep::ParentDeath);
  if (plan.new_pid_namespace) {
    // The master is outside this namespace, so getppid() is 0; its pidfd turns readable
    // once it has exited.
    pollfd master{master_pidfd, POLLIN, 0};
    if (::poll(&master, 1, 0) != 0) {
      errno = ESRCH;
      fail(error_fd, ChildStep::ParentDeath);
    }
  } else if (::getppid() != plan.master_pid) {
    errno = ESRCH;
    fail(error_fd, ChildStep::ParentDeath);
  }

  if (plan.listen_pid_digits != nullptr)
    write_decimal(plan.listen_pid_digits, plan.listen_pid_width, static_cast<long>(::getpid()));

  ::execve(plan.executable.c_str(), plan.argv.data(), plan.envp.data());
  fail(error_fd, ChildStep::Exec);
}

}  // namespace forkpool::supervisor
