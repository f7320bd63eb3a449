#!/usr/bin/env bash
# Installs what is missing, builds the default preset and runs the whole test suite.
# Pass "asan" to do the same under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
./scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j"$(nproc)"
ctest --preset "$preset"
