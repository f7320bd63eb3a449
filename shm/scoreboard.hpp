// SPDX-License-Identifier: Apache-2.0
#pragma once
// The master's side of the scoreboard: creates the shared memory, writes every
// master-owned field (slot lifecycle, pool counters, histograms) and reads snapshots.
// Single-threaded by design, like the master's loop: each field has one writer, so no
// method here needs a read-modify-write on shared memory.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

#include "shm/layout.hpp"
#include "shm/mapping.hpp"
#include "shm/pool_state.hpp"
#include "shm/reader.hpp"
#include "shm/region.hpp"
#include "shm/snapshot.hpp"

namespace forkpool::shm {

enum class PoolCounter {
  Accepted,
  Dispatched,
  Completed,
  QueueTimeouts,
  Spawned,
  Crashed,
  Killed,
  Recycled,
  Lost,
  Closed,
  SpawnFailed,
  Parked,
  Resumed,
  KeepaliveTimeouts,
  KeepaliveClosed,
  ParkedClosed,
  ProtocolErrors,
};

class Scoreboard {
 public:
  // Creates the main region with room for `pool_count` pools and `slot_count` slots (a
  // reload may add pools and workers up to that room). A slot's page memfd is made when
  // the slot is first used. Throws std::system_error naming the failing syscall; this is
  // the only method that throws.
  Scoreboard(std::uint32_t pool_count, std::uint32_t slot_count);

  // Room for a configuration: pools and slots it needs, doubled, with a floor, so reloads
  // that add pools or workers rarely hit the limit (unused room costs address space and
  // no memory: untouched pages of a memfd are never allocated).
  static std::uint32_t pool_room(std::size_t pools);

  // A binary upgrade (supervisor/upgrade): the scoreboard of the previous image, taken
  // over as it is, so no counter is reset. `region` is the main region's memfd,
  // `slot_fds[i]` slot i's page memfd (empty for slots never paged), `slots_used` and
  // `pools_used` which slots and pool blocks are taken. Throws std::system_error
  // (mmap) or std::runtime_error (a header that does not check out).
  static Scoreboard adopt(OwnedFd region, std::vector<OwnedFd> slot_fds, std::vector<bool> slots_used,
                          std::vector<bool> pools_used);
  bool slot_used(std::uint32_t slot) const { return slot < slot_used_.size() && slot_used_[slot]; }
  bool pool_used(std::uint32_t pool) const { return pool < pool_used_.size() && pool_used_[pool]; }
  static std::uint32_t slot_room(std::size_t slots);
  // Movable: the Reader points into the mappings, which do not move with the object.
  Scoreboard(Scoreboard&&) = default;
  Scoreboard& operator=(Scoreboard&&) = default;

  std::uint32_t pool_count() const { return pool_count_; }
  std::uint32_t slot_count() const { return pages_.count(); }
  // Slots [0, slots_paged()) have a page memfd; higher slots were never used yet.
  std::uint32_t slots_paged() const { return paged_; }
  // Makes the pages of the first `count` slots now instead of at first use (for a reader
  // that wants every slot's fd at once, as the tests do). Returns the first error.
  std::error_code make_pages(std::uint32_t count);

  // --- Pool blocks, by name ---
  // A free block, zeroed and named, for a pool that starts; nullopt when every block is
  // taken. Blocks are released when a removed pool has finished draining.
  std::optional<std::uint32_t> add_pool(std::string_view name, std::uint32_t generation);
  void remove_pool(std::uint32_t pool);
  void set_pool_generation(std::uint32_t pool, std::uint32_t generation);
  std::uint32_t free_pools() const;

  // --- Slot allocation ---
  // The lowest free slot, with its page memfd made on first use. Lowest first keeps every
  // slot that has a page in the prefix [0, slots_paged()). Errors: no_space_on_device when
  // every slot is taken, else the memfd/mmap errno.
  std::error_code acquire_slot(std::uint32_t& slot);
  void release_slot(std::uint32_t slot);
  std::uint32_t free_slots() const;

  // The main region: for forkpoolctl (read-only attach) only, never for a worker.
  int region_fd() const { return region_fd_.get(); }
  // Slot `slot`'s page memfd, close-on-exec: the spawner dup2()s it into the worker as
  // FORKPOOL_SCOREBOARD_FD. Changes on every start_worker() after the first.
  int slot_fd(std::uint32_t slot) const { return slot < slot_fds_.size() ? slot_fds_[slot].get() : -1; }
  // The epoch whose page slot_fd() is, to send along with the fd to read-only readers.
  std::uint64_t slot_epoch(std::uint32_t slot) const;

  // --- Slot lifecycle (all master-written) ---
  void assign_slot(std::uint32_t slot, std::uint32_t pool, std::uint32_t worker_index);
  // Before fork: a fresh zeroed page for the new worker (so a descendant of the previous
  // worker still holding the old page cannot write into the new one), epoch + 1, state
  // Starting, pid 0. On failure to make a new page, the old one is zeroed and reused and
  // the error returned for the caller to log; the slot is usable either way.
  std::error_code start_worker(std::uint32_t slot, std::uint32_t generation);
  // After fork. `start_time_ns` is CLOCK_MONOTONIC.
  void set_pid(std::uint32_t slot, pid_t pid, std::int64_t start_time_ns);
  void mark_ready(std::uint32_t slot);
  void mark_stopping(std::uint32_t slot);
  void mark_exited(std::uint32_t slot, int wait_status);
  void mark_empty(std::uint32_t slot);  // scaled down: no worker will use the slot
  void set_usage(std::uint32_t slot, std::uint64_t rss_bytes, std::uint64_t cpu_time_us);
  // Master dispatch: the connections the master handed the worker and has not had back,
  // those it had back (DONE, PARK), and since when (CLOCK_MONOTONIC) `held` is above 0.
  // From the first call of an epoch, readers show these instead of the worker's page.
  void set_master_activity(std::uint32_t slot, std::uint32_t held, std::uint64_t handed_back,
                           std::int64_t held_since_ns);
  // The processes started for the slot's worker number after the first, as its pool
  // counts them (start_worker() counts reuses of this slot, which a replacement or another
  // pool's worker may have taken), and how the last of them that exited ended (raw wait
  // status, -1 if none has): the history of the worker number, not of the slot.
  void set_history(std::uint32_t slot, std::uint64_t restarts, int last_exit_status);
  // A process of the same worker number exited while this slot's worker runs on.
  void set_last_exit(std::uint32_t slot, int last_exit_status);
  // The newest configuration generation whose worker-side settings the worker runs: a
  // reload whose settings equal those it was started with keeps it under that number.
  void set_worker_generation(std::uint32_t slot, std::uint32_t generation);

  // --- Pool counters (all master-written) ---
  void set_pool_state(std::uint32_t pool, PoolState state);
  void set_pool_size(std::uint32_t pool, std::uint32_t size);
  void set_pool_bounds(std::uint32_t pool, std::uint32_t min, std::uint32_t max);
  // One scale decision of a dynamic pool: why, the size before and after, and when
  // (CLOCK_MONOTONIC).
  void record_scale(std::uint32_t pool, ScaleReason reason, std::uint32_t from, std::uint32_t to,
                    std::int64_t at_ns);
  void count(std::uint32_t pool, PoolCounter counter, std::uint64_t n = 1);
  void set_queued(std::uint32_t pool, std::uint64_t queued_now);  // raises queue_peak too
  void set_in_flight(std::uint32_t pool, std::uint64_t in_flight);
  void set_parked(std::uint32_t pool, std::uint64_t parked_now);
  void record_duration(std::uint32_t pool, std::uint64_t us);
  void record_queue_wait(std::uint32_t pool, std::uint64_t us);

  // --- Reading ---
  WorkerSnapshot read_worker(std::uint32_t slot) { return reader_.read_worker(slot); }
  PoolSnapshot read_pool(std::uint32_t pool) const { return reader_.read_pool(pool); }
  ScoreboardSnapshot snapshot() { return reader_.snapshot(); }

 private:
  Scoreboard() = default;  // for adopt()
  PoolBlock& pool_block(std::uint32_t pool);
  SlotRecord& record(std::uint32_t slot);
  std::error_code renew_page(std::uint32_t slot);
  void set_state(std::uint32_t slot, WorkerState state);

  std::uint32_t pool_count_ = 0;
  std::uint32_t paged_ = 0;
  std::uint32_t formatted_ = 0;  // slot records [0, formatted_) are started (record())
  std::vector<bool> slot_used_;
  std::vector<bool> pool_used_;
  OwnedFd region_fd_;
  Mapping region_;
  PoolBlock* pools_ = nullptr;
  SlotRecord* records_ = nullptr;
  std::vector<OwnedFd> slot_fds_;
  SlotPages pages_;
  Reader reader_;
};

}  // namespace forkpool::shm
