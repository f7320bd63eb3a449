// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "base/version.h"  // generated from project(VERSION)

namespace forkpool {

inline constexpr const char* kVersion = FORKPOOL_VERSION;
inline constexpr int kWorkerProtocol = 1;                  // SPEC section 4

}  // namespace forkpool
