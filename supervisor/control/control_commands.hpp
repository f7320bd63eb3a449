// SPDX-License-Identifier: Apache-2.0
#pragma once
// The commands of the control socket (SPEC section 6): argument checks, the action, the
// reply. What they act on is reached through ControlTarget, which the master provides.

#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "shm/mapping.hpp"
#include "supervisor/control/control_server.hpp"
#include "supervisor/observe/status_model.hpp"

namespace forkpool::supervisor {

class Pool;

class ControlTarget {
 public:
  virtual ~ControlTarget() = default;
  virtual StatusModel status_model() = 0;
  virtual Pool* find_pool(std::string_view name) = 0;
  virtual std::vector<std::string> pool_names() const = 0;
  virtual void request_shutdown() = 0;
  // Read-only descriptors of the main region, then of every slot page; `info` gets
  // slots, epochs, pools. The caller closes them once sent.
  virtual std::vector<shm::OwnedFd> scoreboard_fds(nlohmann::json& info) = 0;
  // Re-reads the configuration file (SPEC section 7). The reply: ok with generation,
  // summary, pools and supervisor changes; or ok false with error and errors.
  virtual nlohmann::json reload(std::string_view trigger) = 0;
  // Replaces the running binary in place (SPEC section 7, docs/upgrade.md). Answers
  // `client` itself: a refusal, or "upgrading" just before the exec (and a second line
  // if the exec failed).
  virtual void upgrade(std::string_view trigger, ControlClient* client) = 0;
};

// Control protocol version, reported by `version`; bumped on incompatible changes.
inline constexpr int kControlProtocol = 1;

void run_command(ControlTarget& target, ControlClient& client, const nlohmann::json& request);

}  // namespace forkpool::supervisor
