#pragma once

#include "config/config.hpp"

namespace forkpool::supervisor {

// Sets up logging, starts the master loop and returns the process exit code.
int run(config::Config config);

}  // namespace forkpool::supervisor
