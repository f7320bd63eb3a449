// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to config/: a TOML syntax error as a located diagnostic, with a hint where the
// usual cause is known.

#include <toml++/toml.h>

#include <string>
#include <string_view>

#include "config/diagnostics.hpp"

namespace forkpool::config::detail {

// `text` is the file's text, for the hint: TOML has no octal integers with a leading
// zero, which is how a mode or umask is usually written (umask = 022), so that error
// names the key and shows the value quoted.
Diagnostic syntax_error(const toml::parse_error& e, const std::string& file, std::string_view text);

}  // namespace forkpool::config::detail
