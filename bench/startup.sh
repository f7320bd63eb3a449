#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/startup.sh: time from exec to the first HTTP response and to every worker ready,
# for forkpool with WORKERS (64) forkpool-hello workers against prefork_ref forking as many
# children. Run by hand; never from CI or ctest (docs/performance.md).
#
#   bench/startup.sh                            # build the release preset, then measure
#   SKIP_BUILD=1 RUNS=9 bench/startup.sh        # reuse build/release, more runs
#   WORKERS=16 DISPATCH=shared bench/startup.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cd "$ROOT"
  echo "[startup] building the release preset" >&2
  cmake --preset release -DFORKPOOL_BENCH=ON >/dev/null
  cmake --build --preset release -j2 --target forkpool forkpool-hello prefork_ref >/dev/null
fi
FORKPOOL=$BUILD/supervisor/forkpool
HELLO=$BUILD/worker/hello/forkpool-hello
REF=$BUILD/bench/prefork_ref
for b in "$FORKPOOL" "$HELLO" "$REF"; do [[ -x $b ]] || { echo "[startup] $b is missing" >&2; exit 1; }; done

echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(uptime | sed 's/.*load/load/')"
python3 "$ROOT/bench/startup.py" "$FORKPOOL" "$HELLO" "$REF"
echo "after: $(uptime | sed 's/.*load/load/')"
