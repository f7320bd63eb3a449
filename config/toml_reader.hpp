// SPDX-License-Identifier: Apache-2.0
#pragma once
// Internal to config/: typed reads of one TOML table that remember where every value
// came from, so each problem is reported as file:line:column with its dotted key.
// This and the load*.cpp files are the only code that sees toml++.

#include <toml++/toml.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/diagnostics.hpp"

namespace forkpool::config::detail {

struct Location {
  std::uint32_t line = 0;
  std::uint32_t column = 0;
};

Location location_of(const toml::source_region& r);

// Collects every diagnostic of one load: the main file's, then those of each included
// file (set_file), each file's in its own line order.
class Sink {
 public:
  explicit Sink(std::string file) : file_(std::move(file)) { files_.push_back(file_); }
  void error(Location at, std::string key, std::string message);
  // The same, for a place in another file of this load (an included one).
  void error_in(const std::string& file, Location at, std::string key, std::string message);
  // A diagnostic made elsewhere (an included file that cannot be read).
  void add(Diagnostic d);
  // Diagnostics from now on are about `file`.
  void set_file(std::string file);
  // An environment interpolation failed at `key`: later diagnostics of that key (and of
  // the arrays holding it, but not of their other elements) are dropped.
  void unexpanded(Location at, std::string key, std::string message);
  bool empty() const { return items_.empty(); }
  std::vector<Diagnostic> take();
  const std::string& file() const { return file_; }

 private:
  std::size_t order_of(const std::string& file);

  std::string file_;
  std::vector<std::string> files_;  // in the order they were read
  std::vector<Diagnostic> items_;
  std::set<std::string> unexpanded_;         // with everything under them
  std::set<std::string> unexpanded_arrays_;  // the arrays themselves only
};

class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, Sink& sink);

  // Each getter marks `key` as a known key. Absent: nullopt, no error. Present but
  // wrong: one diagnostic, then nullopt, so the caller keeps its default.
  std::optional<std::string> string(std::string_view key);
  // A file mode or umask: a string of octal digits. A TOML integer (0o22, 18) is refused
  // with a message that says to quote it.
  std::optional<std::string> mode_string(std::string_view key);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
  std::optional<bool> boolean(std::string_view key);
  std::optional<Duration> duration(std::string_view key);
  std::optional<std::uint64_t> size(std::string_view key);
  std::optional<std::vector<std::string>> string_array(std::string_view key);
  const toml::table* table(std::string_view key);
  const toml::node* node(std::string_view key);

  // A string that must be one of `names`; `parse` maps it to the value.
  template <typename E>
  std::optional<E> choice(std::string_view key, const std::function<std::optional<E>(std::string_view)>& parse,
                          std::initializer_list<std::string_view> names) {
    auto s = string(key);
    if (!s) return std::nullopt;
    if (auto v = parse(*s)) return v;
    error(key, "expected one of " + list(names) + ", got \"" + *s + "\"" + suggestion(*s, names));
    return std::nullopt;
  }

  // Reports a problem with the value of `key` (or the table itself when the key is absent).
  void error(std::string_view key, std::string message);
  void error_at(Location at, std::string_view key, std::string message);
  Location where(std::string_view key) const;
  Location where_table() const { return location_of(table_.source()); }
  bool has(std::string_view key) const { return table_.contains(key); }
  std::string path_of(std::string_view key) const;
  const std::string& base_dir_key() const { return path_; }

  // Reports every key of the table that no getter asked for, with the closest known key.
  void finish();

  static std::string list(std::initializer_list<std::string_view> names);
  static std::string suggestion(std::string_view word, std::initializer_list<std::string_view> names);

 private:
  const toml::node* typed(std::string_view key, toml::node_type type, const char* expected);

  const toml::table& table_;
  std::string path_;
  Sink& sink_;
  std::vector<std::string> known_;
};

std::string_view type_name(toml::node_type t);

}  // namespace forkpool::config::detail
