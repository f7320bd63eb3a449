#pragma once

#include <filesystem>

namespace forkpool::supervisor {

// Loads the config, starts the master loop and returns the process exit code.
int run(const std::filesystem::path& config_file);

}  // namespace forkpool::supervisor
