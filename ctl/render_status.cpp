// SPDX-License-Identifier: Apache-2.0
#include "ctl/render_status.hpp"

#include <ctime>

#include <fmt/format.h>

#include "ctl/format.hpp"
#include "ctl/json_access.hpp"

namespace forkpool::ctl {

namespace {

std::string percentiles_text(const nlohmann::json& p) {
  if (!p.is_object()) return "-";
  return fmt::format("p50 {}  p90 {}  p99 {}  max {}  (n={})", format_ms(num_field(p, "p50")),
                     format_ms(num_field(p, "p90")), format_ms(num_field(p, "p99")),
                     format_ms(num_field(p, "max")), count_text(p, "count"));
}

std::string join(const nlohmann::json& list, std::string_view sep) {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& v : list) {
    if (!out.empty()) out.append(sep);
    out.append(display_text(v));
  }
  return out;
}

// `text` or "-" when empty, so a table column never collapses.
std::string or_dash(std::string text) {
  return text.empty() ? "-" : text;
}

std::string worker_table(const nlohmann::json& workers, bool colour) {
  Table t({"WORKER", "PID", "STATE", "ROLE", "GEN", "UPTIME", "HANDLED", "INFLIGHT", "CURRENT",
           "RESTARTS", "RSS", "CPU", "LAST-EXIT", "STATUS"},
          {Align::Right, Align::Right, Align::Left, Align::Left, Align::Right, Align::Right,
           Align::Right, Align::Right, Align::Right, Align::Right, Align::Right, Align::Right,
           Align::Left, Align::Left});
  if (workers.is_array()) {
    for (const auto& w : workers) {
      const std::string state = str_field(w, "state", "-");
      const double current = num_field(w, "current_ms");
      const auto pid = u64_field(w, "pid");
      const auto restarts = u64_field(w, "restarts");
      // A slot whose start failed has no exit, only the error that kept it from starting.
      const std::string last_error = str_field(w, "last_error");
      const std::string last_exit = last_error.empty() ? last_exit_text(field(w, "last_exit")) : last_error;
      t.add_row({
          {count_text(w, "worker")},
          {pid == 0 ? "-" : std::to_string(pid)},
          {state, state_colour(state)},
          {str_field(w, "role", "-")},
          {count_text(w, "generation")},
          {format_duration(num_field(w, "uptime_s"))},
          {count_text(w, "handled")},
          {count_text(w, "in_flight")},
          {current > 0 ? format_ms(current) : "-"},
          {std::to_string(restarts), restarts > 0 ? Colour::Yellow : Colour::None},
          {field(w, "rss_bytes").is_number() ? format_bytes(u64_field(w, "rss_bytes")) : "-"},
          {field(w, "cpu_s").is_number() ? fmt::format("{:.2f}s", num_field(w, "cpu_s")) : "-"},
          {last_exit, last_exit == "-" ? Colour::None : Colour::Red},
          {or_dash(str_field(w, "status"))},
      });
    }
  }
  return t.render(colour, "  ");
}

}  // namespace

std::string last_exit_text(const nlohmann::json& last_exit) {
  if (last_exit.is_null()) return "-";
  if (last_exit.is_string()) return or_dash(display_text(last_exit));
  if (last_exit.is_object()) {
    // Tolerate a structured form: {"code": 1} or {"signal": 9}.
    if (last_exit.contains("signal") && !last_exit["signal"].is_null()) {
      return "signal " + str_field(last_exit, "signal");
    }
    if (last_exit.contains("code")) return "exit " + str_field(last_exit, "code");
  }
  return display_text(last_exit);
}

std::string render_pool(const nlohmann::json& pool, bool colour) {
  const std::string state = str_field(pool, "state", "?");
  const std::string listeners = join(field(pool, "listeners"), " ");
  // Only the master's own dispatch has a queue, connections in flight and a balance; a
  // shared pool's workers accept by themselves, and a plain pool has no listeners.
  const std::string dispatch = listeners.empty() ? "none (plain supervision)" : str_field(pool, "dispatch", "-");
  const bool master_dispatch = !listeners.empty() && str_field(pool, "dispatch") == "master";
  std::string out = fmt::format("pool {}  {}  dispatch {}",
                                paint(str_field(pool, "name", "?"), Colour::Bold, colour),
                                paint(state, state_colour(state), colour), dispatch);
  if (const auto balance = str_field(pool, "balance"); master_dispatch && !balance.empty())
    out += " (" + balance + ")";
  if (!listeners.empty()) out += "  listen " + listeners;
  out += "\n";
  if (const auto why = str_field(pool, "failed_reason"); !why.empty())
    out += "  failed    " + paint(why, Colour::Red, colour) + "\n";
  std::string bounds;
  if (bool_field(pool, "dynamic"))
    bounds = fmt::format(" (min {}, max {})", count_text(pool, "min_workers"), count_text(pool, "max_workers"));
  out += fmt::format("  workers   target {}{}  live {}  ready {}  busy {}  idle {}\n",
                     count_text(pool, "target"), bounds, count_text(pool, "live"),
                     count_text(pool, "ready"), count_text(pool, "busy"), count_text(pool, "idle"));
  if (const auto scale = str_field(pool, "last_scale"); !scale.empty())
    out += "  scaled    " + scale + "\n";
  const auto& c = field(pool, "counters");
  const auto& q = field(pool, "queue");
  // A pool switched to shared dispatch by a reload still shows what the master holds for
  // its older workers until that is served (docs/master.md, "A reload that switches dispatch").
  const bool master_holds =
      u64_field(q, "length") > 0 || u64_field(c, "in_flight") > 0 || u64_field(c, "parked_now") > 0;
  if (master_dispatch || master_holds) {
    out += fmt::format("  queue     {} (peak {}, limit {})  timeouts {}\n", count_text(q, "length"),
                       count_text(q, "peak"), count_text(q, "limit"), count_text(c, "queue_timeouts"));
    out += fmt::format(
        "  conns     accepted {}  dispatched {}  completed {}  in flight {}  lost {}  closed {}\n",
        count_text(c, "accepted"), count_text(c, "dispatched"), count_text(c, "completed"),
        count_text(c, "in_flight"), count_text(c, "lost"), count_text(c, "closed"));
    // keepalive = "master": idle keep-alive connections wait in the master between requests.
    if (str_field(pool, "keepalive") == "master" || u64_field(c, "parked_now") > 0)
      out += fmt::format("  parked    {} now  parked {}  resumed {}  timed out {}  closed by client {}  closed {}\n",
                         count_text(c, "parked_now"), count_text(c, "parked"), count_text(c, "resumed"),
                         count_text(c, "keepalive_timeouts"), count_text(c, "keepalive_closed"),
                         count_text(c, "parked_closed"));
  }
  const auto crashed = u64_field(c, "crashed");
  const auto spawn_failed = u64_field(c, "spawn_failed");
  out += fmt::format(
      "  lifecycle spawned {}  crashed {}  spawn failed {}  killed {}  recycled {}\n", count_text(c, "spawned"),
      paint(count_text(c, "crashed"), crashed > 0 ? Colour::Red : Colour::None, colour),
      paint(count_text(c, "spawn_failed"), spawn_failed > 0 ? Colour::Red : Colour::None, colour),
      count_text(c, "killed"), count_text(c, "recycled"));
  if (const auto paused = str_field(pool, "accept_paused"); !paused.empty())
    out += "  accepting " + paint("paused: " + paused, Colour::Red, colour) + "\n";
  if (master_dispatch || u64_field(field(pool, "duration_ms"), "count") > 0)
    out += "  duration  " + percentiles_text(field(pool, "duration_ms")) + "\n";
  if (master_dispatch) out += "  queued    " + percentiles_text(field(pool, "queue_wait_ms")) + "\n";
  const auto& workers = field(pool, "workers");
  if (workers.is_array() && !workers.empty()) {
    out += "\n" + worker_table(workers, colour);
  }
  return out;
}

std::string render_status(const nlohmann::json& reply, bool colour) {
  const auto& m = field(reply, "master");
  const std::string state = str_field(m, "state", "?");
  std::string out = fmt::format("master pid {}  {}  up {}  version {}  config {}\n",
                                count_text(m, "pid"), paint(state, state_colour(state), colour),
                                format_duration(num_field(m, "uptime_s")),
                                str_field(m, "version", "-"), str_field(m, "config", "-"));
  if (const double upgrades = num_field(m, "upgrades"); upgrades > 0) {
    const auto when = static_cast<std::time_t>(num_field(m, "last_upgrade"));
    char stamp[32] = "?";
    std::tm tm{};
    if (::gmtime_r(&when, &tm) != nullptr) std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S UTC", &tm);
    out += fmt::format("binary upgraded {} time(s) in place, last at {}\n", count_text(m, "upgrades"), stamp);
  }
  const auto& pools = field(reply, "pools");
  if (!pools.is_array() || pools.empty()) return out + "no pools\n";
  for (const auto& p : pools) out += "\n" + render_pool(p, colour);
  return out;
}

}  // namespace forkpool::ctl
