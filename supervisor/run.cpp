#include "supervisor/run.hpp"

#include <cstdio>

#include "config/load.hpp"
#include "supervisor/log.hpp"
#include "supervisor/master.hpp"

namespace forkpool::supervisor {

int run(const std::filesystem::path& config_file) {
  config::Config config;
  try {
    config = config::load_file(config_file);
    log::setup({config.supervisor.log_level, config.supervisor.log_format, config.supervisor.log_file});
  } catch (const config::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
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
