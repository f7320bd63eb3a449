#pragma once
// Internal to config/: one [pools.NAME] table.

#include <filesystem>
#include <vector>

#include "config/toml_reader.hpp"

namespace forkpool::config::detail {

// Where the pool's listen entries stand, for cross-pool checks.
struct PoolSource {
  Location header;
  std::vector<Location> listen;
};

PoolConfig load_pool(const std::string& name, const toml::table& table,
                     const std::filesystem::path& base_dir, Sink& sink, PoolSource& source);

}  // namespace forkpool::config::detail
