// SPDX-License-Identifier: Apache-2.0
#include "supervisor/upgrade/upgrade.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "supervisor/upgrade/state_format.hpp"
#include "supervisor/upgrade/state_writer.hpp"

extern char** environ;

namespace forkpool::supervisor::upgrade {

std::string exec_new_image(const std::string& binary, const std::filesystem::path& config_file,
                           int state_fd, const std::vector<int>& fds) {
  std::vector<int> all = fds;
  all.push_back(state_fd);
  if (std::string why = set_inheritable(all, true); !why.empty()) {
    set_inheritable(all, false);
    return why;
  }
  std::string fd_text = std::to_string(state_fd);
  std::string config_text = config_file.string();
  std::string path = binary;
  std::string flag = kStateFdFlag;
  std::string c = "-c";
  char* argv[] = {path.data(), flag.data(), fd_text.data(), c.data(), config_text.data(), nullptr};

  sigset_t every, before;
  sigfillset(&every);
  ::pthread_sigmask(SIG_SETMASK, &every, &before);
  ::execve(path.c_str(), argv, environ);
  const int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  set_inheritable(all, false);
  return "execve " + binary + ": " + std::strerror(err);
}

}  // namespace forkpool::supervisor::upgrade
