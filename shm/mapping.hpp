// SPDX-License-Identifier: Apache-2.0
#pragma once
// Owning wrapper for the scoreboard's memory mappings (and, from base/, its descriptors).
// Move-only; released in the destructor.

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <utility>

#include "base/owned_fd.hpp"

namespace forkpool::shm {

using base::OwnedFd;

class Mapping {
 public:
  Mapping() = default;
  Mapping(void* addr, std::size_t length) : addr_(addr), length_(length) {}
  Mapping(Mapping&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), length_(std::exchange(o.length_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      addr_ = std::exchange(o.addr_, nullptr);
      length_ = std::exchange(o.length_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  std::byte* data() const { return static_cast<std::byte*>(addr_); }
  std::size_t size() const { return length_; }
  void reset() {
    if (addr_ != nullptr) ::munmap(addr_, length_);
    addr_ = nullptr;
    length_ = 0;
  }

 private:
  void* addr_ = nullptr;
  std::size_t length_ = 0;
};

}  // namespace forkpool::shm
