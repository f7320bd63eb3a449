// SPDX-License-Identifier: Apache-2.0
#include "supervisor/run.hpp"

#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <functional>

#include "config/load.hpp"
#include "supervisor/observe/access_log.hpp"
#include "supervisor/master.hpp"
#include "supervisor/signal_queue.hpp"
#include "supervisor/observe/log.hpp"
#include "supervisor/upgrade/state_reader.hpp"

namespace forkpool::supervisor {

namespace {

int run_master(const config::Config& config, const std::function<std::unique_ptr<Master>()>& make) {
  try {
    log::setup({config.supervisor.log_level, config.supervisor.log_format, config.supervisor.log_file});
    access_log::setup({config.supervisor.access_log, config.supervisor.access_log_format});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "forkpool: %s\n", e.what());
    return 1;
  }
  try {
    std::unique_ptr<Master> master = make();
    // main() blocked every signal; the master's signalfd and its SIGCHLD handler are in
    // place now, so let the rest in, including any that arrived meanwhile: the signalfd's
    // signals stay blocked (it reads them, supervisor/signal_queue.hpp). Not the mask
    // inherited: a parent that blocked CHLD must not make the master deaf to it. Workers
    // start from an empty mask of their own (process/child_exec).
    const sigset_t read_by_signalfd = master_signal_set();
    ::pthread_sigmask(SIG_SETMASK, &read_by_signalfd, nullptr);
    return master->run();
  } catch (const upgrade::StateError& e) {
    // The previous image is gone: nothing can be handed back. Pre-flight checks the
    // format, so this is a state this binary should have been able to read.
    log::critical("master.upgrade_state_invalid", "cannot take over from the previous master: {}", e.what());
    return 1;
  } catch (const nlohmann::json::exception& e) {
    log::critical("master.upgrade_state_invalid",
                  "cannot take over from the previous master: a field of the state has the wrong type ({})", e.what());
    return 1;
  } catch (const std::exception& e) {
    log::critical("master.start_failed", "{}", e.what());
    return 1;
  }
}

}  // namespace

int run(config::Config config) {
  return run_master(config, [&] { return std::make_unique<Master>(std::move(config)); });
}

int run_upgraded(const std::filesystem::path& file, int upgrade_state_fd) {
  nlohmann::json state;
  config::Config config;
  // No log yet: its settings are in the configuration the state carries.
  try {
    base::OwnedFd fd(upgrade_state_fd);
    state = upgrade::read_state(fd.get());
    const nlohmann::json& text = upgrade::need(state, "config_text");
    if (!text.is_string()) throw upgrade::StateError("upgrade state: config_text is not a string");
    config = config::load_string(text.get<std::string>(), file);
  } catch (const upgrade::StateError& e) {
    std::fprintf(stderr, "forkpool: [master.upgrade_state_invalid] cannot take over from the previous master: %s\n",
                 e.what());
    return 1;
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics())
      std::fprintf(stderr, "forkpool: [master.upgrade_state_invalid] %s\n", d.to_string().c_str());
    return 1;
  }
  return run_master(config, [&] { return std::make_unique<Master>(std::move(config), state); });
}

}  // namespace forkpool::supervisor
