// forkpoolctl: the command line only; commands.cpp does the work.

#include <CLI/CLI.hpp>
#include <cctype>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

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

}  // namespace

int main(int argc, char** argv) {
  using forkpool::ctl::Invocation;
  CLI::App app{"Control a running forkpool master over its control socket."};
  app.name("forkpoolctl");
  app.require_subcommand(1, 1);
  app.fallthrough();  // -s and --json also after the command
  app.set_version_flag("--version", "forkpoolctl " FORKPOOL_VERSION);

  Invocation inv;
  double timeout_s = 5.0;
  app.add_option(
      "-s,--socket", inv.socket,
      "control socket (default: $FORKPOOL_SOCKET, else control_socket of ./forkpool.toml, "
      "else ./forkpool.sock)");
  app.add_flag("--json", inv.json,
               "print the master's replies as received, one JSON object a line");
  app.add_option("--timeout", timeout_s, "seconds to wait for a reply (not for events/top)")
      ->check(CLI::PositiveNumber);

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
  scale->add_option("N", workers, "new number of workers")->required();
  scale->callback([&] { request = json{{"cmd", "scale"}, {"pool", pool}, {"workers", workers}}; });

  auto* restart = app.add_subcommand("restart", "rolling restart of a pool, or of one worker");
  restart->add_option("POOL", pool, "pool name")->required();
  restart->add_option("WORKER", worker, "worker number (0..N-1)");
  restart->callback([&] {
    request = json{{"cmd", "restart"}, {"pool", pool}};
    if (worker) (*request)["worker"] = *worker;
  });

  for (const char* name : {"stop", "start"}) {
    auto* sub =
        app.add_subcommand(name, std::string(name) == "stop" ? "drain and stop a pool"
                                                             : "start a pool (also clears failed)");
    sub->add_option("POOL", pool, "pool name")->required();
    sub->callback([&request, &pool, name] { request = json{{"cmd", name}, {"pool", pool}}; });
  }

  auto* kill = app.add_subcommand("kill", "send a signal to one worker");
  kill->add_option("POOL", pool, "pool name")->required();
  kill->add_option("WORKER", worker, "worker number (0..N-1)")->required();
  kill->add_option("SIGNAL", signal_name, "signal name or number (default TERM)")
      ->check(check_signal);
  kill->callback([&] {
    request = json{{"cmd", "kill"}, {"pool", pool}, {"worker", *worker}};
    request->emplace("signal", signal_name.empty() ? "TERM" : upper(signal_name));
  });

  simple("reload", "re-read the config file (same as SIGHUP)");
  simple("shutdown", "graceful stop of the master (same as SIGTERM)");

  auto* log_level = app.add_subcommand("log-level", "change the master's log level");
  log_level->add_option("LEVEL", level, "trace debug info warn error critical off")
      ->required()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  log_level->callback([&] { request = json{{"cmd", "log-level"}, {"level", level}}; });

  simple("metrics", "Prometheus text exposition");
  simple("version", "the master's version and protocol numbers");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : forkpool::ctl::kExitUsage;
  }
  inv.timeout = std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000.0));

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
