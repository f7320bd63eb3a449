// SPDX-License-Identifier: Apache-2.0
#pragma once
// The layout version as one string, "<layout_version>.<slot bytes>.<pool block bytes>",
// where slot bytes = sizeof(SlotRecord) + sizeof(SlotActivity). A unit test pins it, so a
// field added or removed without bumping kLayoutVersion fails CI instead of confusing an
// older forkpoolctl attached to a newer master.

#include <string>

namespace forkpool::shm {

std::string layout_version_string();

}  // namespace forkpool::shm
