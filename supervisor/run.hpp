// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>

#include "config/config.hpp"

namespace forkpool::supervisor {

// Sets up logging, starts the master loop and returns the process exit code.
int run(config::Config config);

// The new image of a binary upgrade (docs/upgrade.md): reads the state in
// `upgrade_state_fd`, and with it the configuration text the previous image ran (as if
// read from `file`), then takes the running master over instead of starting pools.
int run_upgraded(const std::filesystem::path& file, int upgrade_state_fd);

}  // namespace forkpool::supervisor
