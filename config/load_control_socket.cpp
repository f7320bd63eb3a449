// SPDX-License-Identifier: Apache-2.0
// Only the control socket of a config file, for forkpoolctl: it must find a running
// master even when the file has errors elsewhere (a master runs on its last good
// configuration), or names programs and users this host or this user cannot see.

#include "config/load.hpp"

#include <toml++/toml.h>

#include "config/interpolate.hpp"

namespace forkpool::config {

std::filesystem::path load_control_socket(const std::filesystem::path& file) {
  const auto fail = [&](std::uint32_t line, std::uint32_t column, std::string key, std::string message) {
    throw ConfigError({Diagnostic{file.string(), line, column, std::move(key), std::move(message)}});
  };
  const std::string text = read_config_file(file);
  toml::table root;
  try {
    root = toml::parse(text, file.string());
  } catch (const toml::parse_error& e) {
    fail(static_cast<std::uint32_t>(e.source().begin.line), static_cast<std::uint32_t>(e.source().begin.column), "",
         "TOML syntax error: " + std::string(e.description()));
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
