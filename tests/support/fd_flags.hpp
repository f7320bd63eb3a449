// SPDX-License-Identifier: Apache-2.0
#pragma once
// The file status and descriptor flags of another process's descriptor, as the "flags:"
// line of /proc/PID/fdinfo/FD shows them (octal: O_NONBLOCK, O_CLOEXEC, the access mode).

#include <sys/types.h>

#include <fstream>
#include <optional>
#include <string>

namespace forkpool::test {

// Nothing when the process or the descriptor is gone.
inline std::optional<unsigned long> fd_flags(pid_t pid, int fd) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
  std::string key, value;
  while (in >> key >> value)
    if (key == "flags:") return std::stoul(value, nullptr, 8);
  return std::nullopt;
}

}  // namespace forkpool::test
