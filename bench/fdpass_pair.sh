#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/fdpass_pair.sh: forkpool's master dispatch against the C limit of the same design
# (prefork_ref --mode fdpass), in PAIRS back-to-back pairs, to judge a few per cent where
# bench/run.sh's three runs cannot. Run by hand on a quiet machine; never from CI or ctest.
#
#   bench/fdpass_pair.sh                          # build the release preset, 10 pairs, close
#   SKIP_BUILD=1 MODE=keepalive PAIRS=20 bench/fdpass_pair.sh
#   DESIGN=shared MODE=keepalive bench/fdpass_pair.sh   # shared dispatch vs --mode shared
#
# DESIGN=fdpass (the default): master dispatch, max_inflight 1, against prefork_ref's
# fdpass mode; queue_timeout 0, as the reference's queue has no timeout (with keep-alive,
# 60 of wrk's 64 connections wait for a worker the whole run, and runs of 10 s or more
# had the default 10 s close them as errors). DESIGN=shared: dispatch = "shared" (the
# workers accept on the inherited listener) against prefork_ref's shared mode, the same
# design in C.
# Both servers: 4 workers (children), on SERVER_CPU (0); wrk -t1 -c64 for
# DURATION (5) s on CLIENT_CPU (1), one request per connection (MODE=close) or keep-alive.
# Each pair starts the two servers fresh, in alternating order (forkpool first in odd
# pairs), so drift and warm-up hit both alike. Prints every pair, then the median, mean and
# range of the per-pair ratios (forkpool / reference) and the ratio of the medians, and the
# same for the server CPU's busy time per request (/proc/stat of SERVER_CPU): wrk -t1 on a
# single CPU saturates it on a small machine, and then req/s tells little of the servers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
MODE=${MODE:-close}
PAIRS=${PAIRS:-10}
DURATION=${DURATION:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DESIGN=${DESIGN:-fdpass}
case $MODE in close | keepalive) ;; *) echo "MODE is close or keepalive" >&2; exit 2 ;; esac
case $DESIGN in
  fdpass) POOL_MODE=$'max_inflight = 1\nqueue_timeout = "0"'; REF_MODE=(--mode fdpass --max-inflight 1); LABEL="master dispatch vs prefork_ref fdpass, max_inflight 1" ;;
  shared) POOL_MODE='dispatch = "shared"'; REF_MODE=(--mode shared); LABEL="shared dispatch vs prefork_ref shared" ;;
  *) echo "DESIGN is fdpass or shared" >&2; exit 2 ;;
esac

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cmake --preset release -DFORKPOOL_BENCH=ON >/dev/null &&
    cmake --build --preset release -j2 --target forkpool forkpool-hello prefork_ref >/dev/null)
fi
FORKPOOL=$BUILD/supervisor/forkpool
HELLO=$BUILD/worker/hello/forkpool-hello
REF=$BUILD/bench/prefork_ref
for b in "$FORKPOOL" "$HELLO" "$REF"; do [[ -x $b ]] || { echo "$b is missing (build first)" >&2; exit 1; }; done

TMP=$(mktemp -d)
SERVER=
cleanup() {
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

wait_port() { # LOG REGEX: prints the port once the line is there
  local i
  for i in $(seq 200); do
    if grep -q "$2" "$1" 2>/dev/null; then
      sed -n "s/.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p" "$1" | head -1
      return
    fi
    sleep 0.05
  done
  echo "no '$2' in $1: $(tail -3 "$1")" >&2
  exit 1
}

cpu_busy() { # jiffies SERVER_CPU spent on anything but idle and iowait so far
  awk -v c="cpu$SERVER_CPU" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}

measure() { # PORT: "req/s errors non-2xx cpu-us-per-request" of one wrk run
  local before after out
  before=$(cpu_busy)
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" -s "$ROOT/bench/lua/$MODE.lua" \
    "http://127.0.0.1:$1/" | sed -n 's/^RESULT rps=\([0-9.]*\).*requests=\([0-9]*\) errors=\([0-9]*\) status=\([0-9]*\)$/\1 \2 \3 \4/p')
  after=$(cpu_busy)
  # The server's CPU (everything on SERVER_CPU: master, workers, their softirqs) per request.
  echo "$out" | awk -v busy=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    '{ printf "%s %s %s %.1f\n", $1, $3, $4, ($2 > 0 ? busy / hz * 1e6 / $2 : 0) }'
}

run_forkpool() {
  printf '[supervisor]\ncontrol_socket = "%s/fp.sock"\nlog_level = "info"\n\n[pools.web]\ncommand = ["%s"]\nlisten = ["tcp://127.0.0.1:0"]\nworkers = 4\n%s\n' \
    "$TMP" "$HELLO" "$POOL_MODE" >"$TMP/fp.toml"
  taskset -c "$SERVER_CPU" "$FORKPOOL" -c "$TMP/fp.toml" >"$TMP/fp.log" 2>&1 &
  SERVER=$!
  wait_port "$TMP/fp.log" 'master.ready' >/dev/null
  measure "$(wait_port "$TMP/fp.log" 'listens on')"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
}

run_reference() {
  taskset -c "$SERVER_CPU" "$REF" --listen 127.0.0.1:0 --workers 4 "${REF_MODE[@]}" \
    >"$TMP/ref.log" 2>&1 &
  SERVER=$!
  measure "$(wait_port "$TMP/ref.log" 'listening on')"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
}

echo "forkpool $LABEL, $MODE, 4 workers," \
  "$PAIRS pairs of ${DURATION}s; $(uptime | sed 's/.*load/load/')"
: >"$TMP/pairs"
for ((i = 1; i <= PAIRS; i++)); do
  if ((i % 2)); then f=$(run_forkpool); r=$(run_reference); else r=$(run_reference); f=$(run_forkpool); fi
  echo "pair $i: forkpool $f | reference $r (req/s errors non-2xx server-CPU-us/request)"
  echo "$f $r" >>"$TMP/pairs"
done
python3 - "$TMP/pairs" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
fp, ref = [r[0] for r in rows], [r[4] for r in rows]
fp_cpu, ref_cpu = [r[3] for r in rows], [r[7] for r in rows]
errors = sum(r[1] + r[2] + r[5] + r[6] for r in rows)
ratios = [f / x for f, x in zip(fp, ref)]
print(f"per-pair ratio: median {statistics.median(ratios):.3f}, mean {statistics.mean(ratios):.3f}, "
      f"range {min(ratios):.3f}-{max(ratios):.3f}; ratio of medians "
      f"{statistics.median(fp) / statistics.median(ref):.3f}; errors {errors:.0f}")
# When wrk saturates its CPU, req/s says more of wrk than of the servers; the server
# CPU's time per request (reference / forkpool: above 1.0, forkpool is cheaper) does not.
cpu = [x / f for f, x in zip(fp_cpu, ref_cpu)]
print(f"server CPU per request, reference / forkpool, per pair: median {statistics.median(cpu):.3f}, "
      f"range {min(cpu):.3f}-{max(cpu):.3f}; medians {statistics.median(fp_cpu):.1f} us (forkpool), "
      f"{statistics.median(ref_cpu):.1f} us (reference)")
PY
echo "after: $(uptime | sed 's/.*load/load/')"
