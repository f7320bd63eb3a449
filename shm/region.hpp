// SPDX-License-Identifier: Apache-2.0
#pragma once
// Memory for the scoreboard: sealed memfds, the main region's header (formatting and
// validation), and a contiguous window of per-slot pages. Knows nothing about what the
// counters mean.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "base/clock.hpp"
#include "shm/layout.hpp"
#include "shm/mapping.hpp"

namespace forkpool::shm {

std::size_t system_page_size();

// memfd_create + ftruncate + seals against shrinking and growing (a worker that could
// shrink its slot memfd would make the master's next read of it die with SIGBUS).
// The fd is close-on-exec: handing it to a worker is the spawner's explicit decision.
//
// `mode` replaces the 0777 a memfd is born with. Read-only descriptors handed to readers
// share the inode, and anyone holding one can open /proc/self/fd/N anew with the access
// the mode allows: 0777 let any reader reopen the scoreboard read-write. Descriptors
// already open (the master's, a worker's own page) keep their access whatever the mode.
// Writes cannot be sealed: a worker maps its page writable after exec.
std::error_code make_sealed_memfd(const char* name, std::size_t size, OwnedFd& out, mode_t mode = 0600);

struct HeaderSpec {
  std::uint32_t pool_count = 0;
  std::uint32_t slot_count = 0;
  std::uint32_t activity_page_size = 0;
  pid_t master_pid = 0;
  std::int64_t start_realtime_ns = 0;
  std::int64_t start_monotonic_ns = 0;
};

// Fills in the header of the main region in `base` (which holds at least
// region_geometry(...).size zeroed bytes). Pool blocks and slot records stay zero bytes,
// untouched, so that the pages nobody uses are never made resident.
void format_region(std::byte* base, const HeaderSpec& spec);

// Starts slot record `slot` (zero bytes until now): every field 0, last_exit_status -1
// ("none"). The master calls it once per record, before the record's first write.
void format_slot_record(std::byte* base, std::uint32_t pool_count, std::uint32_t slot_count, std::uint32_t slot);

// Checks a header before anything else of the region is read. `available` is how many bytes
// are really mapped at `base`. Returns "" when the header is usable, else a message that
// names the field, e.g. "scoreboard: bad magic 0x... (not a forkpool scoreboard)".
std::string check_header(const std::byte* base, std::size_t available);

// One virtual window with a page per slot, each page mapped from that slot's own memfd, so
// slot i lives at base + i * page_size however often its memfd is replaced. Pages not yet
// mapped stay PROT_NONE and are reported by is_mapped().
class SlotPages {
 public:
  SlotPages() = default;
  SlotPages(std::uint32_t count, std::size_t page_size);  // throws std::system_error (mmap)

  // Maps `fd` over slot's page, atomically replacing what was there.
  std::error_code map(std::uint32_t slot, int fd, bool writable);
  std::byte* page(std::uint32_t slot) const { return window_.data() + slot * page_size_; }
  bool is_mapped(std::uint32_t slot) const { return mapped_[slot]; }
  std::uint32_t count() const { return static_cast<std::uint32_t>(mapped_.size()); }
  std::size_t page_size() const { return page_size_; }

 private:
  Mapping window_;
  std::size_t page_size_ = 0;
  std::vector<bool> mapped_;
};

using base::monotonic_ns;
using base::realtime_ns;

}  // namespace forkpool::shm
