#pragma once
// Reading a config file into the plain structs of config.hpp.

#include <filesystem>
#include <string_view>

#include "config/config.hpp"
#include "config/diagnostics.hpp"

namespace forkpool::config {

// Config files larger than this are refused before parsing.
inline constexpr std::size_t kMaxConfigBytes = 1 << 20;

// Throws ConfigError listing every problem in the file (or the reason it cannot be read).
Config load_file(const std::filesystem::path& file);

// Parses `text` as if it were the contents of `file` (which need not exist): relative
// paths resolve against file's folder, and messages name `file` as given.
Config load_string(std::string_view text, const std::filesystem::path& file);

// The file forkpool uses when -c is not given: ./forkpool.toml, then /etc/forkpool/forkpool.toml.
std::filesystem::path default_config_path();

}  // namespace forkpool::config
