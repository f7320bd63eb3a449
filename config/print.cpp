// SPDX-License-Identifier: Apache-2.0
#include "config/print.hpp"

#include <sys/resource.h>

#include <cctype>
#include <cstdio>

#include "config/names.hpp"
#include "config/units.hpp"

namespace forkpool::config {
namespace {

// A string value as TOML that reads back as itself. Values are printed expanded, and the
// loader expands "${" and "$$" again (interpolate.hpp), so a '$' before '{' or '$' is
// written "$$"; any other '$' ("$HOME" for a shell) stays as it is.
std::string value_quote(std::string_view s) {
  std::string escaped;
  for (std::size_t i = 0; i < s.size(); ++i) {
    escaped += s[i];
    if (s[i] == '$' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '$')) escaped += '$';
  }
  return toml_quote(escaped);
}

class Writer {
 public:
  void header(const std::string& name) {
    if (!out_.empty() && !after_comment_) out_ += '\n';
    after_comment_ = false;
    out_ += "[" + name + "]\n";
  }
  // A comment line above the next header.
  void comment(const std::string& text) {
    if (!out_.empty()) out_ += '\n';
    out_ += "# " + text + "\n";
    after_comment_ = true;
  }
  void raw(std::string_view key, const std::string& value) {
    out_ += std::string(key) + " = " + value + "\n";
  }
  void str(std::string_view key, std::string_view value) { raw(key, value_quote(value)); }
  void num(std::string_view key, std::uint64_t value) { raw(key, std::to_string(value)); }
  void boolean(std::string_view key, bool value) { raw(key, value ? "true" : "false"); }
  void duration(std::string_view key, Duration d) { str(key, format_duration(d)); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  bool after_comment_ = false;
};

std::string string_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + value_quote(items[i]);
  return out + "]";
}

std::string output_target(const OutputTarget& t) {
  switch (t.kind) {
    case OutputTarget::Kind::Inherit: return "inherit";
    case OutputTarget::Kind::Null: return "null";
    case OutputTarget::Kind::Log: return "log";
    case OutputTarget::Kind::File: return t.path.string();
  }
  return "inherit";
}

std::string rlimit_value(const Rlimit& limit) {
  if (limit.value == RLIM_INFINITY) return toml_quote("unlimited");
  const RlimitName* name = find_rlimit(limit.resource);
  if (name != nullptr && name->bytes && limit.value != 0) return toml_quote(format_size(limit.value));
  return std::to_string(limit.value);
}

// Keys may need quoting in TOML; bare keys are letters, digits, '_' and '-'.
std::string toml_key(std::string_view key) {
  for (char c : key)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return toml_quote(key);
  return key.empty() ? toml_quote(key) : std::string(key);
}

void write_pool(Writer& w, const PoolConfig& p) {
  w.header("pools." + toml_key(p.name));
  w.raw("command", string_array(p.command));
  w.str("dispatch", to_string(p.dispatch));
  std::vector<std::string> listen;
  for (const auto& a : p.listen) listen.push_back(a.text);
  w.raw("listen", string_array(listen));
  if (p.dynamic) {
    w.num("min_workers", static_cast<std::uint64_t>(p.min_workers));
    w.num("max_workers", static_cast<std::uint64_t>(p.max_workers));
    w.num("spare_workers", static_cast<std::uint64_t>(p.spare_workers));
    w.duration("idle_timeout", p.idle_timeout);
  } else {
    w.num("workers", static_cast<std::uint64_t>(p.workers));
  }
  w.num("max_inflight", static_cast<std::uint64_t>(p.max_inflight));
  w.str("keepalive", to_string(p.keepalive));
  w.duration("keepalive_timeout", p.keepalive_timeout);
  w.num("max_parked", static_cast<std::uint64_t>(p.max_parked));
  w.str("balance", to_string(p.balance));
  w.num("queue_limit", static_cast<std::uint64_t>(p.queue_limit));
  w.duration("queue_timeout", p.queue_timeout);
  w.num("backlog", static_cast<std::uint64_t>(p.backlog));
  w.str("ready", to_string(p.ready));
  w.duration("ready_timeout", p.ready_timeout);
  w.duration("watchdog", p.watchdog);
  w.duration("request_timeout", p.request_timeout);
  w.str("timeout_signal", signal_name(p.timeout_signal));
  w.num("max_requests", p.max_requests);
  w.num("max_requests_jitter", p.max_requests_jitter);
  w.str("max_memory", format_size(p.max_memory));
  w.duration("restart_delay", p.restart_delay);
  w.duration("restart_delay_max", p.restart_delay_max);
  w.num("flap_restarts", static_cast<std::uint64_t>(p.flap_restarts));
  w.duration("flap_window", p.flap_window);
  w.duration("graceful_timeout", p.graceful_timeout);
  w.str("stop_signal", signal_name(p.stop_signal));
  w.str("isolate", to_string(p.isolate));
  w.str("user", p.user);
  w.str("group", p.group);
  w.str("cwd", p.cwd.string());
  w.str("umask", p.umask ? format_octal_mode(*p.umask) : "");
  std::string env = "{";
  for (const auto& [k, v] : p.env) env += (env.size() > 1 ? ", " : " ") + toml_key(k) + " = " + value_quote(v);
  w.raw("env", env + (env.size() > 1 ? " }" : "}"));
  w.boolean("clear_env", p.clear_env);
  std::string rl = "{";
  for (const auto& [k, v] : p.rlimits) rl += (rl.size() > 1 ? ", " : " ") + k + " = " + rlimit_value(v);
  w.raw("rlimits", rl + (rl.size() > 1 ? " }" : "}"));
  w.str("stdout", output_target(p.stdout_target));
  w.str("stderr", output_target(p.stderr_target));
}

}  // namespace

std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string to_toml(const Config& config) {
  Writer w;
  const SupervisorConfig& s = config.supervisor;
  w.header("supervisor");
  w.str("control_socket", s.control_socket.string());
  w.str("control_mode", format_octal_mode(s.control_mode));
  w.str("control_group", s.control_group);
  w.str("log_level", s.log_level);
  w.str("log_format", to_string(s.log_format));
  w.str("log_file", s.log_file.string());
  w.str("access_log", s.access_log.string());
  w.str("access_log_format", to_string(s.access_log_format));
  w.duration("shutdown_timeout", s.shutdown_timeout);
  w.str("metrics_listen", s.metrics_listen);
  // The pools of included files are printed in place of the include, so the printout is
  // one self-contained file; a comment says where each came from.
  for (const auto& pool : config.pools) {
    if (!pool.file.empty() && pool.file != config.file) w.comment("from " + pool.file.string());
    write_pool(w, pool);
  }
  return w.take();
}

}  // namespace forkpool::config
