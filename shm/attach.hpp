// SPDX-License-Identifier: Apache-2.0
#pragma once
// Read-only access to a running master's scoreboard from another process (forkpoolctl
// top): given the region fd and the slot page fds (received over the control socket),
// validate before reading anything, then map everything read-only.

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "shm/mapping.hpp"
#include "shm/reader.hpp"
#include "shm/region.hpp"

namespace forkpool::shm {

// A scoreboard that cannot be read: wrong magic or version, inconsistent sizes, unsealed
// or short memfds, or a failed syscall. what() is one line fit for an operator.
class AttachError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class AttachedScoreboard {
 public:
  // `slot_fds` holds one fd per slot for the first slot_fds.size() slots (the ones the
  // master has made pages for), in slot order; the other slots are read without activity. `page_epochs`, when given, are
  // the epochs the master sent with those fds (Scoreboard::slot_epoch), so a page that has
  // since been replaced is reported as stale rather than read. The fds are not kept.
  static AttachedScoreboard attach(int region_fd, std::span<const int> slot_fds,
                                   std::span<const std::uint64_t> page_epochs = {});

  AttachedScoreboard(AttachedScoreboard&&) = default;
  AttachedScoreboard& operator=(AttachedScoreboard&&) = default;

  std::uint32_t slot_count() const { return reader_.slot_count(); }
  std::uint32_t pool_count() const { return reader_.pool_count(); }
  ScoreboardSnapshot snapshot() { return reader_.snapshot(); }

 private:
  AttachedScoreboard() = default;

  Mapping region_;
  SlotPages pages_;
  Reader reader_;
};

}  // namespace forkpool::shm
