// SPDX-License-Identifier: Apache-2.0
#pragma once
// Environment interpolation in string values (SPEC section 2): ${NAME} and
// ${NAME:-default} from the master's environment, $$ for a literal $. A $ followed by
// anything else is kept as written, so "$HOME" in an argument for `sh -c` still reaches
// the shell untouched.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace forkpool::config {

using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

struct Expansion {
  std::string value;
  std::string error;  // empty when the text expanded
};

// Pure: `lookup` answers for the environment (the default reads getenv).
Expansion expand_environment(std::string_view text, const EnvLookup& lookup);
Expansion expand_environment(std::string_view text);

}  // namespace forkpool::config
