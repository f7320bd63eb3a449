// SPDX-License-Identifier: Apache-2.0
#pragma once
// What "done" means for each command that changes something, read from status replies
// (wait.hpp). A new waiting command (upgrade) adds its plan to wait_plan().

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ctl/wait.hpp"

namespace forkpool::ctl {

// The plan for `request`, which the master answered with `reply` (ok); `before` is the
// status taken just before the request was sent. nullopt: nothing to wait for.
std::optional<WaitPlan> wait_plan(const nlohmann::json& request, const nlohmann::json& reply,
                                  const nlohmann::json& before);

// Done when every plan is done. A plan that failed does not end the wait: the others go on
// until each is done or failed too, and then it is failed, with every plan's outcome in
// Progress::parts.
WaitPlan all_of(std::string what, std::vector<WaitPlan> plans);

// The pool named `name` in a status reply, or null.
const nlohmann::json& pool_of(const nlohmann::json& status, const std::string& name);

}  // namespace forkpool::ctl
