// SPDX-License-Identifier: Apache-2.0
// Scoreboard::adopt: the scoreboard handed over by the previous image of the master in a
// binary upgrade. The memory is the same, so every counter and slot carries on.

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <new>
#include <stdexcept>

#include "shm/scoreboard.hpp"

namespace forkpool::shm {

Scoreboard Scoreboard::adopt(OwnedFd region, std::vector<OwnedFd> slot_fds,
                             std::vector<bool> slots_used, std::vector<bool> pools_used) {
  struct stat st {};
  if (::fstat(region.get(), &st) != 0)
    throw std::system_error(errno, std::system_category(), "fstat (scoreboard)");
  const auto size = static_cast<std::size_t>(st.st_size);
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, region.get(), 0);
  if (addr == MAP_FAILED)
    throw std::system_error(errno, std::system_category(), "mmap (adopted scoreboard region)");
  Scoreboard s;
  s.region_ = Mapping(addr, size);
  if (std::string why = check_header(s.region_.data(), size); !why.empty())
    throw std::runtime_error(why);
  const auto* h = std::launder(reinterpret_cast<const Header*>(s.region_.data()));
  const std::uint32_t slots = h->slot_count.load(std::memory_order_relaxed);
  s.pool_count_ = h->pool_count.load(std::memory_order_relaxed);
  if (slots_used.size() != slots || pools_used.size() != s.pool_count_ || slot_fds.size() > slots)
    throw std::runtime_error(
        "scoreboard: the handed-over slot and pool tables do not match its header");
  s.region_fd_ = std::move(region);
  const RegionGeometry g = region_geometry(s.pool_count_, slots);
  s.pools_ = std::launder(reinterpret_cast<PoolBlock*>(s.region_.data() + g.pools_offset));
  s.records_ = std::launder(reinterpret_cast<SlotRecord*>(s.region_.data() + g.slots_offset));
  // The previous image started a prefix of the records (record()); the rest are zero
  // bytes. A started record has an epoch or a last exit status (-1 when none), so the
  // first record with neither is where the prefix ends, found without touching the rest.
  while (s.formatted_ < slots) {
    const SlotRecord& r = s.records_[s.formatted_];
    if (r.epoch.load(std::memory_order_relaxed) == 0 && r.last_exit_status.load(std::memory_order_relaxed) == 0) break;
    ++s.formatted_;
  }
  s.slot_used_ = std::move(slots_used);
  s.pool_used_ = std::move(pools_used);
  const std::size_t page = h->activity_page_size.load(std::memory_order_relaxed);
  s.pages_ = SlotPages(slots, page);
  s.slot_fds_.resize(slots);
  s.reader_ = Reader(s.region_.data(), std::vector<const SlotActivity*>(slots, nullptr));
  for (std::uint32_t i = 0; i < slot_fds.size(); ++i) {
    if (!slot_fds[i]) continue;
    if (auto ec = s.pages_.map(i, slot_fds[i].get(), true))
      throw std::system_error(ec, "mmap (adopted slot page)");
    s.slot_fds_[i] = std::move(slot_fds[i]);
    s.reader_.set_page(i, std::launder(reinterpret_cast<const SlotActivity*>(s.pages_.page(i))));
    s.paged_ = i + 1;
  }
  return s;
}

}  // namespace forkpool::shm
