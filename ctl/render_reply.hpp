// SPDX-License-Identifier: Apache-2.0
#pragma once
// Human text for the replies that are not tables: events and the acknowledgements of
// commands (scale, restart, ...), metrics and version.

#include <nlohmann/json.hpp>
#include <string>

namespace forkpool::ctl {

// One event line: "TIME  EVENT  POOL[WORKER]  pid PID  message  key=value ...".
std::string render_event(const nlohmann::json& event, bool colour);

// The reply to `cmd`, ending in '\n' unless empty. `request` is what was sent, to say what
// was done when the master's reply carries no message.
std::string render_reply(const nlohmann::json& request, const nlohmann::json& reply);

}  // namespace forkpool::ctl
