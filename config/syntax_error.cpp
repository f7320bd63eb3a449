// SPDX-License-Identifier: Apache-2.0
#include "config/syntax_error.hpp"

namespace forkpool::config::detail {

// A parse error of the TOML itself. TOML has no octal integers with a leading zero,
// which is how a mode or umask is usually written: say how to write it instead.
Diagnostic syntax_error(const toml::parse_error& e, const std::string& file, std::string_view text) {
  const auto line = static_cast<std::uint32_t>(e.source().begin.line);
  std::string message = "TOML syntax error: " + std::string(e.description());
  std::string key;
  auto column = static_cast<std::uint32_t>(e.source().begin.column);
  if (message.find("leading zero") != std::string::npos) {
    // The key of the line, to name it and to show the value quoted; the last [table]
    // header above it makes it a dotted key.
    std::string_view rest = text;
    std::string table;
    for (std::uint32_t l = 1; l < line && !rest.empty(); ++l) {
      const auto nl = rest.find('\n');
      std::string_view head = rest.substr(0, nl);
      while (!head.empty() && (head.front() == ' ' || head.front() == '\t')) head.remove_prefix(1);
      if (head.size() > 2 && head[0] == '[' && head[1] != '[' && head.find(']') != std::string_view::npos)
        table = std::string(head.substr(1, head.find(']') - 1));
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    }
    const std::string_view this_line = rest.substr(0, rest.find('\n'));
    const auto eq = this_line.find('=');
    if (eq != std::string_view::npos) {
      std::string_view k = this_line.substr(0, eq), v = this_line.substr(eq + 1);
      auto trim = [](std::string_view x) {
        while (!x.empty() && (x.front() == ' ' || x.front() == '\t')) x.remove_prefix(1);
        while (!x.empty() && (x.back() == ' ' || x.back() == '\t' || x.back() == '\r')) x.remove_suffix(1);
        return x;
      };
      k = trim(k);
      v = trim(v.substr(0, v.find('#')));
      key = table.empty() ? std::string(k) : table + "." + std::string(k);
      column = static_cast<std::uint32_t>(v.data() - this_line.data()) + 1;  // the value, not the digit after 0
      message += "; a file mode or umask is written as a string: " + std::string(k) + " = \"" + std::string(v) + "\"";
    } else {
      message += "; a file mode or umask is written as a string, such as \"022\"";
    }
  }
  return Diagnostic{file, line, column, key, std::move(message)};
}

}  // namespace forkpool::config::detail
