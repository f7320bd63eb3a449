// SPDX-License-Identifier: Apache-2.0
// Only the control socket of a config file, for forkpoolctl: it must find a running
// master even when the file has errors elsewhere (a master runs on its last good
// configuration), or names programs and users this host or this user cannot see.

#include "config/load.hpp"

#include <toml++/toml.h>

#include <string>
#include <string_view>

#include "config/interpolate.hpp"

namespace forkpool::config {

namespace {

// A line that opens a table ([name] or [[name]]), and whether that table is [supervisor].
bool table_header(std::string_view line, bool& supervisor) {
  const auto start = line.find_first_not_of(" \t");
  if (start == std::string_view::npos || line[start] != '[') return false;
  std::string_view name = line.substr(start);
  const auto close = name.find(']');
  if (close == std::string_view::npos) return true;  // a broken header still ends a table
  name = name.substr(1, close - 1);
  const auto first = name.find_first_not_of(" \t");
  const auto last = name.find_last_not_of(" \t");
  if (first != std::string_view::npos) name = name.substr(first, last - first + 1);
  supervisor = name == "supervisor" || name == "\"supervisor\"" || name == "'supervisor'";
  return true;
}

// The file with every line blanked but those of its root and [supervisor] tables, so a
// syntax error in another table (a half-written pool) does not hide the control socket.
// Lines keep their numbers, so an error in what is left is placed where it is.
std::string root_and_supervisor(const std::string& text, bool& saw_supervisor) {
  saw_supervisor = false;
  std::string out;
  out.reserve(text.size());
  bool keep = true;  // the root table comes first
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + at, end - at);
    bool supervisor = false;
    if (table_header(line, supervisor)) keep = supervisor;
    saw_supervisor = saw_supervisor || supervisor;
    if (keep) out.append(line);
    out.push_back('\n');
    at = end + 1;
  }
  return out;
}

}  // namespace

std::filesystem::path load_control_socket(const std::filesystem::path& file) {
  const auto fail = [&](std::uint32_t line, std::uint32_t column, std::string key, std::string message) {
    throw ConfigError({Diagnostic{file.string(), line, column, std::move(key), std::move(message)}});
  };
  const std::string text = read_config_file(file);
  toml::table root;
  try {
    root = toml::parse(text, file.string());
  } catch (const toml::parse_error& e) {
    // Only control_socket matters here: an error outside the tables that can hold it
    // (the file being edited for a reload, say) must not keep forkpoolctl from the master.
    const auto syntax_error = [&] {
      fail(static_cast<std::uint32_t>(e.source().begin.line), static_cast<std::uint32_t>(e.source().begin.column),
           "", "TOML syntax error: " + std::string(e.description()));
    };
    bool saw_supervisor = false;
    try {
      root = toml::parse(root_and_supervisor(text, saw_supervisor), file.string());
    } catch (const toml::parse_error&) {
      syntax_error();
    }
    // The default socket only when the file has no supervisor table, or the scan saw it:
    // one it missed (a header written in an unusual way) must not lead to the default,
    // which may be another master's socket.
    if (!saw_supervisor && root["supervisor"]["control_socket"].node() == nullptr &&
        text.find("supervisor") != std::string::npos)
      syntax_error();
  }
  const std::filesystem::path base_dir = std::filesystem::absolute(file).lexically_normal().parent_path();
  const toml::node* node = root["supervisor"]["control_socket"].node();
  if (node == nullptr) return base_dir / "forkpool.sock";
  const auto at = node->source().begin;
  const auto* s = node->as_string();
  if (s == nullptr || s->get().empty())
    fail(static_cast<std::uint32_t>(at.line), static_cast<std::uint32_t>(at.column), "supervisor.control_socket",
         "expected a socket path");
  Expansion e = expand_environment(s->get());
  if (!e.error.empty())
    fail(static_cast<std::uint32_t>(at.line), static_cast<std::uint32_t>(at.column), "supervisor.control_socket",
         e.error);
  const std::filesystem::path p(e.value);
  return (p.is_absolute() ? p : base_dir / p).lexically_normal();
}

}  // namespace forkpool::config
