// SPDX-License-Identifier: Apache-2.0
#include "config/toml_reader.hpp"

#include <algorithm>
#include <cstdio>
#include <tuple>
#include <utility>

#include "config/names.hpp"
#include "config/suggest.hpp"
#include "config/units.hpp"

namespace forkpool::config::detail {

Location location_of(const toml::source_region& r) {
  return {static_cast<std::uint32_t>(r.begin.line), static_cast<std::uint32_t>(r.begin.column)};
}

void Sink::set_file(std::string file) {
  file_ = std::move(file);
  order_of(file_);
}

std::size_t Sink::order_of(const std::string& file) {
  for (std::size_t i = 0; i < files_.size(); ++i)
    if (files_[i] == file) return i;
  files_.push_back(file);
  return files_.size() - 1;
}

void Sink::add(Diagnostic d) {
  order_of(d.file);
  items_.push_back(std::move(d));
}

void Sink::error_in(const std::string& file, Location at, std::string key, std::string message) {
  const std::string current = std::exchange(file_, file);
  order_of(file);
  error(at, std::move(key), std::move(message));
  file_ = current;
}

void Sink::error(Location at, std::string key, std::string message) {
  // A value that could not even be expanded is reported once: what its key's checks
  // would say of the unexpanded text is noise.
  for (const auto& taken : unexpanded_)
    if (key == taken || (key.starts_with(taken) && (key[taken.size()] == '.' || key[taken.size()] == '[')))
      return;
  if (unexpanded_arrays_.contains(key)) return;
  items_.push_back(Diagnostic{file_, at.line, at.column, std::move(key), std::move(message)});
}

void Sink::unexpanded(Location at, std::string key, std::string message) {
  error(at, key, std::move(message));
  // "pools.web.command[1]" silences "pools.web.command" too, whose checks see the whole
  // array (argv[0] resolved, say), but not "pools.web.command[2]": that element's own
  // problems are still reported in the same run.
  for (auto bracket = key.find('['); bracket != std::string::npos; bracket = key.find('[', bracket + 1))
    unexpanded_arrays_.insert(key.substr(0, bracket));
  unexpanded_.insert(std::move(key));
}

std::vector<Diagnostic> Sink::take() {
  std::stable_sort(items_.begin(), items_.end(), [this](const Diagnostic& a, const Diagnostic& b) {
    const std::size_t fa = order_of(a.file), fb = order_of(b.file);
    return std::tie(fa, a.line, a.column) < std::tie(fb, b.line, b.column);
  });
  return std::move(items_);
}

std::string_view type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

TableReader::TableReader(const toml::table& table, std::string path, Sink& sink)
    : table_(table), path_(std::move(path)), sink_(sink) {}

std::string TableReader::path_of(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

Location TableReader::where(std::string_view key) const {
  if (const toml::node* n = table_.get(key)) return location_of(n->source());
  return where_table();
}

void TableReader::error(std::string_view key, std::string message) {
  sink_.error(where(key), path_of(key), std::move(message));
}

void TableReader::error_at(Location at, std::string_view key, std::string message) {
  sink_.error(at, path_of(key), std::move(message));
}

const toml::node* TableReader::node(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
  return table_.get(key);
}

const toml::node* TableReader::typed(std::string_view key, toml::node_type type, const char* expected) {
  const toml::node* n = node(key);
  if (n == nullptr) return nullptr;
  if (n->type() != type) {
    error(key, std::string("expected ") + expected + ", got " + std::string(type_name(n->type())));
    return nullptr;
  }
  return n;
}

std::optional<std::string> TableReader::string(std::string_view key) {
  const toml::node* n = typed(key, toml::node_type::string, "a string");
  if (n == nullptr) return std::nullopt;
  return n->as_string()->get();
}

std::optional<std::string> TableReader::mode_string(std::string_view key) {
  const toml::node* n = node(key);
  if (n == nullptr) return std::nullopt;
  if (const auto* i = n->as_integer()) {
    const auto v = i->get();
    char octal[32];
    std::snprintf(octal, sizeof octal, "%03llo", static_cast<unsigned long long>(v < 0 ? 0 : v));
    error(key, "expected an octal mode written as a string, such as " + std::string(key) + " = \"" +
                   (v >= 0 && v <= 0777 ? std::string(octal) : std::string("022")) +
                   "\"; a TOML integer is not a mode (quote it)");
    return std::nullopt;
  }
  return string(key);
}

std::optional<std::int64_t> TableReader::integer(std::string_view key, std::int64_t min, std::int64_t max) {
  const toml::node* n = typed(key, toml::node_type::integer, "an integer");
  if (n == nullptr) return std::nullopt;
  const std::int64_t v = n->as_integer()->get();
  if (v < min || v > max) {
    error(key, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                   ", got " + std::to_string(v));
    return std::nullopt;
  }
  return v;
}

std::optional<bool> TableReader::boolean(std::string_view key) {
  const toml::node* n = typed(key, toml::node_type::boolean, "a boolean (true or false)");
  if (n == nullptr) return std::nullopt;
  return n->as_boolean()->get();
}

std::optional<Duration> TableReader::duration(std::string_view key) {
  const toml::node* n = node(key);
  if (n == nullptr) return std::nullopt;
  // A bare 0 is unambiguous; any other bare number would leave the unit to guesswork.
  if (auto i = n->as_integer(); i != nullptr && i->get() == 0) return Duration{0};
  if (n->type() != toml::node_type::string) {
    error(key, "expected a duration string with a unit such as \"30s\", got " +
                   std::string(type_name(n->type())));
    return std::nullopt;
  }
  auto parsed = parse_duration(n->as_string()->get());
  if (!parsed) error(key, "expected " + parsed.error + ", got \"" + n->as_string()->get() + "\"");
  return parsed.value;
}

std::optional<std::uint64_t> TableReader::size(std::string_view key) {
  const toml::node* n = node(key);
  if (n == nullptr) return std::nullopt;
  if (auto i = n->as_integer(); i != nullptr && i->get() == 0) return 0;
  if (n->type() != toml::node_type::string) {
    error(key, "expected a size string with a unit such as \"512MiB\", got " +
                   std::string(type_name(n->type())));
    return std::nullopt;
  }
  auto parsed = parse_size(n->as_string()->get());
  if (!parsed) error(key, "expected " + parsed.error + ", got \"" + n->as_string()->get() + "\"");
  return parsed.value;
}

std::optional<std::vector<std::string>> TableReader::string_array(std::string_view key) {
  const toml::node* n = typed(key, toml::node_type::array, "an array of strings");
  if (n == nullptr) return std::nullopt;
  std::vector<std::string> out;
  bool ok = true;
  std::size_t index = 0;
  for (const toml::node& item : *n->as_array()) {
    if (const auto* s = item.as_string()) {
      out.push_back(s->get());
    } else {
      sink_.error(location_of(item.source()), path_of(key) + "[" + std::to_string(index) + "]",
                  "expected a string, got " + std::string(type_name(item.type())));
      ok = false;
    }
    ++index;
  }
  if (!ok) return std::nullopt;
  return out;
}

const toml::table* TableReader::table(std::string_view key) {
  const toml::node* n = typed(key, toml::node_type::table, "a table");
  return n == nullptr ? nullptr : n->as_table();
}

void TableReader::finish() {
  for (auto&& [k, v] : table_) {
    if (std::find(known_.begin(), known_.end(), k.str()) != known_.end()) continue;
    std::string message = "unknown key";
    // A key of another table is more likely misplaced than misspelt.
    if (auto home = table_of_key(k.str()))
      message += " here; it belongs in " + std::string(*home == "[supervisor]" ? "the " : "a pool's ") +
                 std::string(*home) + " table";
    else if (auto best = closest_match(k.str(), known_))
      message += "; did you mean `" + *best + "`?";
    sink_.error(location_of(k.source()), path_of(k.str()), message);
  }
}

std::string TableReader::list(std::initializer_list<std::string_view> names) {
  std::string out;
  for (auto n : names) {
    if (!out.empty()) out += ", ";
    out += "\"" + std::string(n) + "\"";
  }
  return out;
}

std::string TableReader::suggestion(std::string_view word, std::initializer_list<std::string_view> names) {
  std::vector<std::string> candidates(names.begin(), names.end());
  if (auto best = closest_match(word, candidates)) return "; did you mean \"" + *best + "\"?";
  return {};
}

}  // namespace forkpool::config::detail
