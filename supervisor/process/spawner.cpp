#include "supervisor/process/spawner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "supervisor/process/child_exec.hpp"

namespace forkpool::supervisor {

std::string SpawnResult::message() const { return what + ": " + std::strerror(error); }

SpawnResult spawn(const SpawnPlan& plan) {
  SpawnResult result;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    result.error = errno;
    result.what = "pipe2";
    return result;
  }
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    exec_child(plan, pipefd[1]);
  }
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(pipefd[1]);
  if (pid < 0) {
    ::close(pipefd[0]);
    result.error = fork_errno;
    result.what = "fork";
    return result;
  }
  // The pipe closes at exec (success) or carries a ChildFailure.
  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(pipefd[0], &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
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
    if (step == ChildStep::Exec) result.what += " " + plan.executable;
  } else {
    result.error = EIO;
    result.what = "the child's report";
  }
  return result;
}

}  // namespace forkpool::supervisor
