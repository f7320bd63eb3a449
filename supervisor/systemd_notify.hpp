// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master as a systemd Type=notify service: READY=1, STATUS=, STOPPING=1 and
// WATCHDOG=1 pings. Does nothing when NOTIFY_SOCKET is not set.

#include <uv.h>

#include <memory>
#include <string>

#include "supervisor/uv_handles.hpp"

namespace forkpool::supervisor {

class SystemdNotify {
 public:
  explicit SystemdNotify(uv_loop_t* loop);

  bool enabled() const { return enabled_; }
  void ready();
  void status(const std::string& text);  // sent only when it changed
  void stopping();
  // A reload begins (RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload wants) and
  // ends (READY=1 again, whether it was applied or refused).
  void reloading();
  void reloaded();
  void stop_watchdog();

 private:
  bool enabled_ = false;
  bool ready_sent_ = false;
  std::string last_status_;
  std::unique_ptr<Timer> watchdog_;
};

}  // namespace forkpool::supervisor
