// SPDX-License-Identifier: Apache-2.0
#include "config/load.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <tuple>

#include "config/include.hpp"
#include "config/interpolate.hpp"
#include "config/listen_address.hpp"
#include "config/load_pool.hpp"
#include "config/syntax_error.hpp"
#include "config/names.hpp"
#include "config/toml_reader.hpp"
#include "config/validate.hpp"

namespace forkpool::config {
namespace {

using detail::Location;
using detail::Sink;
using detail::TableReader;

[[noreturn]] void fail_whole_file(const std::filesystem::path& file, std::string message) {
  throw ConfigError({Diagnostic{file.string(), 0, 0, "", std::move(message)}});
}

SupervisorConfig load_supervisor(TableReader& root, const std::filesystem::path& base_dir, Sink& sink) {
  SupervisorConfig s;
  s.control_socket = base_dir / "forkpool.sock";
  const toml::table* t = root.table("supervisor");
  if (t == nullptr) {
    if (s.control_socket.native().size() >= sizeof(sockaddr_un::sun_path))
      sink.error({1, 1}, "supervisor.control_socket",
                 "the default path " + s.control_socket.string() +
                     " is longer than a Unix socket path may be; set a shorter control_socket");
    return s;
  }
  TableReader r(*t, "supervisor", sink);
  if (auto v = r.string("control_socket")) {
    if (v->empty()) r.error("control_socket", "expected a socket path, got \"\"");
    else s.control_socket = (std::filesystem::path(*v).is_absolute() ? std::filesystem::path(*v)
                                                                      : base_dir / *v).lexically_normal();
    // The config file's own folder exists (the default socket is there); another may not.
    if (auto problem = check_directory(s.control_socket.parent_path());
        problem && !v->empty() && s.control_socket.parent_path() != base_dir)
      r.error("control_socket", "the folder of the control socket: " + *problem);
  }
  if (s.control_socket.native().size() >= sizeof(sockaddr_un::sun_path))
    r.error("control_socket", "the resolved path " + s.control_socket.string() + " is longer than a Unix socket path may be (" +
                                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
  const bool mode_written = r.has("control_mode");
  if (auto v = r.mode_string("control_mode")) {
    auto mode = parse_octal_mode(*v);
    if (!mode) r.error("control_mode", "expected " + mode.error + ", got \"" + *v + "\"");
    else s.control_mode = *mode.value;
  }
  if (auto v = r.string("control_group"); v && !v->empty()) {
    if (auto problem = check_group_exists(*v)) r.error("control_group", *problem);
    s.control_group = *v;
    // SPEC: naming a group lets it connect, so the default mode opens to the group.
    if (!mode_written) s.control_mode = 0660;
  }
  if (auto v = r.string("log_level")) {
    if (is_log_level(*v)) s.log_level = *v;
    else
      r.error("log_level", "expected one of " +
                               TableReader::list({"trace", "debug", "info", "warn", "error", "critical", "off"}) +
                               ", got \"" + *v + "\"" +
                               TableReader::suggestion(*v, {"trace", "debug", "info", "warn", "error", "critical", "off"}));
  }
  if (auto v = r.choice<LogFormat>("log_format", log_format_from_string, {"text", "json"})) s.log_format = *v;
  if (auto v = r.string("log_file"); v && !v->empty()) {
    s.log_file = (std::filesystem::path(*v).is_absolute() ? std::filesystem::path(*v) : base_dir / *v)
                     .lexically_normal();
    if (auto problem = check_directory(s.log_file.parent_path()))
      r.error("log_file", "the folder of the log file: " + *problem);
  }
  if (auto v = r.string("access_log"); v && !v->empty()) {
    s.access_log = (std::filesystem::path(*v).is_absolute() ? std::filesystem::path(*v) : base_dir / *v)
                       .lexically_normal();
    if (auto problem = check_directory(s.access_log.parent_path()))
      r.error("access_log", "the folder of the access log: " + *problem);
  }
  if (auto v = r.choice<LogFormat>("access_log_format", log_format_from_string, {"text", "json"}))
    s.access_log_format = *v;
  if (auto v = r.duration("shutdown_timeout")) s.shutdown_timeout = *v;
  if (auto v = r.string_array("include")) s.include = std::move(*v);
  if (auto v = r.string("metrics_listen"); v && !v->empty()) {
    auto addr = parse_host_port(*v);
    if (!addr) r.error("metrics_listen", "expected " + addr.error);
    else s.metrics_listen = addr.value->text;
  }
  const auto place = [&](std::string_view key) {
    const Location at = r.where(key);
    return sink.file() + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": supervisor." +
           std::string(key);
  };
  if (r.has("control_socket")) s.control_socket_place = place("control_socket");
  if (r.has("metrics_listen")) s.metrics_listen_place = place("metrics_listen");
  r.finish();
  return s;
}

// The same bound address in two places would make the second bind fail at start-up;
// port 0 is exempt because every such listener gets a port of its own.
void check_listen_conflicts(const Config& config, const std::vector<detail::PoolSource>& sources,
                            Sink& sink) {
  std::map<std::string, std::string> seen;  // address text -> "pools.NAME.listen[i]"
  for (std::size_t p = 0; p < config.pools.size(); ++p) {
    const PoolConfig& pool = config.pools[p];
    for (std::size_t i = 0; i < pool.listen.size(); ++i) {
      const ListenAddress& a = pool.listen[i];
      if (a.kind == ListenAddress::Kind::Tcp && a.port == 0) continue;
      const detail::ListenSource& where = sources[p].listen[i];
      const std::string key = "pools." + pool.name + ".listen[" + std::to_string(where.index) + "]";
      auto [it, inserted] = seen.emplace(a.text, key);
      if (!inserted) sink.error_in(sources[p].file, where.at, key, "\"" + a.text + "\" is already used by " + it->second);
      if (a.kind == ListenAddress::Kind::Unix && a.path == config.supervisor.control_socket)
        sink.error_in(sources[p].file, where.at, key, "is the same path as supervisor.control_socket");
    }
  }
}

// Each listen entry's place, for errors found only when it is bound.
void note_listen_places(Config& config, const std::vector<detail::PoolSource>& sources) {
  for (std::size_t p = 0; p < config.pools.size() && p < sources.size(); ++p) {
    PoolConfig& pool = config.pools[p];
    for (std::size_t i = 0; i < pool.listen.size() && i < sources[p].listen.size(); ++i) {
      const detail::ListenSource& where = sources[p].listen[i];
      pool.listen[i].place = sources[p].file + ":" + std::to_string(where.at.line) + ":" +
                             std::to_string(where.at.column) + ": pools." + pool.name + ".listen[" +
                             std::to_string(where.index) + "]";
    }
  }
}

// toml++ keeps table keys sorted by name; status output and --check follow the file instead.
void sort_in_file_order(std::vector<PoolConfig>& pools, std::vector<detail::PoolSource>& sources) {
  std::vector<std::size_t> order(pools.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::tie(sources[a].header.line, sources[a].header.column) <
           std::tie(sources[b].header.line, sources[b].header.column);
  });
  std::vector<PoolConfig> p;
  std::vector<detail::PoolSource> s;
  for (std::size_t i : order) {
    p.push_back(std::move(pools[i]));
    s.push_back(std::move(sources[i]));
  }
  pools = std::move(p);
  sources = std::move(s);
}

// The pools of one file, appended in that file's order. `places` remembers where each
// pool name was defined first ("file:line:col"), across the main file and its includes.
// Returns how many [pools.*] entries the file had, valid or not.
std::size_t load_pools(TableReader& root, const std::string& file, const std::filesystem::path& abs_file,
                       Sink& sink, std::map<std::string, std::string>& places, std::vector<PoolConfig>& pools,
                       std::vector<detail::PoolSource>& sources) {
  const toml::table* table = root.table("pools");
  if (table == nullptr) return 0;
  const std::filesystem::path base_dir = abs_file.parent_path();
  std::vector<PoolConfig> mine;
  std::vector<detail::PoolSource> my_sources;
  for (auto&& [name, node] : *table) {
    const std::string key = "pools." + std::string(name.str());
    const Location at = detail::location_of(name.source());
    if (!is_pool_name(name.str())) {
      sink.error(at, key, "a pool name is 1 to 64 letters, digits, '_', '-' or '.'");
      continue;
    }
    const toml::table* t = node.as_table();
    if (t == nullptr) {
      // [pools] then `workers = 2`: a pool key written above the pool's own header.
      const bool pool_key = table_of_key(name.str()) == "[pools.NAME]";
      sink.error(detail::location_of(node.source()), key,
                 "expected a table such as [pools." + std::string(name.str()) + "], got " +
                     std::string(detail::type_name(node.type())) +
                     (pool_key ? "; `" + std::string(name.str()) + "` is a pool key: write it under [pools.NAME]"
                               : std::string()));
      continue;
    }
    const std::string place = file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
    if (auto [it, fresh] = places.emplace(std::string(name.str()), place); !fresh) {
      sink.error(at, key, "pool \"" + std::string(name.str()) + "\" is defined twice: here and at " + it->second);
      continue;
    }
    detail::PoolSource source;
    source.file = file;
    mine.push_back(detail::load_pool(std::string(name.str()), *t, base_dir, sink, source));
    mine.back().file = abs_file;
    my_sources.push_back(std::move(source));
  }
  sort_in_file_order(mine, my_sources);
  for (auto& p : mine) pools.push_back(std::move(p));
  for (auto& s : my_sources) sources.push_back(std::move(s));
  return table->size();
}

// Expands ${NAME} in every string value of the tree (SPEC section 2) before anything is
// read from it, so every key, durations and paths included, sees the result; an error
// names the value's place and dotted key. Iterative, and the dotted key is only spelt
// out for an error: a file may nest tables thousands of levels deep.
void interpolate(toml::table& root, Sink& sink) {
  struct Item {
    toml::node* node;
    std::size_t parent;  // index into `items`; npos for a child of the root table
    std::string piece;   // "name" or "[3]"
  };
  constexpr std::size_t kRoot = std::string::npos;
  std::vector<Item> items;
  std::vector<std::size_t> todo;
  auto push_children = [&](toml::node& node, std::size_t self) {
    if (auto* t = node.as_table()) {
      for (auto&& [k, v] : *t) {
        items.push_back({&v, self, std::string(k.str())});
        todo.push_back(items.size() - 1);
      }
    } else if (auto* a = node.as_array()) {
      for (std::size_t i = 0; i < a->size(); ++i) {
        items.push_back({a->get(i), self, "[" + std::to_string(i) + "]"});
        todo.push_back(items.size() - 1);
      }
    }
  };
  auto key_of = [&](std::size_t i) {
    std::vector<const std::string*> pieces;
    for (std::size_t at = i; at != kRoot; at = items[at].parent) pieces.push_back(&items[at].piece);
    std::string key;
    for (auto it = pieces.rbegin(); it != pieces.rend(); ++it)
      key += (key.empty() || (*it)->front() == '[' ? "" : ".") + **it;
    return key;
  };
  push_children(root, kRoot);
  while (!todo.empty()) {
    const std::size_t i = todo.back();
    todo.pop_back();
    toml::node& node = *items[i].node;
    if (auto* s = node.as_string()) {
      Expansion e = expand_environment(s->get());
      if (!e.error.empty()) sink.unexpanded(detail::location_of(node.source()), key_of(i), e.error);
      else s->get() = std::move(e.value);
    } else {
      push_children(node, i);
    }
  }
}


// How an included file is named in messages: relative to the current folder when it is
// inside it, as the main file usually is.
std::string display_name(const std::filesystem::path& abs) {
  std::error_code ec;
  const auto cwd = std::filesystem::current_path(ec);
  if (!ec) {
    const auto rel = abs.lexically_relative(cwd);
    if (!rel.empty() && *rel.begin() != "..") return rel.string();
  }
  return abs.string();
}

// Reads one included file's pools into `config`; every problem goes to `sink`, located
// in that file.
void load_included(const std::filesystem::path& abs, Sink& sink, std::map<std::string, std::string>& places,
                   Config& config, std::vector<detail::PoolSource>& sources) {
  const std::string name = display_name(abs);
  sink.set_file(name);
  std::string text;
  try {
    text = read_config_file(abs);
  } catch (const ConfigError& e) {
    for (Diagnostic d : e.diagnostics()) {
      d.file = name;
      sink.add(std::move(d));
    }
    return;
  }
  toml::table table;
  try {
    table = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    sink.add(detail::syntax_error(e, name, text));
    return;
  }
  interpolate(table, sink);
  TableReader root(table, "", sink);
  if (root.has("supervisor")) {
    root.node("supervisor");
    root.error("supervisor", "an included file holds only [pools.NAME] tables; [supervisor] belongs in " +
                                 config.file.string());
  }
  load_pools(root, name, abs, sink, places, config.pools, sources);
  root.finish();
}

}  // namespace

std::string read_config_file(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) fail_whole_file(file, std::string("cannot open: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_whole_file(file, std::string("cannot stat: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail_whole_file(file, "is a directory, expected a TOML file");
  if (!S_ISREG(st.st_mode)) fail_whole_file(file, "is not a regular file");
  if (static_cast<std::size_t>(st.st_size) > kMaxConfigBytes)
    fail_whole_file(file, "is " + std::to_string(st.st_size) + " bytes; a config file may be at most " +
                              std::to_string(kMaxConfigBytes) + " bytes");
  std::string text;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_whole_file(file, std::string("cannot read: ") + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigBytes) fail_whole_file(file, "grew past the size limit while being read");
  }
  return text;
}

Config load_string(std::string_view text, const std::filesystem::path& file, Includes includes) {
  Config config;
  config.file = std::filesystem::absolute(file).lexically_normal();
  const std::filesystem::path base_dir = config.file.parent_path();

  toml::table root_table;
  try {
    root_table = toml::parse(text, file.string());
  } catch (const toml::parse_error& e) {
    throw ConfigError({detail::syntax_error(e, file.string(), text)});
  }

  Sink sink(file.string());
  interpolate(root_table, sink);
  TableReader root(root_table, "", sink);
  config.supervisor = load_supervisor(root, base_dir, sink);

  std::map<std::string, std::string> places;
  std::vector<detail::PoolSource> sources;
  std::size_t entries = load_pools(root, file.string(), config.file, sink, places, config.pools, sources);
  root.finish();

  // [supervisor] include: each pattern relative to this file, matches sorted, each file once.
  std::vector<std::filesystem::path> files;
  const toml::node* include_node = nullptr;
  if (const toml::table* sup = root_table["supervisor"].as_table()) include_node = sup->get("include");
  const auto include_at = include_node ? detail::location_of(include_node->source()) : detail::Location{1, 1};
  for (std::size_t i = 0; i < config.supervisor.include.size(); ++i) {
    const std::string& pattern = config.supervisor.include[i];
    const toml::node* item = include_node && include_node->as_array() ? include_node->as_array()->get(i) : nullptr;
    const auto at = item ? detail::location_of(item->source()) : include_at;
    const std::string key = "supervisor.include[" + std::to_string(i) + "]";
    if (includes == Includes::Skip) continue;
    IncludeMatch m = expand_include(pattern, base_dir);
    if (!m.error.empty()) sink.error(at, key, m.error);
    for (auto& f : m.files) {
      if (f == config.file || std::find(files.begin(), files.end(), f) != files.end()) continue;
      if (files.size() == kMaxIncludedFiles) {
        sink.error(at, key, "more than " + std::to_string(kMaxIncludedFiles) + " files to include");
        break;
      }
      files.push_back(std::move(f));
    }
  }
  for (const auto& f : files) {
    const std::size_t before = config.pools.size();
    load_included(f, sink, places, config, sources);
    entries += config.pools.size() - before;
  }
  sink.set_file(file.string());
  config.included = std::move(files);

  const bool pools_not_a_table = root.has("pools") && !root_table["pools"].is_table();  // reported already
  if (entries == 0 && !pools_not_a_table && !(includes == Includes::Skip && !config.supervisor.include.empty())) {
    const char* message = config.supervisor.include.empty()
                              ? "no pools defined; add at least one [pools.NAME] table with a command"
                              : "no pools defined; add at least one [pools.NAME] table with a command, here or in "
                                "an included file";
    if (root.has("pools")) root.error("pools", message);
    else sink.error({1, 1}, "pools", message);
  }
  check_listen_conflicts(config, sources, sink);
  note_listen_places(config, sources);

  if (!sink.empty()) throw ConfigError(sink.take());
  return config;
}

Config load_file(const std::filesystem::path& file) { return load_string(read_config_file(file), file); }

std::vector<std::filesystem::path> config_search_paths() {
  return {"forkpool.toml", "/etc/forkpool/forkpool.toml"};
}

std::optional<std::filesystem::path> find_default_config() {
  for (const auto& p : config_search_paths())
    if (::access(p.c_str(), F_OK) == 0) return p;
  return std::nullopt;
}

std::filesystem::path default_config_path() {
  // Neither exists: name the first so the error says where we looked first.
  return find_default_config().value_or(config_search_paths().front());
}

}  // namespace forkpool::config
