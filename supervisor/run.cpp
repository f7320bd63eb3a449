#include "supervisor/run.hpp"

#include <pthread.h>

#include <csignal>
#include <cstdio>

#include "supervisor/observe/log.hpp"
#include "supervisor/master.hpp"
#include "supervisor/upgrade/state_reader.hpp"

namespace forkpool::supervisor {

namespace {

std::unique_ptr<Master> make_master(config::Config config, int upgrade_state_fd) {
  if (upgrade_state_fd < 0) return std::make_unique<Master>(std::move(config));
  base::OwnedFd state_fd(upgrade_state_fd);
  const nlohmann::json state = upgrade::read_state(state_fd.get());
  state_fd.reset();
  try {
    return std::make_unique<Master>(std::move(config), state);
  } catch (const nlohmann::json::exception& e) {
    throw upgrade::StateError(std::string("upgrade state: a field has the wrong type (") + e.what() + ")");
  }
}

}  // namespace

int run(config::Config config, int upgrade_state_fd) {
  try {
    log::setup({config.supervisor.log_level, config.supervisor.log_format, config.supervisor.log_file});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "forkpool: %s\n", e.what());
    return 1;
  }
  try {
    std::unique_ptr<Master> master = make_master(std::move(config), upgrade_state_fd);
    // main() blocked every signal; the master's handlers (libuv signal handles) are in
    // place now, so let them in, including any that arrived meanwhile. An empty mask, not
    // the one inherited: a parent that blocked TERM must not make the master deaf to it.
    // Workers start from an empty mask of their own (process/child_exec).
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    return master->run();
  } catch (const upgrade::StateError& e) {
    // The previous image is gone: nothing can be handed back. Preflight checks the format,
    // so this is a state this binary should have been able to read.
    log::critical("master.upgrade_state_invalid", "cannot take over from the previous master: {}", e.what());
    return 1;
  } catch (const std::exception& e) {
    log::critical("master.start_failed", "{}", e.what());
    return 1;
  }
}

}  // namespace forkpool::supervisor
