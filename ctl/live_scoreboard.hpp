// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's scoreboard attached read-only in this process: one `scoreboard` request on
// a fresh connection, then reads from shared memory with no further traffic.

#include <cstdint>
#include <string>
#include <vector>

#include "ctl/client.hpp"
#include "shm/attach.hpp"

namespace forkpool::ctl {

struct LiveScoreboard {
  shm::AttachedScoreboard board;
  std::vector<std::string> pools;     // names by pool index
  std::vector<std::uint64_t> epochs;  // per slot, the epoch of the page attached
};

// Attaches to what `client` is sent. Throws ConnectionError (including for a scoreboard
// that fails validation) or ReplyError.
LiveScoreboard attach_live_scoreboard(Client& client, Timeout timeout = kDefaultReplyTimeout);

// Connects to `socket`, attaches, and closes the connection again.
LiveScoreboard open_live_scoreboard(const std::string& socket,
                                    Timeout timeout = kDefaultReplyTimeout);

// True when some slot's page was replaced since it was attached (a worker restarted), so
// the descriptors should be fetched again.
bool has_stale_pages(const shm::ScoreboardSnapshot& snapshot, std::size_t attached_pages);

}  // namespace forkpool::ctl
