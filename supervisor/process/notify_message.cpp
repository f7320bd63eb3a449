// SPDX-License-Identifier: Apache-2.0
#include "supervisor/process/notify_message.hpp"

namespace forkpool::supervisor {

NotifyMessage parse_notify_message(std::string_view text) {
  NotifyMessage m;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    if (line == "READY=1") m.ready = true;
    else if (line == "WATCHDOG=1") m.watchdog = true;
    else if (line == "STOPPING=1") m.stopping = true;
    else if (line == "BARRIER=1") m.barrier = true;
    else if (line.starts_with("STATUS=")) m.status = std::string(line.substr(7, kMaxNotifyStatus));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return m;
}

}  // namespace forkpool::supervisor
