// SPDX-License-Identifier: Apache-2.0
#pragma once
// The exec step of a binary upgrade: the one moment the old image hands everything over.

#include <filesystem>
#include <string>
#include <vector>

namespace forkpool::supervisor::upgrade {

// Clears close-on-exec on `fds` and `state_fd`, blocks every signal (so none is lost or
// handled by default while no handler exists; the new image unblocks them once its
// handlers are in place) and execve()s `binary` with --upgrade-state-fd. Returns only if
// that failed: then the descriptors are close-on-exec again, the signal mask is restored,
// and the result is the error ("execve /usr/bin/forkpool: Permission denied").
std::string exec_new_image(const std::string& binary, const std::filesystem::path& config_file,
                           int state_fd, const std::vector<int>& fds);

}  // namespace forkpool::supervisor::upgrade
