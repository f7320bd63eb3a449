// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/spawner.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "config/names.hpp"
#include "supervisor/process/child_exec.hpp"

namespace forkpool::supervisor {

std::string SpawnResult::message() const { return what + ": " + std::strerror(error); }

namespace {

// A pidfd of the master itself, for children in a PID namespace of their own to check
// that the master is still there (see child_exec). Opened once; closed at exec.
int master_pidfd() {
  static const int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  return fd;
}

// isolate = "pid": the next fork() creates PID 1 of a new namespace. The master's own
// namespace is restored right after, so that only this one child is in it.
class PidNamespaceForChild {
 public:
  PidNamespaceForChild() = default;

  // 0, or the errno of the step named by `what`.
  int enter(const char*& what) {
    own_ = ::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (own_ < 0) {
      what = "open /proc/self/ns/pid";
      return errno;
    }
    if (master_pidfd() < 0) {
      what = "pidfd_open";
      return errno;
    }
    if (::unshare(CLONE_NEWPID) != 0) {
      what = "unshare(CLONE_NEWPID)";
      return errno;
    }
    entered_ = true;
    return 0;
  }

  ~PidNamespaceForChild() {
    if (entered_ && ::setns(own_, CLONE_NEWPID) != 0) {
      // Later workers would become processes of this worker's namespace: nothing the
      // master could serve correctly from here.
      const char msg[] = "forkpool: setns(CLONE_NEWPID) back to the master's namespace failed\n";
      [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
      std::abort();
    }
    if (own_ >= 0) ::close(own_);
  }

  PidNamespaceForChild(const PidNamespaceForChild&) = delete;
  PidNamespaceForChild& operator=(const PidNamespaceForChild&) = delete;

 private:
  int own_ = -1;
  bool entered_ = false;
};

}  // namespace

StartedChild::StartedChild(StartedChild&& o) noexcept
    : pid(std::exchange(o.pid, -1)),
      report_fd(std::exchange(o.report_fd, -1)),
      failed(std::move(o.failed)),
      rlimits(std::move(o.rlimits)),
      cwd(std::move(o.cwd)) {}

StartedChild& StartedChild::operator=(StartedChild&& o) noexcept {
  if (this != &o) {
    abandon();
    pid = std::exchange(o.pid, -1);
    report_fd = std::exchange(o.report_fd, -1);
    failed = std::move(o.failed);
    rlimits = std::move(o.rlimits);
    cwd = std::move(o.cwd);
  }
  return *this;
}

StartedChild::~StartedChild() { abandon(); }

void StartedChild::abandon() noexcept {
  if (report_fd >= 0) ::close(std::exchange(report_fd, -1));
  // Never finished (its owner gave up on it): nobody would ever account for it.
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
  }
}

StartedChild spawn_begin(const SpawnPlan& plan) {
  StartedChild child;
  SpawnResult& result = child.failed;
  std::optional<PidNamespaceForChild> pid_namespace;
  if (plan.new_pid_namespace) {
    const char* what = "";
    if (const int error = pid_namespace.emplace().enter(what); error != 0) {
      pid_namespace.reset();
      result.error = error;
      result.what = what;
      return child;
    }
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    result.error = errno;
    result.what = "pipe2";
    return child;
  }
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    exec_child(plan, pipefd[1], plan.new_pid_namespace ? master_pidfd() : -1);
  }
  const int fork_errno = errno;
  pid_namespace.reset();
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(pipefd[1]);
  if (pid < 0) {
    ::close(pipefd[0]);
    result.error = fork_errno;
    result.what = "fork";
    return child;
  }
  child.pid = pid;
  child.report_fd = pipefd[0];
  child.failed.what = plan.executable;  // named by an exec failure
  child.rlimits = plan.rlimits;
  child.cwd = plan.cwd;
  return child;
}

namespace {

// "nofile 999999999", "core infinity", "nofile 1024:4096" (soft:hard when they differ).
std::string describe_rlimit(const std::pair<int, rlimit>& r) {
  std::string name = "resource " + std::to_string(r.first);
  for (const auto& n : config::rlimit_names())
    if (n.resource == r.first) name = std::string(n.name);
  const auto value = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("infinity") : std::to_string(v); };
  const rlimit& l = r.second;
  return name + " " + (l.rlim_cur == l.rlim_max ? value(l.rlim_cur) : value(l.rlim_cur) + ":" + value(l.rlim_max));
}

}  // namespace

SpawnResult spawn_finish(StartedChild& child) {
  SpawnResult result;
  if (child.pid <= 0) return std::move(child.failed);
  const std::string executable = std::move(child.failed.what);
  // The pipe closes at exec (success) or carries a ChildFailure.
  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(child.report_fd, &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  ::close(std::exchange(child.report_fd, -1));
  const pid_t pid = std::exchange(child.pid, -1);
  if (n == 0) {
    result.pid = pid;
    return result;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n == static_cast<ssize_t>(sizeof failure)) {
    result.error = failure.error;
    const auto step = static_cast<ChildStep>(failure.step);
    result.what = to_string(step);
    if (step == ChildStep::Exec) result.what += " " + executable;
    if (step == ChildStep::Cwd) result.what += " " + child.cwd;
    if (step == ChildStep::Rlimit && failure.detail >= 0 &&
        static_cast<std::size_t>(failure.detail) < child.rlimits.size())
      result.what += " " + describe_rlimit(child.rlimits[static_cast<std::size_t>(failure.detail)]);
  } else {
    result.error = EIO;
    result.what = "the child's report";
  }
  return result;
}

SpawnResult spawn(const SpawnPlan& plan) {
  StartedChild child = spawn_begin(plan);
  return spawn_finish(child);
}

}  // namespace forkpool::supervisor
