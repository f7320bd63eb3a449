#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/master_memory.sh: the master's memory (PSS) by category, for pools of 4, 64 and
# 1000 forkpool-hello workers (master dispatch) after a warm-up. Run by hand; never from
# CI or ctest (docs/performance.md).
#
#   bench/master_memory.sh                 # build the release preset, then measure
#   SKIP_BUILD=1 bench/master_memory.sh    # reuse build/release
#   SIZES="4 64" bench/master_memory.sh    # other pool sizes
#
# For each size: start the master, wait for "every pool has its workers ready", send
# WARMUP requests (Connection: close, then keep-alive with wrk when it is installed),
# ask for `status` and `metrics` once (so the code paths that build them have run), then
# print the master's /proc/PID/smaps grouped by what each mapping is (bench/smaps_breakdown.py).
# PSS counts a page shared by N processes as 1/N: library text and the binary are shared
# with every other forkpool master on the machine, never with forkpool-hello workers
# (another binary), so the figure depends a little on what else runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
SIZES=${SIZES:-4 64 1000}
WARMUP=${WARMUP:-2000}
DISPATCH=${DISPATCH:-master}

log() { printf '[memory] %s\n' "$*" >&2; }
die() { printf '[memory] error: %s\n' "$*" >&2; exit 1; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cd "$ROOT"
  log "building the release preset"
  cmake --preset release >/dev/null
  cmake --build --preset release -j2 --target forkpool forkpool-hello forkpoolctl >/dev/null
fi
FORKPOOL=$BUILD/supervisor/forkpool
HELLO=$BUILD/worker/hello/forkpool-hello
CTL=$BUILD/ctl/forkpoolctl
for b in "$FORKPOOL" "$HELLO" "$CTL"; do [[ -x $b ]] || die "$b is missing (build first)"; done

TMP=$(mktemp -d)
MASTER=
cleanup() {
  [[ -n $MASTER ]] && kill "$MASTER" 2>/dev/null && wait "$MASTER" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

wait_for_line() { # FILE REGEX SECONDS
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

printf 'forkpool master PSS (%s, %s dispatch, warm-up %s requests); load: %s\n' \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$DISPATCH" "$WARMUP" "$(uptime | sed 's/.*load/load/')"
for n in $SIZES; do
  dir=$TMP/w$n
  mkdir -p "$dir"
  cat >"$dir/forkpool.toml" <<EOF
[supervisor]
control_socket = "forkpool.sock"
log_level = "info"
shutdown_timeout = "10s"

[pools.web]
command = ["$HELLO"]
dispatch = "$DISPATCH"
listen = ["tcp://127.0.0.1:0"]
workers = $n
max_inflight = 4
EOF
  (cd "$dir" && exec "$FORKPOOL" -c "$dir/forkpool.toml" >"$dir/master.log" 2>&1) &
  MASTER=$!
  wait_for_line "$dir/master.log" '\[master.ready\]' $((30 + n / 20)) || die "$n workers did not start: $(tail -5 "$dir/master.log")"
  port=$(sed -n 's/.*\[listener.open\] pool web listens on tcp:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$dir/master.log" | head -1)
  # Warm-up: one-connection-per-request traffic (every connection passes through the
  # master), then keep-alive.
  if command -v ab >/dev/null; then
    ab -q -n "$WARMUP" -c 16 "http://127.0.0.1:$port/" >/dev/null 2>&1 || die "ab failed"
  else
    for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
  fi
  if command -v wrk >/dev/null; then wrk -t1 -c32 -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true; fi
  "$CTL" -s "$dir/forkpool.sock" status >/dev/null
  "$CTL" -s "$dir/forkpool.sock" metrics >/dev/null
  sleep 0.5
  printf '\n%s workers (master pid %s), load: %s\n' "$n" "$MASTER" "$(uptime | sed 's/.*load average: //')"
  python3 "$ROOT/bench/smaps_breakdown.py" "$MASTER"
  kill "$MASTER"
  wait "$MASTER" 2>/dev/null || true
  MASTER=
done
