// SPDX-License-Identifier: Apache-2.0
#pragma once
// The pre-flight of a binary upgrade: nothing changes while it runs. The new binary must
// run, describe itself (--upgrade-info), read this image's state format and accept the
// running configuration file (--check).

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace forkpool::supervisor::upgrade {

// The upgrade is refused; the message says why, for the reply, the log and the event.
struct UpgradeRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct NewBinary {
  std::string path;
  std::string version;
};

// How long each run of the new binary may take before it is killed and the upgrade refused.
inline constexpr std::chrono::seconds kProbeTimeout{10};

// The binary to run: `resolved` (the path of /proc/self/exe at start-up) unless empty,
// else /proc/self/exe. Runs `BINARY --upgrade-info` and `BINARY --check -c CONFIG`.
// Throws UpgradeRefused.
NewBinary preflight(const std::string& resolved, const std::filesystem::path& config_file);

// The path /proc/self/exe names now ("" if it cannot be read).
std::string own_binary_path();

}  // namespace forkpool::supervisor::upgrade
