// SPDX-License-Identifier: Apache-2.0
#include "shm/region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <new>

namespace forkpool::shm {

namespace {

std::error_code last_error() {
  return {errno, std::system_category()};
}

template <typename T>
const T& at(const std::byte* base, std::uint64_t offset) {
  return *std::launder(reinterpret_cast<const T*>(base + offset));
}

std::string field_error(const char* field, std::uint64_t got, std::uint64_t want) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "scoreboard: header field %s is %" PRIu64 ", expected %" PRIu64,
                field, got, want);
  return buf;
}

}  // namespace

std::size_t system_page_size() {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}


std::error_code make_sealed_memfd(const char* name, std::size_t size, OwnedFd& out, mode_t mode) {
  OwnedFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return last_error();
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return last_error();
  if (::fchmod(fd.get(), mode) != 0) return last_error();
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return last_error();
  }
  out = std::move(fd);
  return {};
}

void format_region(std::byte* base, const HeaderSpec& spec) {
  const RegionGeometry g = region_geometry(spec.pool_count, spec.slot_count);
  // Only the header is written. The pool blocks and slot records are left as the zero
  // bytes the memory already holds, which is the value of every counter at 0 (readers
  // take them as they are, std::launder'ed); a region has room for at least 64 pools and
  // 1024 slots, and writing them all would make every page of it resident in the master
  // even for a pool of 4 workers. A slot record's one non-zero initial value is set by
  // format_slot_record when the slot is first used.
  (void)g;
  auto* h = new (base) Header{};
  constexpr auto r = std::memory_order_relaxed;
  h->layout_version.store(kLayoutVersion, r);
  h->header_size.store(sizeof(Header), r);
  h->slot_record_size.store(sizeof(SlotRecord), r);
  h->activity_size.store(sizeof(SlotActivity), r);
  h->pool_block_size.store(sizeof(PoolBlock), r);
  h->histogram_buckets.store(kHistogramBuckets, r);
  h->slot_count.store(spec.slot_count, r);
  h->pool_count.store(spec.pool_count, r);
  h->activity_page_size.store(spec.activity_page_size, r);
  h->master_pid.store(spec.master_pid, r);
  h->pools_offset.store(g.pools_offset, r);
  h->slots_offset.store(g.slots_offset, r);
  h->region_size.store(g.size, r);
  h->start_realtime_ns.store(spec.start_realtime_ns, r);
  h->start_monotonic_ns.store(spec.start_monotonic_ns, r);
  // The magic goes in last, with release: a reader that sees it sees a complete header.
  h->magic.store(kMagic, std::memory_order_release);
}

void format_slot_record(std::byte* base, std::uint32_t pool_count, std::uint32_t slot_count, std::uint32_t slot) {
  const RegionGeometry g = region_geometry(pool_count, slot_count);
  auto* r = new (base + g.slots_offset + slot * sizeof(SlotRecord)) SlotRecord{};
  r->last_exit_status.store(-1, std::memory_order_relaxed);
}

std::string check_header(const std::byte* base, std::size_t available) {
  if (available < sizeof(Header)) {
    return "scoreboard: region is " + std::to_string(available) + " bytes, smaller than a " +
           std::to_string(sizeof(Header)) + "-byte header";
  }
  const auto& h = at<Header>(base, 0);
  constexpr auto r = std::memory_order_relaxed;
  const std::uint64_t magic = h.magic.load(std::memory_order_acquire);
  if (magic != kMagic) {
    char buf[96];
    std::snprintf(buf, sizeof buf,
                  "scoreboard: bad magic 0x%016" PRIx64 " (not a forkpool scoreboard)", magic);
    return buf;
  }
  if (const auto v = h.layout_version.load(r); v != kLayoutVersion) {
    return "scoreboard: layout version " + std::to_string(v) +
           " is not supported (this build reads " + std::to_string(kLayoutVersion) +
           "); use the forkpoolctl matching the running master";
  }
  struct Expect {
    const char* name;
    std::uint64_t got;
    std::uint64_t want;
  };
  const Expect sizes[] = {
      {"header_size", h.header_size.load(r), sizeof(Header)},
      {"slot_record_size", h.slot_record_size.load(r), sizeof(SlotRecord)},
      {"activity_size", h.activity_size.load(r), sizeof(SlotActivity)},
      {"pool_block_size", h.pool_block_size.load(r), sizeof(PoolBlock)},
      {"histogram_buckets", h.histogram_buckets.load(r), kHistogramBuckets},
  };
  for (const auto& e : sizes) {
    if (e.got != e.want) return field_error(e.name, e.got, e.want);
  }
  const std::uint32_t slots = h.slot_count.load(r);
  const std::uint32_t pools = h.pool_count.load(r);
  if (slots > kMaxSlots) return field_error("slot_count", slots, kMaxSlots);
  if (pools > kMaxPools) return field_error("pool_count", pools, kMaxPools);
  const std::uint32_t page = h.activity_page_size.load(r);
  if (page < sizeof(SlotActivity) || page % system_page_size() != 0) {
    return field_error("activity_page_size", page, system_page_size());
  }
  const RegionGeometry g = region_geometry(pools, slots);
  const Expect layout[] = {
      {"pools_offset", h.pools_offset.load(r), g.pools_offset},
      {"slots_offset", h.slots_offset.load(r), g.slots_offset},
      {"region_size", h.region_size.load(r), g.size},
  };
  for (const auto& e : layout) {
    if (e.got != e.want) return field_error(e.name, e.got, e.want);
  }
  if (g.size > available) {
    return "scoreboard: region is " + std::to_string(available) +
           " bytes but its header describes " + std::to_string(g.size);
  }
  return {};
}

SlotPages::SlotPages(std::uint32_t count, std::size_t page_size)
    : page_size_(page_size), mapped_(count, false) {
  if (count == 0) return;
  const std::size_t length = std::size_t{count} * page_size;
  // A reservation only: no memory, and any access before a slot is mapped faults.
  void* addr =
      ::mmap(nullptr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (addr == MAP_FAILED) throw std::system_error(last_error(), "mmap (scoreboard slot window)");
  window_ = Mapping(addr, length);
}

std::error_code SlotPages::map(std::uint32_t slot, int fd, bool writable) {
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  // MAP_FIXED over our own reservation replaces the old page in one step, so the window
  // never has a hole another mmap could land in.
  void* addr = ::mmap(page(slot), page_size_, prot, MAP_SHARED | MAP_FIXED, fd, 0);
  if (addr == MAP_FAILED) return last_error();
  mapped_[slot] = true;
  return {};
}

}  // namespace forkpool::shm
