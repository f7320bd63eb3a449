#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is missing, builds the default preset and runs the whole test suite.
# Pass "asan" to do the same under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
./scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j"$(nproc)"
log="build/$preset/ctest.log"
ctest --preset "$preset" 2>&1 | tee "$log"
# A test that cannot run here reports itself skipped (tests/support/skip.hpp). CI runs as
# root with every package this script installs, so there a skip means something is
# missing that the tests need: that fails the run.
if [ "${CI:-}" = "true" ] && grep -q "(Skipped)" "$log"; then
  echo "test.sh: tests were skipped in CI, where everything they need is installed:" >&2
  grep "(Skipped)" "$log" >&2
  exit 1
fi
