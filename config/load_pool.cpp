// SPDX-License-Identifier: Apache-2.0
#include "config/load_pool.hpp"

#include <sys/resource.h>

#include "config/listen_address.hpp"
#include "config/names.hpp"
#include "config/suggest.hpp"
#include "config/validate.hpp"

namespace forkpool::config::detail {
namespace {

constexpr std::int64_t kMaxWorkers = 4096;

std::filesystem::path resolve(const std::filesystem::path& base_dir, const std::string& p) {
  std::filesystem::path path(p);
  return (path.is_absolute() ? path : base_dir / path).lexically_normal();
}

template <typename T>
void assign(T& field, const std::optional<T>& v) {
  if (v) field = *v;
}

void load_command(TableReader& r, PoolConfig& pool, const std::filesystem::path& base_dir) {
  auto command = r.string_array("command");
  if (!command) {
    if (!r.has("command")) r.error("command", "missing; every pool needs a command (an argv array)");
    return;
  }
  if (command->empty() || command->front().empty()) {
    r.error("command", "expected a non-empty argv array such as [\"./app\", \"--port\", \"0\"]");
    return;
  }
  // Each problem at its element: toml++ keeps where every one of them was written.
  const toml::array& items = *r.node("command")->as_array();
  for (std::size_t i = 0; i < command->size(); ++i)
    if (auto problem = check_placeholders((*command)[i]))
      r.error_at(location_of(items[i].source()), "command[" + std::to_string(i) + "]", *problem);
  std::string& argv0 = command->front();
  if (argv0.find('{') == std::string::npos) {
    auto exe = resolve_executable(argv0, base_dir);
    if (!exe) r.error("command", exe.error);
    else if (argv0.find('/') != std::string::npos) argv0 = exe.value->string();
  } else if (argv0.find('/') != std::string::npos) {
    argv0 = resolve(base_dir, argv0).string();
  }
  pool.command = std::move(*command);
}

void load_listen(TableReader& r, PoolConfig& pool, const std::filesystem::path& base_dir,
                 PoolSource& source) {
  const toml::node* n = r.node("listen");
  if (n == nullptr) return;
  const toml::array* arr = n->as_array();
  if (arr == nullptr) {
    r.error("listen", "expected an array of addresses such as [\"tcp://127.0.0.1:8080\"], got " +
                          std::string(type_name(n->type())));
    return;
  }
  std::size_t index = 0;
  for (const toml::node& item : *arr) {
    const Location at = location_of(item.source());
    const std::string key = "listen[" + std::to_string(index++) + "]";
    const auto* s = item.as_string();
    if (s == nullptr) {
      r.error_at(at, key, "expected an address string, got " + std::string(type_name(item.type())));
      continue;
    }
    auto addr = parse_listen_address(s->get(), base_dir);
    if (!addr) {
      r.error_at(at, key, "expected " + addr.error);
      continue;
    }
    pool.listen.push_back(std::move(*addr.value));
    source.listen.push_back({at, index - 1});
  }
}

void load_sizing(TableReader& r, PoolConfig& pool) {
  auto workers = r.integer("workers", 1, kMaxWorkers);
  auto min = r.integer("min_workers", 0, kMaxWorkers);
  auto max = r.integer("max_workers", 1, kMaxWorkers);
  auto spare = r.integer("spare_workers", 0, kMaxWorkers);
  auto idle_timeout = r.duration("idle_timeout");
  const bool any_dynamic = r.has("min_workers") || r.has("max_workers") || r.has("spare_workers");
  if (r.has("idle_timeout") && !any_dynamic)
    r.error("idle_timeout", "applies to a dynamic pool only (one with `min_workers`/`max_workers`)");
  if (r.has("workers") && any_dynamic) {
    for (auto key : {"min_workers", "max_workers", "spare_workers"})
      if (r.has(key)) r.error(key, "cannot be combined with `workers`: use either a fixed `workers` count "
                                   "or `min_workers`/`max_workers`/`spare_workers`");
    return;
  }
  if (!any_dynamic) {
    if (workers) pool.workers = static_cast<int>(*workers);
    return;
  }
  if (!r.has("max_workers")) {
    r.error(r.has("min_workers") ? "min_workers" : "spare_workers",
            "a dynamic pool also needs `max_workers`");
    return;
  }
  pool.dynamic = true;
  pool.max_workers = static_cast<int>(max.value_or(1));
  pool.min_workers = static_cast<int>(min.value_or(1));
  // An on-demand pool (min 0) keeps no spare by default, or it could never return to zero.
  pool.spare_workers = static_cast<int>(spare.value_or(pool.min_workers == 0 ? 0 : 1));
  if (idle_timeout) pool.idle_timeout = *idle_timeout;
  if (pool.min_workers > pool.max_workers)
    r.error("min_workers", "must not exceed max_workers (" + std::to_string(pool.max_workers) + ")");
  if (pool.spare_workers > pool.max_workers)
    r.error("spare_workers", "must not exceed max_workers (" + std::to_string(pool.max_workers) + ")");
  pool.workers = pool.min_workers;
}

std::optional<int> load_signal(TableReader& r, std::string_view key, bool stop) {
  auto s = r.string(key);
  if (!s) return std::nullopt;
  auto sig = signal_from_name(*s);
  if (!sig)
    r.error(key, "expected a signal name such as \"TERM\", \"INT\", \"QUIT\" or \"KILL\", got \"" + *s + "\"" +
                     signal_suggestion(*s, stop));
  return sig;
}

std::optional<OutputTarget> load_output(TableReader& r, std::string_view key,
                                        const std::filesystem::path& base_dir) {
  auto s = r.string(key);
  if (!s) return std::nullopt;
  OutputTarget t;
  if (*s == "inherit") t.kind = OutputTarget::Kind::Inherit;
  else if (*s == "null") t.kind = OutputTarget::Kind::Null;
  else if (*s == "log") t.kind = OutputTarget::Kind::Log;
  else if (s->empty()) {
    r.error(key, "expected \"inherit\", \"null\", \"log\" or a file path, got \"\"");
    return std::nullopt;
  } else {
    t.kind = OutputTarget::Kind::File;
    t.path = resolve(base_dir, *s);
    if (auto problem = check_directory(t.path.parent_path())) {
      r.error(key, "the folder of the output file: " + *problem);
      return std::nullopt;
    }
  }
  return t;
}

void load_env(TableReader& r, PoolConfig& pool) {
  const toml::table* t = r.table("env");
  if (t == nullptr) return;
  for (auto&& [k, v] : *t) {
    const std::string key = "env." + std::string(k.str());
    if (!is_env_name(k.str())) {
      r.error_at(location_of(k.source()), key, "not a valid environment variable name (letters, digits, '_')");
      continue;
    }
    const auto* s = v.as_string();
    if (s == nullptr) {
      r.error_at(location_of(v.source()), key,
                 "expected a string, got " + std::string(type_name(v.type())) + " (quote numbers)");
      continue;
    }
    if (auto problem = check_placeholders(s->get())) {
      r.error_at(location_of(v.source()), key, *problem);
      continue;
    }
    pool.env[std::string(k.str())] = s->get();
  }
}

void load_rlimits(TableReader& r, PoolConfig& pool) {
  const toml::table* t = r.table("rlimits");
  if (t == nullptr) return;
  for (auto&& [k, v] : *t) {
    const std::string key = "rlimits." + std::string(k.str());
    const RlimitName* name = find_rlimit(k.str());
    if (name == nullptr) {
      std::vector<std::string> names;
      for (const auto& n : rlimit_names()) names.emplace_back(n.name);
      std::string msg = "unknown resource limit";
      if (auto best = closest_match(k.str(), names)) msg += "; did you mean `" + *best + "`?";
      r.error_at(location_of(k.source()), key, msg);
      continue;
    }
    Rlimit limit{name->resource, 0};
    const Location at = location_of(v.source());
    if (auto i = v.as_integer(); i != nullptr && i->get() >= 0) {
      limit.value = static_cast<std::uint64_t>(i->get());
    } else if (auto s = v.as_string(); s != nullptr && s->get() == "unlimited") {
      limit.value = RLIM_INFINITY;
    } else if (auto sz = v.as_string(); sz != nullptr && name->bytes && parse_size(sz->get())) {
      limit.value = *parse_size(sz->get()).value;
    } else {
      r.error_at(at, key, std::string("expected a non-negative integer") +
                              (name->bytes ? ", a size such as \"512MiB\"" : "") + " or \"unlimited\"");
      continue;
    }
    pool.rlimits[std::string(name->name)] = limit;
  }
}

}  // namespace

PoolConfig load_pool(const std::string& name, const toml::table& table,
                     const std::filesystem::path& base_dir, Sink& sink, PoolSource& source) {
  PoolConfig pool;
  pool.name = name;
  TableReader r(table, "pools." + name, sink);
  source.header = r.where_table();

  load_command(r, pool, base_dir);
  assign(pool.dispatch, r.choice<Dispatch>("dispatch", dispatch_from_string, {"master", "shared"}));
  load_listen(r, pool, base_dir, source);
  load_sizing(r, pool);
  if (auto v = r.integer("max_inflight", 1, 65536)) pool.max_inflight = static_cast<int>(*v);
  assign(pool.keepalive, r.choice<KeepAlive>("keepalive", keepalive_from_string, {"worker", "master"}));
  if (pool.keepalive == KeepAlive::Master && pool.dispatch != Dispatch::Master)
    r.error("keepalive", "\"master\" needs dispatch = \"master\" (in shared dispatch the master never holds a connection)");
  assign(pool.keepalive_timeout, r.duration("keepalive_timeout"));
  if (auto v = r.integer("max_parked", 1, 10'000'000)) pool.max_parked = static_cast<int>(*v);
  assign(pool.balance, r.choice<Balance>("balance", balance_from_string, {"least-busy", "round-robin"}));
  if (auto v = r.integer("queue_limit", 0, 1'000'000)) pool.queue_limit = static_cast<int>(*v);
  assign(pool.queue_timeout, r.duration("queue_timeout"));
  if (auto v = r.integer("backlog", 1, 65535)) pool.backlog = static_cast<int>(*v);
  // A master-dispatch pool hands connections only to a worker that said READY on its
  // channel: a program that does not speak the protocol would take connections and
  // never answer them. Shared and plain pools have nothing to hand over.
  pool.ready = pool.dispatch == Dispatch::Master && !pool.listen.empty() ? Readiness::Protocol : Readiness::Exec;
  assign(pool.ready, r.choice<Readiness>("ready", readiness_from_string, {"exec", "notify", "protocol"}));
  assign(pool.ready_timeout, r.duration("ready_timeout"));
  assign(pool.watchdog, r.duration("watchdog"));
  assign(pool.request_timeout, r.duration("request_timeout"));
  if (pool.request_timeout.count() > 0 && pool.dispatch != Dispatch::Master)
    r.error("request_timeout",
            "needs dispatch = \"master\" (in shared dispatch the master never holds a connection, so it cannot time "
            "one; `watchdog` stops a worker that hangs)");
  assign(pool.timeout_signal, load_signal(r, "timeout_signal", false));
  if (auto v = r.integer("max_requests", 0, 1'000'000'000'000)) pool.max_requests = static_cast<std::uint64_t>(*v);
  if (auto v = r.integer("max_requests_jitter", 0, 1'000'000'000'000))
    pool.max_requests_jitter = static_cast<std::uint64_t>(*v);
  assign(pool.max_memory, r.size("max_memory"));
  assign(pool.restart_delay, r.duration("restart_delay"));
  assign(pool.restart_delay_max, r.duration("restart_delay_max"));
  if (pool.restart_delay_max < pool.restart_delay) {
    // Only a written maximum can contradict the delay; the default one follows it up.
    if (r.has("restart_delay_max"))
      r.error("restart_delay_max", "must be at least restart_delay (" + format_duration(pool.restart_delay) + ")");
    else
      pool.restart_delay_max = pool.restart_delay;
  }
  if (auto v = r.integer("flap_restarts", 1, 1'000'000)) pool.flap_restarts = static_cast<int>(*v);
  assign(pool.flap_window, r.duration("flap_window"));
  if (auto problem = check_restart_policy(pool.restart_delay, pool.flap_window)) r.error("restart_delay", *problem);
  assign(pool.graceful_timeout, r.duration("graceful_timeout"));
  if (auto sig = load_signal(r, "stop_signal", true)) {
    if (auto problem = check_stop_signal(*sig)) r.error("stop_signal", *problem);
    else pool.stop_signal = *sig;
  }
  assign(pool.isolate, r.choice<Isolation>("isolate", isolation_from_string, {"none", "pid"}));

  const auto group = r.string("group");
  if (auto user = r.string("user"); user && !user->empty()) {
    if (auto problem = check_user_exists(*user, group && !group->empty())) r.error("user", *problem);
    pool.user = *user;
  }
  if (group && !group->empty()) {
    if (auto problem = check_group_exists(*group)) r.error("group", *problem);
    pool.group = *group;
  }
  if (auto cwd = r.string("cwd"); cwd && !cwd->empty()) {
    pool.cwd = resolve(base_dir, *cwd);
    if (auto problem = check_directory(pool.cwd)) r.error("cwd", *problem);
    if (pool.cwd.has_filename() == false && pool.cwd != pool.cwd.root_path()) pool.cwd = pool.cwd.parent_path();
  }
  if (auto umask = r.mode_string("umask"); umask && !umask->empty()) {
    auto mode = parse_octal_mode(*umask);
    if (!mode) r.error("umask", "expected " + mode.error + ", got \"" + *umask + "\"");
    pool.umask = mode.value;
  }
  load_env(r, pool);
  if (auto v = r.boolean("clear_env")) pool.clear_env = *v;
  load_rlimits(r, pool);
  assign(pool.stdout_target, load_output(r, "stdout", base_dir));
  assign(pool.stderr_target, load_output(r, "stderr", base_dir));

  r.finish();
  return pool;
}

}  // namespace forkpool::config::detail
