// SPDX-License-Identifier: Apache-2.0
#pragma once
// The framing of the upgrade state (docs/upgrade.md, "The state"): a fixed 24-byte header,
// then one JSON object. Shared by the writer (the old image) and the reader (the new one).

#include <cstddef>
#include <cstdint>

namespace forkpool::supervisor::upgrade {

// "FPUPSTAT" as bytes, so a hex dump of the memfd reads it.
inline constexpr char kStateMagic[8] = {'F', 'P', 'U', 'P', 'S', 'T', 'A', 'T'};
// Bump on any change an older reader would get wrong (docs/upgrade.md, "Version rule").
inline constexpr std::uint32_t kStateFormat = 1;
// The formats this binary reads, printed by --upgrade-info.
inline constexpr std::uint32_t kReadableStateFormats[] = {1};
inline constexpr std::size_t kStateHeaderSize = 24;
// Far beyond any real state (65536 slots of a few hundred bytes): a bound for the reader.
inline constexpr std::uint64_t kMaxStatePayload = 256ull * 1024 * 1024;

// The command-line flag of the new image that names the state descriptor.
inline constexpr const char* kStateFdFlag = "--upgrade-state-fd";

}  // namespace forkpool::supervisor::upgrade
