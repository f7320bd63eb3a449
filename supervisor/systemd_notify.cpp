// SPDX-License-Identifier: Apache-2.0
#include "supervisor/systemd_notify.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>

#include "supervisor/observe/log.hpp"
#include "supervisor/systemd_protocol.hpp"

namespace forkpool::supervisor {

SystemdNotify::SystemdNotify(uv_loop_t* loop) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  // Ping at half the interval, as sd_watchdog_enabled(3) recommends. This is the only
  // periodic timer of an idle master, and only when systemd asked for it.
  if (const std::uint64_t usec = systemd::watchdog_usec(); usec > 0) {
    watchdog_ = std::make_unique<Timer>(loop);
    const auto every = std::chrono::milliseconds(std::max<std::uint64_t>(1, usec / 2000));
    watchdog_->start_repeating(every, [] { systemd::notify("WATCHDOG=1"); });
    log::info("systemd.watchdog", "pinging the systemd watchdog every {}ms", every.count());
  }
}

void SystemdNotify::ready() {
  if (!enabled_ || ready_sent_) return;
  ready_sent_ = true;
  systemd::notify("READY=1");
  log::info("systemd.ready", "told systemd the service is ready");
}

void SystemdNotify::status(const std::string& text) {
  if (!enabled_ || text == last_status_) return;
  last_status_ = text;
  systemd::notify("STATUS=" + text);
}

void SystemdNotify::stopping() {
  if (enabled_) systemd::notify("STOPPING=1");
}

void SystemdNotify::reloading() {
  if (!enabled_) return;
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const std::uint64_t usec = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
  systemd::notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void SystemdNotify::reloaded() {
  if (enabled_ && ready_sent_) systemd::notify("READY=1");
}

void SystemdNotify::stop_watchdog() {
  if (watchdog_) watchdog_->stop();
}

}  // namespace forkpool::supervisor
