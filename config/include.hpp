// SPDX-License-Identifier: Apache-2.0
#pragma once
// `include = ["conf.d/*.toml"]` in [supervisor]: which files a pattern names.

#include <filesystem>
#include <string>
#include <vector>

namespace forkpool::config {

struct IncludeMatch {
  std::vector<std::filesystem::path> files;  // sorted, absolute
  std::string error;                         // empty when the pattern could be expanded
};

// Expands one pattern with glob(3), relative to `base_dir` (the including file's folder).
// Matches come sorted, so pools start in the same order on every host. A pattern with
// wildcards may match nothing (an empty conf.d is normal); a plain path must exist.
IncludeMatch expand_include(const std::string& pattern, const std::filesystem::path& base_dir);

}  // namespace forkpool::config
