// SPDX-License-Identifier: Apache-2.0
#pragma once
// The old image's side of the hand-over: the state as a memfd, and the list of exactly
// the descriptors it names, whose close-on-exec flag is cleared for the execve (and set
// again if the execve fails).

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/owned_fd.hpp"

namespace forkpool::supervisor::upgrade {

// Collects the descriptors a state names while the state is being written.
class FdList {
 public:
  // Records `fd` (if >= 0) and returns it, for `j["fd"] = fds.add(fd)`.
  int add(int fd);
  const std::vector<int>& fds() const { return fds_; }

 private:
  std::vector<int> fds_;
};

// Writes the header and `payload` into a new memfd (close-on-exec until handed over).
// Throws std::system_error naming the syscall.
base::OwnedFd write_state(const nlohmann::json& payload);

// Clears (inherit = true) or sets FD_CLOEXEC on each of `fds`; returns "" or a message
// naming the first descriptor that failed (the others are still done).
std::string set_inheritable(const std::vector<int>& fds, bool inherit);

// Bytes as lowercase hex (a peer address in the JSON) and back; false for bad input.
std::string to_hex(const void* data, std::size_t size);
bool from_hex(const std::string& text, void* out, std::size_t capacity, std::size_t& size);

}  // namespace forkpool::supervisor::upgrade
