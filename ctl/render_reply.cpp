// SPDX-License-Identifier: Apache-2.0
#include "ctl/render_reply.hpp"

#include <fmt/format.h>

#include <set>

#include "ctl/format.hpp"
#include "ctl/json_access.hpp"

namespace forkpool::ctl {

namespace {

Colour event_colour(std::string_view name) {
  if (name.find("exit") != std::string_view::npos || name.find("kill") != std::string_view::npos ||
      name.find("timeout") != std::string_view::npos ||
      name.find("fail") != std::string_view::npos || name.find("flap") != std::string_view::npos) {
    return Colour::Red;
  }
  if (name.find("spawn") != std::string_view::npos ||
      name.find("ready") != std::string_view::npos) {
    return Colour::Green;
  }
  if (name.rfind("pool.", 0) == 0 || name.find("reload") != std::string_view::npos)
    return Colour::Cyan;
  return Colour::None;
}

// Fields other than `known`, as " key=value".
std::string extras(const nlohmann::json& j, const std::set<std::string, std::less<>>& known) {
  std::string out;
  if (!j.is_object()) return out;
  for (const auto& [key, value] : j.items()) {
    if (known.count(key) != 0) continue;
    out += " " + base::printable(key) + "=" + display_text(value);
  }
  return out;
}

// What a reload changed: one line per pool that changed, then the rest counted.
std::string render_reload(const nlohmann::json& reply) {
  std::string out = fmt::format("reloaded: configuration generation {}\n", count_text(reply, "generation"));
  std::size_t unchanged = 0;
  if (const auto& pools = field(reply, "pools"); pools.is_array()) {
    for (const auto& p : pools) {
      const std::string change = str_field(p, "change");
      if (change == "unchanged") {
        ++unchanged;
        continue;
      }
      std::string keys;
      if (const auto& k = field(p, "keys"); k.is_array())
        for (const auto& key : k) keys += (keys.empty() ? "" : ", ") + display_text(key);
      const char* verb = change == "in-place" ? "changed in place" : change == "replace" ? "workers replaced (rolling)"
                         : change == "added"  ? "added"
                         : change == "removed" ? "removed (draining)"
                                               : change.c_str();
      out += fmt::format("  pool {:<16} {}{}\n", str_field(p, "name"), verb, keys.empty() ? "" : ": " + keys);
    }
  }
  out += fmt::format("  {} pool(s) unchanged\n", unchanged);
  std::string supervisor;
  if (const auto& s = field(reply, "supervisor"); s.is_array())
    for (const auto& key : s) supervisor += (supervisor.empty() ? "" : ", ") + display_text(key);
  if (!supervisor.empty()) out += "  supervisor: " + supervisor + "\n";
  return out;
}

}  // namespace

std::string render_event(const nlohmann::json& event, bool colour) {
  const std::string name = str_field(event, "event", "?");
  std::string subject = str_field(event, "pool");
  if (const auto& w = field(event, "worker"); w.is_number()) subject += "[" + w.dump() + "]";
  std::string out = fmt::format("{}  {}  {}", str_field(event, "time", "-"),
                                paint(fmt::format("{:<14}", name), event_colour(name), colour),
                                subject.empty() ? "-" : subject);
  if (const auto pid = u64_field(event, "pid"); pid != 0) out += fmt::format("  pid {}", pid);
  // The message says what the other fields hold (they are for --json); without one, show them.
  // A line break (a refused reload's list of errors) continues on an indented line, as in
  // the master's text log, so no line of a message can pass for an event of its own.
  if (const auto& msg = field(event, "message"); msg.is_string() && !msg.get<std::string>().empty())
    out += "  " + base::printable_lines(msg.get<std::string>());
  else
    out += extras(event, {"time", "event", "pool", "worker", "pid", "message"});
  return out + "\n";
}

std::string render_reply(const nlohmann::json& request, const nlohmann::json& reply) {
  const std::string cmd = str_field(request, "cmd");
  if (cmd == "metrics") {
    // The exposition's own lines, from the master's numbers and configured names.
    const auto& raw = field(reply, "text");
    std::string text = raw.is_string() ? raw.get<std::string>() : "";
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    return text;
  }
  if (cmd == "version") {
    return fmt::format("forkpool {} (worker protocol {}, control protocol {})\n",
                       str_field(reply, "version", "?"), count_text(reply, "protocol"),
                       count_text(reply, "control"));
  }
  if (cmd == "reload") return render_reload(reply);
  if (const auto msg = str_field(reply, "message"); !msg.empty()) return msg + "\n";
  // No message from the master: say what was asked, and anything else it told us.
  std::string what = cmd;
  for (const char* key : {"pool", "worker", "workers", "signal", "level"}) {
    if (const auto& v = field(request, key); !v.is_null()) {
      what += " " + display_text(v);
    }
  }
  return what + ": ok" + extras(reply, {"ok", "message"}) + "\n";
}

}  // namespace forkpool::ctl
