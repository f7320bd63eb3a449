// SPDX-License-Identifier: Apache-2.0
#pragma once
// A Unix socket file this process bound, known by its device and inode. Removed at the end
// only while its path still names that very file: if an operator moved it away and another
// process bound the same path, the path is that process's now and stays.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>

namespace forkpool::base {

struct SocketFile {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  bool known = false;  // false: nothing to remove (not bound by us, or gone before we looked)

  // The socket file now at `path` (right after bind(2)): known when it is a socket.
  static SocketFile at(const char* path) {
    struct stat st {};
    if (::lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) return {};
    return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), true};
  }
  static SocketFile from(std::uint64_t dev, std::uint64_t ino) { return {dev, ino, true}; }

  // Whether `path` names this file now.
  bool named_by(const char* path) const {
    struct stat st {};
    return known && ::lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
           static_cast<std::uint64_t>(st.st_dev) == dev && static_cast<std::uint64_t>(st.st_ino) == ino;
  }

  // Unlinks `path` if it names this file; true if it did. There is no unlink by inode, so
  // a file put there between the lstat and the unlink would still go: a window of two
  // syscalls, where unlinking unconditionally always removed whatever was there.
  bool unlink_if_named_by(const char* path) const { return named_by(path) && ::unlink(path) == 0; }
};

}  // namespace forkpool::base
