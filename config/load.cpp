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

#include "config/interpolate.hpp"
#include "config/listen_address.hpp"
#include "config/load_pool.hpp"
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
  }
  if (s.control_socket.native().size() >= sizeof(sockaddr_un::sun_path))
    r.error("control_socket", "the resolved path " + s.control_socket.string() + " is longer than a Unix socket path may be (" +
                                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
  const bool mode_written = r.has("control_mode");
  if (auto v = r.string("control_mode")) {
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
  if (auto v = r.string("metrics_listen"); v && !v->empty()) {
    auto addr = parse_host_port(*v);
    if (!addr) r.error("metrics_listen", "expected " + addr.error);
    else s.metrics_listen = addr.value->text;
  }
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
      if (!inserted) sink.error(where.at, key, "\"" + a.text + "\" is already used by " + it->second);
      if (a.kind == ListenAddress::Kind::Unix && a.path == config.supervisor.control_socket)
        sink.error(where.at, key, "is the same path as supervisor.control_socket");
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

}  // namespace

Config load_string(std::string_view text, const std::filesystem::path& file) {
  Config config;
  config.file = std::filesystem::absolute(file).lexically_normal();
  const std::filesystem::path base_dir = config.file.parent_path();

  toml::table root_table;
  try {
    root_table = toml::parse(text, file.string());
  } catch (const toml::parse_error& e) {
    throw ConfigError({Diagnostic{file.string(), static_cast<std::uint32_t>(e.source().begin.line),
                                  static_cast<std::uint32_t>(e.source().begin.column), "",
                                  "TOML syntax error: " + std::string(e.description())}});
  }

  Sink sink(file.string());
  interpolate(root_table, sink);
  TableReader root(root_table, "", sink);
  config.supervisor = load_supervisor(root, base_dir, sink);

  std::vector<detail::PoolSource> sources;
  if (const toml::table* pools = root.table("pools")) {
    for (auto&& [name, node] : *pools) {
      const std::string key = "pools." + std::string(name.str());
      if (!is_pool_name(name.str())) {
        sink.error(detail::location_of(name.source()), key,
                   "a pool name is 1 to 64 letters, digits, '_', '-' or '.'");
        continue;
      }
      const toml::table* t = node.as_table();
      if (t == nullptr) {
        sink.error(detail::location_of(node.source()), key,
                   "expected a table such as [pools." + std::string(name.str()) + "], got " +
                       std::string(detail::type_name(node.type())));
        continue;
      }
      detail::PoolSource source;
      config.pools.push_back(detail::load_pool(std::string(name.str()), *t, base_dir, sink, source));
      sources.push_back(std::move(source));
    }
    if (pools->empty())
      root.error("pools", "no pools defined; add at least one [pools.NAME] table with a command");
  } else if (!root.has("pools")) {
    sink.error({1, 1}, "pools", "no pools defined; add at least one [pools.NAME] table with a command");
  }
  sort_in_file_order(config.pools, sources);
  root.finish();
  check_listen_conflicts(config, sources, sink);

  if (!sink.empty()) throw ConfigError(sink.take());
  return config;
}

Config load_file(const std::filesystem::path& file) { return load_string(read_config_file(file), file); }

std::filesystem::path default_config_path() {
  const std::filesystem::path local = "forkpool.toml";
  if (::access(local.c_str(), F_OK) == 0) return local;
  const std::filesystem::path system = "/etc/forkpool/forkpool.toml";
  if (::access(system.c_str(), F_OK) == 0) return system;
  return local;  // Neither exists: name the first so the error says where we looked first.
}

}  // namespace forkpool::config
