// SPDX-License-Identifier: Apache-2.0
#pragma once
// The JSON form of a StatusModel: the `status` reply of the control socket, GET /status,
// and what forkpoolctl parses back. This header is shared with forkpoolctl, so it pulls in
// neither libuv nor spdlog.

#include <nlohmann/json.hpp>

#include <string>

#include "supervisor/observe/status_model.hpp"

namespace forkpool::supervisor {

// {"master": {...}, "pools": [{..., "workers": [...]}]} as documented in the control socket
// schema. Empty last_exit and status_text become null. Strings that are not valid UTF-8
// (a worker's STATUS= text is untrusted) are repaired with U+FFFD, so dump() never throws.
// The raw histograms are not part of the schema; their percentiles are.
// status_text is that document as text, written directly (a pool of 1,000 workers is
// answered in a few milliseconds), with "ok": true added when `ok`; status_json parses it.
std::string status_text(const StatusModel& model, bool ok = false);
nlohmann::json status_json(const StatusModel& model);

// The inverse. Missing keys, null and values of the wrong type leave the default, so a
// reply from an older or newer master still parses; it never throws on any JSON value.
StatusModel status_from_json(const nlohmann::json& json);

}  // namespace forkpool::supervisor
