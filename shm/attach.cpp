// SPDX-License-Identifier: Apache-2.0
#include "shm/attach.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace forkpool::shm {

namespace {

std::string syscall_error(const std::string& what) {
  return "scoreboard: " + what + ": " + std::strerror(errno);
}

// Size of a memfd that can no longer shrink: reading a mapping of a file that shrinks
// under us would kill the reader with SIGBUS, so an unsealed fd is refused.
std::size_t sealed_size(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw AttachError(syscall_error("fstat (" + what + ")"));
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) throw AttachError(syscall_error("fcntl F_GET_SEALS (" + what + ")"));
  if ((seals & F_SEAL_SHRINK) == 0) {
    throw AttachError("scoreboard: " + what + " is not sealed against shrinking");
  }
  return static_cast<std::size_t>(st.st_size);
}

}  // namespace

AttachedScoreboard AttachedScoreboard::attach(int region_fd, std::span<const int> slot_fds,
                                              std::span<const std::uint64_t> page_epochs) {
  AttachedScoreboard a;
  const std::size_t size = sealed_size(region_fd, "region");
  if (size < sizeof(Header)) {
    throw AttachError("scoreboard: region is " + std::to_string(size) +
                      " bytes, too small for a header");
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, region_fd, 0);
  if (addr == MAP_FAILED) throw AttachError(syscall_error("mmap (region)"));
  a.region_ = Mapping(addr, size);
  if (auto err = check_header(a.region_.data(), size); !err.empty()) throw AttachError(err);

  const auto& h = *std::launder(reinterpret_cast<const Header*>(a.region_.data()));
  const std::uint32_t slots = h.slot_count.load(std::memory_order_relaxed);
  const std::size_t page = h.activity_page_size.load(std::memory_order_relaxed);
  if (slot_fds.size() > slots) {
    throw AttachError("scoreboard: got " + std::to_string(slot_fds.size()) + " slot fds for " +
                      std::to_string(slots) + " slots");
  }
  if (!page_epochs.empty() && page_epochs.size() != slot_fds.size()) {
    throw AttachError("scoreboard: got " + std::to_string(page_epochs.size()) +
                      " page epochs for " + std::to_string(slot_fds.size()) + " slot fds");
  }
  try {
    a.pages_ = SlotPages(slots, page);
  } catch (const std::system_error& e) {
    throw AttachError(std::string("scoreboard: ") + e.what());
  }
  std::vector<const SlotActivity*> views(slots, nullptr);
  for (std::uint32_t i = 0; i < slot_fds.size(); ++i) {
    const std::string what = "slot " + std::to_string(i) + " page";
    if (sealed_size(slot_fds[i], what) < page) {
      throw AttachError("scoreboard: " + what + " is smaller than " + std::to_string(page) +
                        " bytes");
    }
    if (auto ec = a.pages_.map(i, slot_fds[i], false)) {
      throw AttachError("scoreboard: mmap (" + what + "): " + ec.message());
    }
    views[i] = std::launder(reinterpret_cast<const SlotActivity*>(a.pages_.page(i)));
  }
  a.reader_ = Reader(a.region_.data(), std::move(views));
  if (!page_epochs.empty()) {
    a.reader_.set_page_epochs({page_epochs.begin(), page_epochs.end()});
  }
  return a;
}

}  // namespace forkpool::shm
