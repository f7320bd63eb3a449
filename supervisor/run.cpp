#include "supervisor/run.hpp"

#include <pthread.h>

#include <csignal>
#include <cstdio>

#include "supervisor/observe/access_log.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/master.hpp"

namespace forkpool::supervisor {

int run(config::Config config) {
  try {
    log::setup({config.supervisor.log_level, config.supervisor.log_format, config.supervisor.log_file});
    access_log::setup({config.supervisor.access_log, config.supervisor.access_log_format});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "forkpool: %s\n", e.what());
    return 1;
  }
  try {
    Master master(std::move(config));
    // main() blocked every signal; the master's handlers (libuv signal handles) are in
    // place now, so let them in, including any that arrived meanwhile. An empty mask, not
    // the one inherited: a parent that blocked TERM must not make the master deaf to it.
    // Workers start from an empty mask of their own (process/child_exec).
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    return master.run();
  } catch (const std::exception& e) {
    log::critical("master.start_failed", "{}", e.what());
    return 1;
  }
}

}  // namespace forkpool::supervisor
