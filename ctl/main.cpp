// SPDX-License-Identifier: Apache-2.0
// forkpoolctl: the command line only; commands.cpp does the work.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "config/suggest.hpp"
#include "ctl/client.hpp"
#include "ctl/commands.hpp"
#include "base/version.h"  // generated from project(VERSION)

namespace {

using nlohmann::json;

// "TERM", "SIGTERM", "term", "9": a name or number, sent to the master as written
// (upper-cased); the master resolves it and rejects unknown names.
std::string check_signal(const std::string& s) {
  if (s.empty()) return "empty signal";
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-') {
      return "not a signal name or number: " + s;
    }
  }
  return "";
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// --timeout: a number of seconds ("5", "0.5", "1e3"), more than 0 and at most a year, so that
// the deadline in milliseconds cannot overflow. CLI::PositiveNumber said "Value 0 not in range
// 0.000000 to 1797693...", printing DBL_MAX in full.
constexpr double kMaxTimeoutSeconds = 365.0 * 24 * 3600;

std::string check_timeout(const std::string& text) {
  double seconds = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, seconds);
  if (text.empty() || ec != std::errc{} || stop != end || !std::isfinite(seconds) || seconds <= 0)
    return "expected a number of seconds greater than 0, got '" + text + "'";
  if (seconds > kMaxTimeoutSeconds) return "expected at most 31536000 seconds (a year), got '" + text + "'";
  return "";
}

// The first word that is not an option or an option's value: the command as typed.
std::optional<std::string> typed_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") return i + 1 < argc ? std::optional<std::string>(argv[i + 1]) : std::nullopt;
    if (a == "-s" || a == "--socket" || a == "-c" || a == "--config" || a == "--timeout") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] == '-') continue;
    return a;
  }
  return std::nullopt;
}

// The command list of the help text: "  NAME  description" lines, in the app's order.
std::string command_list(const CLI::App& app) {
  std::string out = "Commands:\n";
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    std::string name = sub->get_name();
    name.resize(std::max<std::size_t>(name.size(), 10), ' ');
    out += "  " + name + "  " + sub->get_description() + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using forkpool::ctl::Invocation;
  CLI::App app{"Control a running forkpool master over its control socket."};
  app.name("forkpoolctl");
  app.require_subcommand(1, 1);
  app.fallthrough();  // -s and --json also after the command
  app.set_version_flag("--version", "forkpoolctl " FORKPOOL_VERSION);

  Invocation inv;
  std::optional<double> timeout_s;
  bool no_wait = false;
  app.add_option("-s,--socket", inv.socket,
                 "control socket (default: control_socket of -c CONFIG, else $FORKPOOL_SOCKET, else "
                 "control_socket of ./forkpool.toml, else of /etc/forkpool/forkpool.toml, else "
                 "/run/forkpool/forkpool.sock)");
  app.add_option("-c,--config", inv.config, "the master's config file, to read control_socket from");
  app.add_flag("--json", inv.json,
               "print the master's replies as received, one JSON object a line");
  app.add_option("--timeout", timeout_s,
                 "seconds to wait: for a reply (default 5), and for restart, stop, start, scale and reload "
                 "to be done and upgrade's checks (default 120)")
      ->check(check_timeout);
  app.add_flag("--no-wait", no_wait,
               "restart, stop, start, scale, reload: return once the master accepted the request");

  // Worker numbers and sizes are decimal: CLI11 reads 010 as octal 8 and 0x1 as 1, which
  // would signal or restart another worker than the one typed. Leading zeros are dropped.
  const CLI::Validator decimal(
      [](std::string& text) -> std::string {
        if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
          return "'" + text + "' is not a decimal number";
        text.erase(0, std::min(text.find_first_not_of('0'), text.size() - 1));
        return {};
      },
      "DECIMAL");

  std::optional<json> request;
  auto simple = [&](const char* name, const char* help) {
    auto* sub = app.add_subcommand(name, help);
    sub->callback([&request, name] { request = json{{"cmd", name}}; });
    return sub;
  };

  std::string pool;
  unsigned workers = 0;
  std::optional<unsigned> worker;
  std::string signal_name;
  std::string level;
  bool once = false;
  unsigned interval_ms = 250;

  auto* status = app.add_subcommand("status", "pools, workers, counters and latency percentiles");
  status->add_option("POOL", pool, "only this pool");
  status->callback([&] {
    request = json{{"cmd", "status"}};
    if (!pool.empty()) (*request)["pool"] = pool;
  });

  auto* top = app.add_subcommand("top", "live full-screen view of the scoreboard (q quits)");
  top->add_flag("--once", once, "print one frame and exit (also when stdout is not a terminal)");
  top->add_option("--interval", interval_ms, "refresh period in milliseconds")
      ->check(CLI::Range(50u, 60000u));

  simple("events",
         "stream events (spawn, ready, exit, kill, scale, reload, ...) until interrupted");

  auto* scale = app.add_subcommand("scale", "change a pool's number of workers");
  scale->add_option("POOL", pool, "pool name")->required();
  scale->add_option("N", workers, "new number of workers")->required()->transform(decimal);
  scale->callback([&] { request = json{{"cmd", "scale"}, {"pool", pool}, {"workers", workers}}; });

  auto* restart = app.add_subcommand(
      "restart", "rolling restart of a pool, of one worker, or of every pool (all, or no POOL)");
  restart->add_option("POOL", pool, "pool name, or all (the default)");
  restart->add_option("WORKER", worker, "worker number (0..N-1)")->transform(decimal);
  restart->callback([&] {
    request = json{{"cmd", "restart"}};
    if (!pool.empty()) (*request)["pool"] = pool;
    if (worker) (*request)["worker"] = *worker;
  });

  for (const char* name : {"stop", "start"}) {
    auto* sub = app.add_subcommand(name, std::string(name) == "stop"
                                             ? "drain and stop a pool, or every pool (all, or no POOL)"
                                             : "start a pool (also clears failed), or every pool (all, or no POOL)");
    sub->add_option("POOL", pool, "pool name, or all (the default)");
    sub->callback([&request, &pool, name] {
      request = json{{"cmd", name}};
      if (!pool.empty()) (*request)["pool"] = pool;
    });
  }

  auto* kill = app.add_subcommand("kill", "send a signal to one worker");
  kill->add_option("POOL", pool, "pool name")->required();
  kill->add_option("WORKER", worker, "worker number (0..N-1)")->required()->transform(decimal);
  kill->add_option("SIGNAL", signal_name, "signal name or number (default TERM)")
      ->check(check_signal);
  kill->callback([&] {
    request = json{{"cmd", "kill"}, {"pool", pool}, {"worker", *worker}};
    request->emplace("signal", signal_name.empty() ? "TERM" : upper(signal_name));
  });

  simple("reload", "re-read the config file (same as SIGHUP)");
  simple("shutdown", "graceful stop of the master (same as SIGTERM)");
  simple("upgrade", "replace the master's binary in place, workers untouched (same as SIGUSR2)");

  auto* log_level = app.add_subcommand("log-level", "change the master's log level");
  log_level->add_option("LEVEL", level, "trace debug info warn error critical off")
      ->required()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  log_level->callback([&] { request = json{{"cmd", "log-level"}, {"level", level}}; });

  simple("metrics", "Prometheus text exposition");
  simple("version", "the master's version and protocol numbers");

  std::string help_topic;
  auto* help = app.add_subcommand("help", "this list, or the help of one command");
  help->add_option("COMMAND", help_topic, "a command");

  // An unknown command: the closest one, as the master does, instead of CLI11's
  // "arguments were not expected".
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  app.footer("forkpoolctl help COMMAND shows a command's arguments.");
  auto unknown = [&](const std::string& word) {
    std::string message = "forkpoolctl: unknown command \"" + word + "\"";
    if (auto best = forkpool::config::closest_match(word, names)) message += "; did you mean \"" + *best + "\"?";
    std::cerr << message << "\n" << command_list(app);
    return forkpool::ctl::kExitUsage;
  };
  if (auto word = typed_command(argc, argv); word && std::find(names.begin(), names.end(), *word) == names.end())
    return unknown(*word);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : forkpool::ctl::kExitUsage;
  }
  if (help->parsed()) {
    if (help_topic.empty()) {
      // app.help() would show the help of the `help` command itself, the one parsed.
      std::cout << app.get_formatter()->make_help(&app, "forkpoolctl", CLI::AppFormatMode::Normal);
      return 0;
    }
    if (std::find(names.begin(), names.end(), help_topic) == names.end()) return unknown(help_topic);
    std::cout << app.get_subcommand(help_topic)->help();
    return 0;
  }
  if (timeout_s) {
    // Rounded up: 0.0001 is a short wait, not none.
    inv.timeout = std::chrono::milliseconds(static_cast<long long>(std::ceil(*timeout_s * 1000.0)));
    inv.wait_timeout = inv.timeout;
  }
  inv.wait = !no_wait;

  try {
    if (top->parsed()) {
      if (inv.json) {
        std::cerr << "forkpoolctl: top has no --json output; use `forkpoolctl --json status`\n";
        return forkpool::ctl::kExitUsage;
      }
      return forkpool::ctl::run_top_command(inv, once, std::chrono::milliseconds(interval_ms));
    }
    if (!request) return forkpool::ctl::kExitUsage;  // require_subcommand makes this unreachable
    return forkpool::ctl::run_request(inv, *request);
  } catch (const std::exception& e) {
    std::cerr << "forkpoolctl: " << e.what() << "\n";
    return forkpool::ctl::kExitUsage;
  }
}
