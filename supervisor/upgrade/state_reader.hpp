// SPDX-License-Identifier: Apache-2.0
#pragma once
// The new image's side of the hand-over: reads and validates the state, and takes
// ownership of each descriptor it names after checking that it is what the state says.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "base/owned_fd.hpp"

namespace forkpool::supervisor::upgrade {

// A state the new image cannot use; the message names what is wrong with it.
struct StateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Checks the header (magic, format, length) of `bytes` and parses the payload. Throws
// StateError.
nlohmann::json parse_state(std::string_view bytes);

// Reads the whole state memfd `fd` (from offset 0) and parses it. Throws StateError.
nlohmann::json read_state(int fd);

// What a descriptor named by the state must be.
enum class FdKind {
  Listener,         // a listening stream socket
  StreamSocket,     // a connected stream socket (a queued connection)
  SeqpacketSocket,  // a worker's channel
  DgramSocket,      // a notify socket
  Pipe,             // an output capture's read end
  Memory,           // a memfd (scoreboard region and pages)
};

// Owns the descriptors of a state as they are claimed. A descriptor is claimed once;
// what is never claimed is not closed here (the caller decides).
class AdoptedFds {
 public:
  // Checks `fd` with fstat (and getsockopt for sockets), sets close-on-exec again and
  // returns it owned. Throws StateError naming `what` when it is not of `kind`, not
  // open, or claimed twice.
  base::OwnedFd claim(const nlohmann::json& fd, FdKind kind, std::string_view what);

 private:
  std::set<int> claimed_;
};

// A JSON member that must be there, with a StateError naming it otherwise.
const nlohmann::json& need(const nlohmann::json& object, const char* key);

}  // namespace forkpool::supervisor::upgrade
