// SPDX-License-Identifier: Apache-2.0
#pragma once
// A test that cannot run here (not root, a program not installed) says why and ends its
// process with kSkipExitCode, which CTest reports as "Skipped" (SKIP_RETURN_CODE in
// tests/CMakeLists.txt), never as passed. Call it before the test starts anything it
// would have to clean up: the process ends on the spot. In CI (CI=true) a skipped test
// fails the run (scripts/test.sh), since CI installs everything the suite needs.

#include <cstdio>
#include <cstdlib>
#include <string>

namespace forkpool::test {

inline constexpr int kSkipExitCode = 77;

[[noreturn]] inline void skip_test(const std::string& why) {
  std::fprintf(stderr, "SKIPPED: %s\n", why.c_str());
  std::fflush(nullptr);
  std::_Exit(kSkipExitCode);
}

}  // namespace forkpool::test
