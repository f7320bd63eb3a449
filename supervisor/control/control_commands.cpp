// SPDX-License-Identifier: Apache-2.0
#include "supervisor/control/control_commands.hpp"

#include <algorithm>
#include <csignal>
#include <map>
#include <optional>

#include "config/names.hpp"
#include "config/suggest.hpp"
#include "config/validate.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/pool/pool.hpp"
#include "supervisor/observe/prometheus.hpp"
#include "supervisor/observe/status_json.hpp"
#include "supervisor/version.hpp"

namespace forkpool::supervisor {
namespace {

using nlohmann::json;

// A bad request: the message goes back to the client as {"ok": false, "error": ...}.
struct BadRequest {
  std::string message;
};

std::string string_arg(const json& r, const char* key, const char* cmd) {
  if (!r.contains(key) || !r[key].is_string())
    throw BadRequest{std::string(cmd) + " needs \"" + key + "\" (a string)"};
  return r[key].get<std::string>();
}

std::optional<std::int64_t> int_arg(const json& r, const char* key, const char* cmd, bool required) {
  if (!r.contains(key) || r[key].is_null()) {
    if (required) throw BadRequest{std::string(cmd) + " needs \"" + key + "\" (a whole number)"};
    return std::nullopt;
  }
  if (!r[key].is_number_integer()) throw BadRequest{std::string(cmd) + ": \"" + key + "\" must be a whole number"};
  return r[key].get<std::int64_t>();
}

Pool& pool_arg(ControlTarget& t, const json& r, const char* cmd) {
  const std::string name = string_arg(r, "pool", cmd);
  if (Pool* p = t.find_pool(name)) return *p;
  std::string known;
  for (const auto& n : t.pool_names()) known += (known.empty() ? "" : ", ") + n;
  throw BadRequest{"no pool named \"" + name + "\" (pools: " + known + ")"};
}

unsigned worker_arg(const Pool& pool, const json& r, const char* cmd, bool required, std::optional<unsigned>& out) {
  const auto w = int_arg(r, "worker", cmd, required);
  if (!w) return 0;
  // The number as the client wrote it: above 2^63 the int64 it was read into is negative.
  const std::string written = r["worker"].dump();
  if (pool.target() == 0)
    throw BadRequest{"pool " + pool.name() + " has no workers (it is scaled to 0), so there is no worker " +
                     written};
  const std::vector<unsigned> numbers = pool.worker_numbers();
  // Compared as 64-bit numbers: as an unsigned, 2^32 would be worker 0 and 2^32 + 1 worker 1.
  const bool known = std::any_of(numbers.begin(), numbers.end(),
                                 [&](unsigned n) { return static_cast<std::int64_t>(n) == *w; });
  if (!known) {
    std::string list;
    for (unsigned n : numbers) list += (list.empty() ? "" : ", ") + std::to_string(n);
    const bool contiguous = !numbers.empty() && numbers.back() + 1 == numbers.size();
    if (contiguous || numbers.empty())
      throw BadRequest{"pool " + pool.name() + " has workers 0 to " + std::to_string(pool.target() - 1) + ", not " +
                       written};
    throw BadRequest{"pool " + pool.name() + " has workers " + list + ", not " + written};
  }
  out = static_cast<unsigned>(*w);
  return *out;
}

json ok(json extra = json::object()) {
  extra["ok"] = true;
  return extra;
}

using Command = void (*)(ControlTarget&, ControlClient&, const json&);

void cmd_status(ControlTarget& t, ControlClient& c, const json& r) {
  StatusModel model = t.status_model();
  if (r.contains("pool") && !r["pool"].is_null()) {
    const Pool& only = pool_arg(t, r, "status");
    std::erase_if(model.pools, [&](const PoolStatus& p) { return p.name != only.name(); });
  }
  c.reply_text(status_text(model, true));
}

void cmd_events(ControlTarget&, ControlClient& c, const json&) {
  c.subscribe();
  c.reply(ok({{"streaming", true}}));
}

void cmd_scale(ControlTarget& t, ControlClient& c, const json& r) {
  Pool& pool = pool_arg(t, r, "scale");
  const auto n = *int_arg(r, "workers", "scale", true);
  if (pool.dynamic()) {
    const int from = pool.target();
    // Far outside any bounds, a number is still out of range, never truncated into it.
    const int wanted = static_cast<int>(std::clamp<std::int64_t>(n, -1, kMaxPoolWorkers + 1));
    if (auto error = pool.scale_dynamic(wanted); !error.empty()) throw BadRequest{error};
    c.reply(ok({{"pool", pool.name()}, {"from", from}, {"to", pool.target()}, {"min", pool.min_workers()},
                {"max", pool.max_workers()}}));
    return;
  }
  if (n < 0 || n > pool.max_size())
    throw BadRequest{"pool " + pool.name() + " can have 0 to " + std::to_string(pool.max_size()) + " workers"};
  const int from = pool.target();
  pool.resize(static_cast<int>(n));
  c.reply(ok({{"pool", pool.name()}, {"from", from}, {"to", n}}));
}

void cmd_restart(ControlTarget& t, ControlClient& c, const json& r) {
  Pool& pool = pool_arg(t, r, "restart");
  std::optional<unsigned> worker;
  worker_arg(pool, r, "restart", false, worker);
  if (pool.state() != shm::PoolState::Running && pool.state() != shm::PoolState::Starting)
    throw BadRequest{"pool " + pool.name() + " is " + std::string(shm::to_string(pool.state())) +
                     "; start it instead"};
  if (pool.target() == 0)
    throw BadRequest{"pool " + pool.name() + " has no workers to restart (it is scaled to 0)"};
  pool.replace(worker, "(restart)");
  c.reply(ok({{"pool", pool.name()}, {"restarting", worker ? json(*worker) : json("all")}}));
}

void cmd_stop(ControlTarget& t, ControlClient& c, const json& r) {
  Pool& pool = pool_arg(t, r, "stop");
  pool.stop(false);
  c.reply(ok({{"pool", pool.name()}, {"state", shm::to_string(pool.state())}}));
}

void cmd_start(ControlTarget& t, ControlClient& c, const json& r) {
  Pool& pool = pool_arg(t, r, "start");
  if (pool.state() == shm::PoolState::Running || pool.state() == shm::PoolState::Starting)
    throw BadRequest{"pool " + pool.name() + " is already " + std::string(shm::to_string(pool.state()))};
  if (pool.state() == shm::PoolState::Stopping)
    throw BadRequest{"pool " + pool.name() + " is still stopping; try again once it is stopped"};
  pool.start();
  c.reply(ok({{"pool", pool.name()}, {"state", shm::to_string(pool.state())}}));
}

void cmd_kill(ControlTarget& t, ControlClient& c, const json& r) {
  Pool& pool = pool_arg(t, r, "kill");
  std::optional<unsigned> worker;
  worker_arg(pool, r, "kill", true, worker);
  int signo = SIGTERM;
  if (r.contains("signal") && !r["signal"].is_null()) {
    const json& s = r["signal"];
    // A number as written: get<int>() would turn 4294967311 (2^32 + 15) into 15, TERM.
    const std::string name = s.is_number_integer() ? s.dump() : s.is_string() ? s.get<std::string>() : "";
    auto parsed = config::signal_from_name(name);
    const bool number = !name.empty() && name.find_first_not_of("-+0123456789") == std::string::npos;
    if (!parsed && number)
      throw BadRequest{"kill: no signal " + name + " (signal numbers are 1 to " + std::to_string(NSIG - 1) + ")"};
    if (!parsed) {
      const std::string hint = config::signal_suggestion(name, false);
      throw BadRequest{"kill: unknown signal \"" + name + "\"" +
                       (hint.empty() ? std::string(" (e.g. TERM, KILL, HUP, USR1 or a number)") : hint)};
    }
    signo = *parsed;
  }
  if (!pool.signal_worker(*worker, signo))
    throw BadRequest{"pool " + pool.name() + " has no running worker " + std::to_string(*worker)};
  log::at_with(
      spdlog::level::info, "control.kill",
      [&] { return json{{"pool", pool.name()}, {"worker", *worker}, {"signal", config::signal_name(signo)}}; },
      "sent SIG{} to worker {}[{}] on request", config::signal_name(signo), pool.name(), *worker);
  c.reply(ok({{"pool", pool.name()}, {"worker", *worker}, {"signal", config::signal_name(signo)}}));
}

void cmd_reload(ControlTarget& t, ControlClient& c, const json&) { c.reply(t.reload("control socket")); }

void cmd_upgrade(ControlTarget& t, ControlClient& c, const json&) { t.upgrade("control socket", &c); }

void cmd_shutdown(ControlTarget& t, ControlClient& c, const json&) {
  c.reply(ok({{"stopping", true}}));
  t.request_shutdown();
}

void cmd_log_level(ControlTarget&, ControlClient& c, const json& r) {
  const std::string level = string_arg(r, "level", "log-level");
  const std::string old = log::level();
  if (!log::set_level(level))
    throw BadRequest{"log-level: expected one of trace, debug, info, warn, error, critical, off; got \"" + level + "\""};
  log::info("control.log_level", "log level changed from {} to {}", old, level);
  c.reply(ok({{"level", level}, {"previous", old}}));
}

void cmd_metrics(ControlTarget& t, ControlClient& c, const json&) {
  c.reply(ok({{"text", prometheus_text(t.status_model())}}));
}

void cmd_version(ControlTarget&, ControlClient& c, const json&) {
  c.reply(ok({{"version", kVersion}, {"protocol", kWorkerProtocol}, {"control", kControlProtocol}}));
}

void cmd_scoreboard(ControlTarget& t, ControlClient& c, const json&) {
  json info = ok();
  const std::vector<shm::OwnedFd> owned = t.scoreboard_fds(info);
  std::vector<int> fds;
  for (const auto& fd : owned) fds.push_back(fd.get());
  info["fd_count"] = fds.size();
  // A failed send may have written part of the reply already: nothing more may follow
  // on this connection, so the client sees it end and asks again.
  if (!c.send_fds(info, fds)) c.close();
}

const std::map<std::string, Command, std::less<>>& commands() {
  static const std::map<std::string, Command, std::less<>> table = {
      {"status", cmd_status},     {"events", cmd_events},       {"scale", cmd_scale},
      {"restart", cmd_restart},   {"stop", cmd_stop},           {"start", cmd_start},
      {"kill", cmd_kill},         {"reload", cmd_reload},       {"shutdown", cmd_shutdown},
      {"log-level", cmd_log_level}, {"metrics", cmd_metrics},   {"version", cmd_version},
      {"scoreboard", cmd_scoreboard}, {"upgrade", cmd_upgrade},
  };
  return table;
}

}  // namespace

void run_command(ControlTarget& target, ControlClient& client, const json& request) {
  const std::string name = request["cmd"].get<std::string>();
  const auto& table = commands();
  auto it = table.find(name);
  if (it == table.end()) {
    std::vector<std::string> names;
    std::string list;
    for (const auto& [n, _] : table) {
      names.push_back(n);
      list += (list.empty() ? "" : ", ") + n;
    }
    std::string message = "unknown command \"" + name + "\"";
    if (auto best = config::closest_match(name, names)) message += "; did you mean \"" + *best + "\"?";
    client.error(message + " (commands: " + list + ")");
    return;
  }
  try {
    it->second(target, client, request);
  } catch (const BadRequest& e) {
    client.error(e.message);
  } catch (const nlohmann::json::exception& e) {
    client.error(name + ": bad arguments (" + e.what() + ")");
  } catch (const std::exception& e) {
    // A command that fails for want of a resource answers so; the master carries on.
    log::error("control.command_failed", "{}: {}", name, e.what());
    client.error(name + ": " + e.what());
  }
}

}  // namespace forkpool::supervisor
