// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to config/: one [pools.NAME] table.

#include <filesystem>
#include <vector>

#include "config/toml_reader.hpp"

namespace forkpool::config::detail {

// Where one parsed listen entry stands, and its index in the file's array.
struct ListenSource {
  Location at;
  std::size_t index;
};

// Where the pool's listen entries stand, for cross-pool checks.
struct PoolSource {
  std::string file;  // as named in diagnostics
  Location header;
  std::vector<ListenSource> listen;  // parallel to PoolConfig::listen
};

PoolConfig load_pool(const std::string& name, const toml::table& table,
                     const std::filesystem::path& base_dir, Sink& sink, PoolSource& source);

}  // namespace forkpool::config::detail
