// SPDX-License-Identifier: Apache-2.0
#pragma once
// `forkpoolctl upgrade`: the master answers "upgrading" just before it execs the new
// binary, which ends the connection; this then reconnects and waits until the new image
// reports the upgrade (master.upgrades went up), and prints what runs now.

#include <string>

#include "ctl/client.hpp"
#include "ctl/commands.hpp"

namespace forkpool::ctl {

// `first` is the master's {"ok": true, "upgrading": true, ...} reply on `client`.
// Returns the exit status; prints the outcome (raw JSON lines with --json).
int finish_upgrade(const Invocation& inv, const std::string& socket, Client& client,
                   const Line& first);

}  // namespace forkpool::ctl
