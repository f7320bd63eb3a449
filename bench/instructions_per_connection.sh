#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/instructions_per_connection.sh: user-space instructions per `Connection: close`
# connection, master dispatch against the C limit of the same design (prefork_ref --mode
# fdpass), counted by callgrind. Unlike CPU time, the count does not move with the host's
# load, so it judges changes of a few hundred instructions that bench/fdpass_pair.sh cannot
# (kernel time is not in it: that is what fdpass_pair.sh's CPU figure adds).
# Run by hand; never from CI or ctest. Needs valgrind and ab (apache2-utils).
#
#   bench/instructions_per_connection.sh              # release build, 4 workers
#   BUILD=/other/build N1=2000 N2=12000 bench/instructions_per_connection.sh
#
# Each server runs twice under callgrind (every process, the workers too), serving N1 and
# then N2 connections (ab -c 16); the difference of the totals at exit, divided by N2 - N1,
# is the cost of one connection without start-up and shutdown. Callgrind slows the
# programs some 50 times, so batching (connections per wake-up) is not what it is at full
# speed; the figures compare code paths, not rates.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
N1=${N1:-1000}
N2=${N2:-6000}
FORKPOOL=$BUILD/supervisor/forkpool
HELLO=$BUILD/worker/hello/forkpool-hello
REF=$BUILD/bench/prefork_ref
for b in "$FORKPOOL" "$HELLO" "$REF"; do [[ -x $b ]] || { echo "$b is missing (build the release preset with -DFORKPOOL_BENCH=ON)" >&2; exit 1; }; done
for t in valgrind callgrind_annotate ab; do command -v "$t" >/dev/null || { echo "$t is missing" >&2; exit 1; }; done

TMP=$(mktemp -d)
SERVER=
cleanup() {
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

wait_port() { # LOG REGEX: the port of the first line matching REGEX
  local i
  for i in $(seq 600); do
    if grep -q "$2" "$1" 2>/dev/null; then
      grep "$2" "$1" | sed -n 's/.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | head -1
      return
    fi
    sleep 0.1
  done
  echo "no '$2' in $1: $(tail -3 "$1")" >&2
  exit 1
}

total() { # FILE...: the Ir totals of callgrind outputs, summed
  local sum=0 f n
  for f in "$@"; do
    n=$(callgrind_annotate "$f" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

load() { # PORT N
  local out
  out=$(ab -q -n "$2" -c 16 "http://127.0.0.1:$1/")
  grep -q '^Failed requests: *0$' <<<"$out" || { echo "ab reported failures: $out" >&2; exit 1; }
}

run_forkpool() { # N: "master workers" instruction totals
  local dir=$TMP/fp.$1
  mkdir -p "$dir"
  printf '[supervisor]\ncontrol_socket = "%s/fp.sock"\nlog_level = "info"\n\n[pools.web]\ncommand = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/worker.%%p", "%s"]\nlisten = ["tcp://127.0.0.1:0"]\nworkers = 4\nmax_inflight = 1\nready_timeout = "120s"\n' \
    "$dir" "$dir" "$HELLO" >"$dir/fp.toml"
  valgrind --tool=callgrind --callgrind-out-file="$dir/master.%p" "$FORKPOOL" -c "$dir/fp.toml" >"$dir/log" 2>&1 &
  SERVER=$!
  wait_port "$dir/log" 'master.ready' >/dev/null
  load "$(wait_port "$dir/log" 'listens on')" "$1"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
  echo "$(total "$dir"/master.*) $(total "$dir"/worker.*)"
}

run_reference() { # N: "parent children" instruction totals
  local dir=$TMP/ref.$1
  mkdir -p "$dir"
  valgrind --tool=callgrind --callgrind-out-file="$dir/ref.%p" "$REF" --listen 127.0.0.1:0 --workers 4 \
    --mode fdpass --max-inflight 1 >"$dir/log" 2>&1 &
  SERVER=$!
  load "$(wait_port "$dir/log" 'listening on')" "$1"
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
  # The parent's file is the one of the pid valgrind started; the others are its children.
  local first
  first=$(grep -o '^==[0-9]*==' "$dir/log" | head -1 | tr -d =)
  local children=()
  for f in "$dir"/ref.*; do [[ $f == "$dir/ref.$first" ]] || children+=("$f"); done
  echo "$(total "$dir/ref.$first") $(total "${children[@]}")"
}

echo "user-space instructions per Connection: close connection (callgrind; $N1 then $N2 connections, ab -c 16, 4 workers)"
read -r fm1 fw1 <<<"$(run_forkpool "$N1")"
read -r fm2 fw2 <<<"$(run_forkpool "$N2")"
read -r rp1 rc1 <<<"$(run_reference "$N1")"
read -r rp2 rc2 <<<"$(run_reference "$N2")"
python3 - "$N1" "$N2" "$fm1" "$fw1" "$fm2" "$fw2" "$rp1" "$rc1" "$rp2" "$rc2" <<'PY'
import sys
n1, n2, fm1, fw1, fm2, fw2, rp1, rc1, rp2, rc2 = map(int, sys.argv[1:])
n = n2 - n1
fm, fw, rp, rc = (fm2 - fm1) / n, (fw2 - fw1) / n, (rp2 - rp1) / n, (rc2 - rc1) / n
print(f"{'':22}{'forkpool':>10}{'reference':>11}{'reference / forkpool':>23}")
for name, f, r in (("master / parent", fm, rp), ("workers / children", fw, rc), ("total", fm + fw, rp + rc)):
    print(f"{name:22}{f:10.0f}{r:11.0f}{r / f:23.3f}")
PY
