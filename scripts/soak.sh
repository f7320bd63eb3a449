#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Chaos soak (scripts/soak.py): forkpool under load while workers are killed, stopped,
# scaled, restarted and reloaded and descriptors run short; then the accounting must
# balance. Usage: scripts/soak.sh [SECONDS] [PRESET]   (default 60 s, preset default)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
preset="${2:-default}"
./scripts/install-deps.sh
if [ ! -x "build/$preset/supervisor/forkpool" ]; then
  cmake --preset "$preset"
  cmake --build --preset "$preset" -j"$(nproc)" --target forkpool forkpool-hello
fi
exec python3 scripts/soak.py --seconds "$seconds" \
  --forkpool "build/$preset/supervisor/forkpool" \
  --hello "$PWD/build/$preset/worker/hello/forkpool-hello"
