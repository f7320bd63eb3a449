// SPDX-License-Identifier: Apache-2.0
#include "supervisor/observe/status_json.hpp"

#include <fmt/compile.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace forkpool::supervisor {
namespace {

using nlohmann::json;
using namespace std::string_view_literals;

// Length of the well-formed UTF-8 sequence at s[i], or 0 if there is none (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD for each byte that starts no valid sequence
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

json text(std::string_view s) {
  return valid_utf8(s);
}
json text_or_null(std::string_view s) {
  return s.empty() ? json(nullptr) : text(s);
}

json percentiles_json(const Percentiles& p) {
  return {{"count", p.count},
          {"p50", p.p50_ms},
          {"p90", p.p90_ms},
          {"p99", p.p99_ms},
          {"max", p.max_ms}};
}

// Integers and doubles are formatted into the reply without a runtime format string and
// without the resize-then-write of a back_insert_iterator: a status of 1,000 workers
// writes ~10,000 numbers (issue 15: `status` in under 5 ms).
template <typename Int>
void append_int(std::string& out, Int v) {
  const fmt::format_int digits(v);
  out.append(digits.data(), digits.size());
}

// The text of one JSON string as nlohmann::json::dump writes it (UTF-8 kept, control
// characters escaped), after the same repair as text().
void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    // A run of printable ASCII that needs no escape is copied at once.
    std::size_t plain = i;
    while (plain < s.size()) {
      const auto c = static_cast<unsigned char>(s[plain]);
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
      ++plain;
    }
    if (plain > i) {
      out.append(s, i, plain - i);
      i = plain;
      continue;
    }
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    const char c = s[i];
    if (n > 1) {
      out.append(s, i, n);
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') {
      out += '\\';
      out += c == '\b' ? 'b' : c == '\f' ? 'f' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
    } else {
      char buf[8];
      const char* end = fmt::format_to(buf, FMT_COMPILE("\\u{:04x}"), static_cast<unsigned>(c));
      out.append(buf, static_cast<std::size_t>(end - buf));
    }
    i += n;
  }
  out += '"';
}

void append_string_or_null(std::string& out, std::string_view s) {
  if (s.empty())
    out += "null"sv;
  else
    append_string(out, s);
}

// A double as nlohmann::json::dump writes it: shortest round trip, a whole number with
// ".0", and null for what JSON cannot hold.
void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null"sv;
    return;
  }
  char buf[40];  // the longest shortest-round-trip double is 24 characters
  const std::string_view digits(buf, fmt::format_to(buf, FMT_COMPILE("{}"), v));
  out += digits;
  if (digits.find_first_of(".e") == std::string_view::npos) out += ".0"sv;
}

// One worker's object, written straight into the reply: a pool of 1,000 workers is
// answered without building 1,000 JSON trees (issue 15: `status` in under 5 ms). Keys in
// the order nlohmann::json (a sorted map) writes them, so the reply reads the same as
// the rest of it.
void append_worker(std::string& out, const WorkerStatus& w) {
  out += "{\"cpu_s\":"sv;
  append_double(out, w.cpu_s);
  out += ",\"current_ms\":"sv;
  append_double(out, w.current_ms);
  out += ",\"generation\":"sv;
  append_int(out, w.generation);
  out += ",\"handled\":"sv;
  append_int(out, w.handled);
  out += ",\"in_flight\":"sv;
  append_int(out, w.in_flight);
  out += ",\"last_error\":"sv;
  append_string_or_null(out, w.last_error);
  out += ",\"last_exit\":"sv;
  append_string_or_null(out, w.last_exit);
  out += ",\"pid\":"sv;
  append_int(out, w.pid);
  out += ",\"restarts\":"sv;
  append_int(out, w.restarts);
  out += ",\"role\":"sv;
  append_string(out, w.role);
  out += ",\"rss_bytes\":"sv;
  append_int(out, w.rss_bytes);
  out += ",\"slot\":"sv;
  append_int(out, w.slot);
  out += ",\"state\":"sv;
  append_string(out, w.state);
  out += ",\"status\":"sv;
  append_string_or_null(out, w.status_text);
  out += ",\"uptime_s\":"sv;
  append_double(out, w.uptime_s);
  out += ",\"worker\":"sv;
  append_int(out, w.worker);
  out += '}';
}

// `object` dumped without its closing brace and ready for one more member: a key that
// sorts after all of its keys, whose value the caller writes, then closes the object.
void open_with_last(std::string& out, const json& object, std::string_view key) {
  const std::string head = object.dump(-1, ' ', false, json::error_handler_t::replace);
  out.append(head, 0, head.size() - 1);
  if (!object.empty()) out += ',';
  out += '"';
  out += key;
  out += "\":";
}

json pool_json(const PoolStatus& p) {
  json listeners = json::array();
  for (const auto& l : p.listeners) listeners.push_back(text(l));
  return {{"name", text(p.name)},
          {"state", text(p.state)},
          {"dispatch", text(p.dispatch)},
          {"balance", text(p.balance)},
          {"generation", p.generation},
          {"removed", p.removed},
          {"listeners", std::move(listeners)},
          {"target", p.target},
          {"dynamic", p.dynamic},
          {"min_workers", p.min},
          {"max_workers", p.max},
          {"last_scale", text(p.last_scale)},
          {"live", p.live},
          {"ready", p.ready},
          {"busy", p.busy},
          {"idle", p.idle},
          {"queue", {{"length", p.queue_length}, {"peak", p.queue_peak}, {"limit", p.queue_limit}}},
          {"counters",
           {{"accepted", p.accepted},
            {"dispatched", p.dispatched},
            {"completed", p.completed},
            {"in_flight", p.in_flight},
            {"lost", p.lost},
            {"closed", p.closed},
            {"queue_timeouts", p.queue_timeouts},
            {"spawned", p.spawned},
            {"crashed", p.crashed},
            {"killed", p.killed},
            {"recycled", p.recycled},
            {"spawn_failed", p.spawn_failed},
            {"parked", p.parked},
            {"resumed", p.resumed},
            {"keepalive_timeouts", p.keepalive_timeouts},
            {"keepalive_closed", p.keepalive_closed},
            {"parked_closed", p.parked_closed},
            {"parked_now", p.parked_now},
            {"protocol_errors", p.protocol_errors}}},
          {"keepalive", text(p.keepalive)},
          {"failed_reason", text_or_null(p.failed_reason)},
          {"accept_paused", text_or_null(p.accept_paused)},
          {"duration_ms", percentiles_json(p.duration)},
          {"queue_wait_ms", percentiles_json(p.queue_wait)}};
}

// Readers for status_from_json: each leaves `out` alone unless the key holds a value of
// a usable type, so nothing here can throw.
const json* member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  const auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

void read(const json& j, const char* key, std::string& out) {
  if (const json* v = member(j, key); v && v->is_string()) out = v->get_ref<const std::string&>();
}

void read(const json& j, const char* key, double& out) {
  if (const json* v = member(j, key); v && v->is_number()) out = v->get<double>();
}

void read(const json& j, const char* key, bool& out) {
  if (const json* v = member(j, key); v && v->is_boolean()) out = v->get<bool>();
}

template <typename Int>
void read(const json& j, const char* key, Int& out) {
  const json* v = member(j, key);
  if (v == nullptr) return;
  if (v->is_number_unsigned()) {
    const auto x = v->get<std::uint64_t>();
    if (std::in_range<Int>(x)) out = static_cast<Int>(x);
  } else if (v->is_number_integer()) {
    const auto x = v->get<std::int64_t>();
    if (std::in_range<Int>(x)) out = static_cast<Int>(x);
  }
}

const json& child(const json& j, const char* key) {
  static const json kNull;
  const json* v = member(j, key);
  return v ? *v : kNull;
}

Percentiles percentiles_from(const json& j) {
  Percentiles p;
  read(j, "count", p.count);
  read(j, "p50", p.p50_ms);
  read(j, "p90", p.p90_ms);
  read(j, "p99", p.p99_ms);
  read(j, "max", p.max_ms);
  return p;
}

WorkerStatus worker_from(const json& j) {
  WorkerStatus w;
  read(j, "worker", w.worker);
  read(j, "slot", w.slot);
  read(j, "pid", w.pid);
  read(j, "state", w.state);
  read(j, "role", w.role);
  read(j, "generation", w.generation);
  read(j, "uptime_s", w.uptime_s);
  read(j, "handled", w.handled);
  read(j, "in_flight", w.in_flight);
  read(j, "current_ms", w.current_ms);
  read(j, "restarts", w.restarts);
  read(j, "last_exit", w.last_exit);
  read(j, "rss_bytes", w.rss_bytes);
  read(j, "cpu_s", w.cpu_s);
  read(j, "status", w.status_text);
  read(j, "last_error", w.last_error);
  return w;
}

PoolStatus pool_from(const json& j) {
  PoolStatus p;
  read(j, "name", p.name);
  read(j, "state", p.state);
  read(j, "dispatch", p.dispatch);
  read(j, "balance", p.balance);
  read(j, "generation", p.generation);
  read(j, "removed", p.removed);
  if (const auto& l = child(j, "listeners"); l.is_array()) {
    for (const auto& e : l) {
      if (e.is_string()) p.listeners.push_back(e.get<std::string>());
    }
  }
  read(j, "target", p.target);
  read(j, "dynamic", p.dynamic);
  read(j, "min_workers", p.min);
  read(j, "max_workers", p.max);
  read(j, "last_scale", p.last_scale);
  read(j, "live", p.live);
  read(j, "ready", p.ready);
  read(j, "busy", p.busy);
  read(j, "idle", p.idle);
  const auto& q = child(j, "queue");
  read(q, "length", p.queue_length);
  read(q, "peak", p.queue_peak);
  read(q, "limit", p.queue_limit);
  const auto& c = child(j, "counters");
  read(c, "accepted", p.accepted);
  read(c, "dispatched", p.dispatched);
  read(c, "completed", p.completed);
  read(c, "in_flight", p.in_flight);
  read(c, "lost", p.lost);
  read(c, "closed", p.closed);
  read(c, "queue_timeouts", p.queue_timeouts);
  read(c, "spawned", p.spawned);
  read(c, "crashed", p.crashed);
  read(c, "killed", p.killed);
  read(c, "recycled", p.recycled);
  read(c, "spawn_failed", p.spawn_failed);
  read(c, "parked", p.parked);
  read(c, "resumed", p.resumed);
  read(c, "keepalive_timeouts", p.keepalive_timeouts);
  read(c, "keepalive_closed", p.keepalive_closed);
  read(c, "parked_closed", p.parked_closed);
  read(c, "parked_now", p.parked_now);
  read(c, "protocol_errors", p.protocol_errors);
  read(j, "keepalive", p.keepalive);
  read(j, "failed_reason", p.failed_reason);
  read(j, "accept_paused", p.accept_paused);
  p.duration = percentiles_from(child(j, "duration_ms"));
  p.queue_wait = percentiles_from(child(j, "queue_wait_ms"));
  if (const auto& ws = child(j, "workers"); ws.is_array()) {
    for (const auto& w : ws) p.workers.push_back(worker_from(w));
  }
  return p;
}

}  // namespace

std::string status_text(const StatusModel& model, bool ok) {
  std::size_t workers = 0;
  for (const auto& p : model.pools) workers += p.workers.size();
  json top = {{"master",
               {{"pid", model.master_pid},
                {"version", text(model.version)},
                {"config", text(model.config_file)},
                {"state", text(model.state)},
                {"uptime_s", model.uptime_s},
                {"upgrades", model.upgrades},
                {"last_upgrade", model.last_upgrade}}},
              {"generation", model.generation}};
  if (ok) top["ok"] = true;
  // One buffer for the whole reply, sized for it (a worker's row is ~250 bytes, a pool's
  // head ~1.5 KB), with room for the newline the control socket adds.
  std::string out;
  out.reserve(1024 + model.pools.size() * 2048 + workers * 320);
  open_with_last(out, top, "pools");
  out += '[';
  for (std::size_t i = 0; i < model.pools.size(); ++i) {
    const PoolStatus& p = model.pools[i];
    if (i > 0) out += ',';
    open_with_last(out, pool_json(p), "workers");
    out += '[';
    for (std::size_t k = 0; k < p.workers.size(); ++k) {
      if (k > 0) out += ',';
      append_worker(out, p.workers[k]);
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

json status_json(const StatusModel& model) { return json::parse(status_text(model)); }

StatusModel status_from_json(const json& j) {
  StatusModel m;
  const auto& master = child(j, "master");
  read(master, "pid", m.master_pid);
  read(master, "version", m.version);
  read(master, "config", m.config_file);
  read(master, "state", m.state);
  read(master, "uptime_s", m.uptime_s);
  read(master, "upgrades", m.upgrades);
  read(master, "last_upgrade", m.last_upgrade);
  read(j, "generation", m.generation);
  if (const auto& pools = child(j, "pools"); pools.is_array()) {
    for (const auto& p : pools) m.pools.push_back(pool_from(p));
  }
  return m;
}

}  // namespace forkpool::supervisor
