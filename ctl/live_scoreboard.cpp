// SPDX-License-Identifier: Apache-2.0
#include "ctl/live_scoreboard.hpp"

#include "shm/snapshot.hpp"

namespace forkpool::ctl {

LiveScoreboard attach_live_scoreboard(Client& client, Timeout timeout) {
  ScoreboardFds fds = fetch_scoreboard(client, timeout);
  std::vector<int> slot_fds;
  slot_fds.reserve(fds.slots.size());
  for (const auto& fd : fds.slots) slot_fds.push_back(fd.get());
  try {
    auto board = shm::AttachedScoreboard::attach(fds.region.get(), slot_fds, fds.epochs);
    return LiveScoreboard{std::move(board), std::move(fds.pools), std::move(fds.epochs)};
  } catch (const shm::AttachError& e) {
    throw ConnectionError("control socket " + client.path() + ": " + e.what());
  }
}

LiveScoreboard open_live_scoreboard(const std::string& socket, Timeout timeout) {
  Client client = Client::connect(socket, timeout);
  return attach_live_scoreboard(client, timeout);
}

bool has_stale_pages(const shm::ScoreboardSnapshot& snapshot, std::size_t attached_pages) {
  for (const auto& w : snapshot.workers) {
    if ((w.anomalies & shm::kAnomalyStalePage) != 0) return true;
    // A slot first used after the attach (a scale-up or reload): its page is not ours yet.
    if (w.slot >= attached_pages && w.pid != 0) return true;
  }
  return false;
}

}  // namespace forkpool::ctl
