#pragma once

#include "config/config.hpp"

namespace forkpool::supervisor {

// Sets up logging, starts the master loop and returns the process exit code. With
// `upgrade_state_fd` >= 0 the master takes over from the image that exec'd this one
// (docs/upgrade.md) instead of starting its pools.
int run(config::Config config, int upgrade_state_fd = -1);

}  // namespace forkpool::supervisor
