// SPDX-License-Identifier: Apache-2.0
#include "shm/version.hpp"

#include "shm/layout.hpp"

namespace forkpool::shm {

std::string layout_version_string() {
  return std::to_string(kLayoutVersion) + "." +
         std::to_string(sizeof(SlotRecord) + sizeof(SlotActivity)) + "." +
         std::to_string(sizeof(PoolBlock));
}

}  // namespace forkpool::shm
