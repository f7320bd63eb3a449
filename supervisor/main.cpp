// SPDX-License-Identifier: Apache-2.0
// forkpool: the master. Parses the command line and hands over to check or run.

#include <fmt/format.h>
#include <malloc.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "config/diagnostics.hpp"
#include "config/load.hpp"
#include "config/print.hpp"
#include "shm/version.hpp"
#include "supervisor/command_line.hpp"
#include "supervisor/generation/listeners.hpp"
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
    for (const auto& d : e.diagnostics()) fmt::print(stderr, "{}\n", d.to_string());
    const std::size_t n = e.diagnostics().size();
    fmt::print(stderr, "{}: {} {}\n", file.string(), n, n == 1 ? "error" : "errors");
    return std::nullopt;
  }
}

void write_all(std::FILE* to, const std::string& text) { std::fwrite(text.data(), 1, text.size(), to); }

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

  // The heap: glibc's default moves every block of 128 KiB or more to a mapping of its own
  // and gives the top of the heap back at each free(), so each `status` of a large pool
  // (a reply and a model of ~250 KB each with 1,000 workers) mapped, faulted in and
  // unmapped its pages again: a third of its time. Blocks up to 1 MiB now stay in the heap
  // and up to 1 MiB free at its top is kept; the control server gives the rest back with
  // malloc_trim 10 s after the last large reply (ControlServer::trim_later).
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 20);

  const auto parsed = forkpool::supervisor::parse_command_line(argc, argv);
  if (!parsed.run) {
    restore();
    write_all(stdout, parsed.out);
    write_all(stderr, parsed.err);
    return parsed.exit_code;
  }
  const auto& line = *parsed.run;
  if (line.upgrade_info) {
    restore();
    std::string formats;
    for (auto f : forkpool::supervisor::upgrade::kReadableStateFormats)
      formats += (formats.empty() ? "" : ",") + std::to_string(f);
    // The scoreboard is handed over whole: an upgrade needs the same layout on both sides.
    fmt::print("{{\"version\":\"{}\",\"state_formats\":[{}],\"scoreboard_layout\":\"{}\"}}\n", forkpool::kVersion,
               formats, forkpool::shm::layout_version_string());
    return 0;
  }
  if (line.check_only) restore();
  std::filesystem::path file(line.config_file);
  if (line.config_file.empty()) {
    const auto found = forkpool::config::find_default_config();
    if (!found) {
      std::string tried;
      for (const auto& p : forkpool::config::config_search_paths())
        tried += "\n  " + (p.is_absolute() ? p : std::filesystem::absolute(p)).string();
      fmt::print(stderr, "forkpool: no config file found; tried:{}\ngive one with -c FILE\n", tried);
      return kExitConfig;
    }
    file = *found;
  }
  // The new image of a binary upgrade runs the configuration text the previous one ran.
  if (line.state_fd >= 0) return forkpool::supervisor::run_upgraded(file, line.state_fd);
  // Before the master opens anything that could sit where LISTEN_FDS says sockets are.
  if (!line.check_only) forkpool::supervisor::InheritedSockets::claim_at_start();
  auto config = load(file);
  if (!config) return kExitConfig;
  if (line.check_only) {
    write_all(stdout, forkpool::config::to_toml(*config));
    return 0;
  }
  return forkpool::supervisor::run(std::move(*config));
}
