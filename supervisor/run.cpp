#include "supervisor/run.hpp"

#include <cstdio>

#include "supervisor/observe/log.hpp"
#include "supervisor/master.hpp"

namespace forkpool::supervisor {

int run(config::Config config) {
  try {
    log::setup({config.supervisor.log_level, config.supervisor.log_format, config.supervisor.log_file});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "forkpool: %s\n", e.what());
    return 1;
  }
  try {
    Master master(std::move(config));
    return master.run();
  } catch (const std::exception& e) {
    log::critical("master.start_failed", "{}", e.what());
    return 1;
  }
}

}  // namespace forkpool::supervisor
