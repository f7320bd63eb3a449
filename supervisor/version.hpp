#pragma once

namespace forkpool {

inline constexpr const char* kVersion = FORKPOOL_VERSION;  // from CMake's project(VERSION)
inline constexpr int kWorkerProtocol = 1;                  // SPEC section 4

}  // namespace forkpool
