// SPDX-License-Identifier: Apache-2.0
#include "config/interpolate.hpp"

#include <cstdlib>

namespace forkpool::config {
namespace {

bool name_start(char c) { return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

}  // namespace

Expansion expand_environment(std::string_view text, const EnvLookup& lookup) {
  Expansion out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c != '$' || i + 1 == text.size()) {
      out.value += c;
      continue;
    }
    if (text[i + 1] == '$') {  // $$: a literal $
      out.value += '$';
      ++i;
      continue;
    }
    if (text[i + 1] != '{') {  // $HOME and the like are left for whoever reads them
      out.value += c;
      continue;
    }
    const std::size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      out.error = "\"${\" without a closing \"}\" (write $$ for a literal $)";
      return out;
    }
    const std::string_view inner = text.substr(i + 2, close - i - 2);
    const std::size_t dash = inner.find(":-");
    const std::string_view name = inner.substr(0, dash);
    if (name.empty() || !name_start(name.front())) {
      out.error = "\"${" + std::string(inner) + "}\" does not start with a variable name";
      return out;
    }
    for (char n : name) {
      if (!name_char(n)) {
        out.error = "\"${" + std::string(inner) + "}\": a variable name is letters, digits and _";
        return out;
      }
    }
    const std::optional<std::string> value = lookup(name);
    if (dash != std::string_view::npos) {
      // ${NAME:-default}: the default when NAME is unset or empty, as in the shell.
      out.value += value && !value->empty() ? *value : std::string(inner.substr(dash + 2));
    } else if (value) {
      out.value += *value;
    } else {
      out.error = "environment variable " + std::string(name) + " is not set (write ${" + std::string(name) +
                  ":-default} to give a default)";
      return out;
    }
    i = close;
  }
  return out;
}

Expansion expand_environment(std::string_view text) {
  return expand_environment(text, [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace forkpool::config
