// SPDX-License-Identifier: Apache-2.0
#pragma once
// The effective configuration as TOML: every key, defaults filled in, paths resolved.
// Loading the printed text and printing it again yields the same text.

#include <string>

#include "config/config.hpp"

namespace forkpool::config {

std::string to_toml(const Config& config);

// A TOML basic string literal, quoted and escaped.
std::string toml_quote(std::string_view s);

}  // namespace forkpool::config
