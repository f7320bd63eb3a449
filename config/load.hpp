// SPDX-License-Identifier: Apache-2.0
#pragma once
// Reading a config file into the plain structs of config.hpp.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include "config/config.hpp"
#include "config/diagnostics.hpp"

namespace forkpool::config {

// Config files larger than this are refused before parsing.
inline constexpr std::size_t kMaxConfigBytes = 1 << 20;

// At most this many files are read through `include`.
inline constexpr std::size_t kMaxIncludedFiles = 1000;

// Whether `include` in [supervisor] reads the files it names. Skip checks the patterns
// only (the fuzzer, which must not read whatever a pattern happens to match).
enum class Includes { Follow, Skip };

// The text of a config file: a regular file of at most kMaxConfigBytes, or ConfigError
// saying why not ("cannot open: No such file or directory", "is a directory, ...").
std::string read_config_file(const std::filesystem::path& file);

// Throws ConfigError listing every problem in the file and the files it includes (or the
// reason one cannot be read).
Config load_file(const std::filesystem::path& file);

// Parses `text` as if it were the contents of `file` (which need not exist): relative
// paths resolve against file's folder, and messages name `file` as given.
Config load_string(std::string_view text, const std::filesystem::path& file, Includes includes = Includes::Follow);

// Only supervisor.control_socket of `file`, resolved as load_file would (forkpoolctl):
// the rest of the file is not checked. Throws ConfigError when the file cannot be read,
// is not TOML, or the value is unusable.
std::filesystem::path load_control_socket(const std::filesystem::path& file);

// Where forkpool looks for its config when -c is not given, in order.
std::vector<std::filesystem::path> config_search_paths();

// The first of config_search_paths() that exists, or nullopt.
std::optional<std::filesystem::path> find_default_config();

// The file forkpool uses when -c is not given: ./forkpool.toml, then /etc/forkpool/forkpool.toml.
std::filesystem::path default_config_path();

}  // namespace forkpool::config
