// SPDX-License-Identifier: Apache-2.0
// forkpool: the master. Parses the command line and hands over to check or run.

#include <pthread.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>

#include "config/diagnostics.hpp"
#include "config/load.hpp"
#include "config/print.hpp"
#include "shm/version.hpp"
#include "supervisor/run.hpp"
#include "supervisor/upgrade/state_format.hpp"
#include "supervisor/version.hpp"

namespace {

constexpr int kExitConfig = 2;

// Loads the config, or prints every problem and a count line; the same for --check and
// for running, so an operator sees one format whichever way the file was read.
std::optional<forkpool::config::Config> load(const std::filesystem::path& file) {
  try {
    return forkpool::config::load_file(file);
  } catch (const forkpool::config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::cerr << d.to_string() << '\n';
    std::cerr << file.string() << ": " << e.diagnostics().size()
              << (e.diagnostics().size() == 1 ? " error" : " errors") << '\n';
    return std::nullopt;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // First of all: a signal that arrives before the loop's handlers exist (the master is
  // reading its config, binding its sockets) waits instead of taking its default action,
  // which for HUP, USR1 and TERM is death and for TTIN a stopped master. run() unblocks
  // them once the handlers are in place; the pending ones are handled then.
  sigset_t all, inherited;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &inherited);
  // Checking, --help, --version: nothing to protect; ^C works as usual.
  auto restore = [&inherited] { ::pthread_sigmask(SIG_SETMASK, &inherited, nullptr); };

  CLI::App app{"forkpool: a prefork worker-pool supervisor"};
  app.set_version_flag("--version", std::string("forkpool ") + forkpool::kVersion + " (worker protocol " +
                                        std::to_string(forkpool::kWorkerProtocol) + ")");
  std::string config_file;
  bool check_only = false;
  app.add_option("-c,--config", config_file,
                 "config file (default: ./forkpool.toml, then /etc/forkpool/forkpool.toml)");
  app.add_flag("--check", check_only, "validate the config, print the effective config and exit (0 ok, 2 errors)");
  // The binary upgrade (docs/upgrade.md): what a running master asks a new binary before
  // it execs it, and the flag the new image is started with.
  bool upgrade_info = false;
  app.add_flag("--upgrade-info", upgrade_info, "print the version and the upgrade state formats read, as JSON");
  int state_fd = -1;
  app.add_option(forkpool::supervisor::upgrade::kStateFdFlag, state_fd,
                 "(internal) take over from a running master whose state is in this descriptor")
      ->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    restore();
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitConfig;
  }
  if (upgrade_info) {
    restore();
    std::string formats;
    for (auto f : forkpool::supervisor::upgrade::kReadableStateFormats)
      formats += (formats.empty() ? "" : ",") + std::to_string(f);
    // The scoreboard is handed over whole: an upgrade needs the same layout on both sides.
    std::cout << "{\"version\":\"" << forkpool::kVersion << "\",\"state_formats\":[" << formats
              << "],\"scoreboard_layout\":\"" << forkpool::shm::layout_version_string() << "\"}\n";
    return 0;
  }
  if (check_only) restore();
  std::filesystem::path file(config_file);
  if (config_file.empty()) {
    const auto found = forkpool::config::find_default_config();
    if (!found) {
      std::string tried;
      for (const auto& p : forkpool::config::config_search_paths())
        tried += "\n  " + (p.is_absolute() ? p : std::filesystem::absolute(p)).string();
      std::cerr << "forkpool: no config file found; tried:" << tried
                << "\ngive one with -c FILE\n";
      return kExitConfig;
    }
    file = *found;
  }
  // The new image of a binary upgrade runs the configuration text the previous one ran.
  if (state_fd >= 0) return forkpool::supervisor::run_upgraded(file, state_fd);
  auto config = load(file);
  if (!config) return kExitConfig;
  if (check_only) {
    std::cout << forkpool::config::to_toml(*config);
    return 0;
  }
  return forkpool::supervisor::run(std::move(*config));
}
