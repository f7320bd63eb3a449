// SPDX-License-Identifier: Apache-2.0
#pragma once
// The `status` reply as text for people: a master line, per pool a few summary lines and a
// worker table. Reads only the reply; any field may be missing.

#include <nlohmann/json.hpp>
#include <string>

namespace forkpool::ctl {

std::string render_status(const nlohmann::json& reply, bool colour);

// One pool's summary lines and worker table (part of render_status).
std::string render_pool(const nlohmann::json& pool, bool colour);

// A worker's `last_exit` as shown in the table: "-" for none.
std::string last_exit_text(const nlohmann::json& last_exit);

}  // namespace forkpool::ctl
