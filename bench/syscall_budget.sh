#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/syscall_budget.sh: the per-connection syscall budget and CPU time of the master
# and of its forkpool-hello workers, against prefork_ref --mode fdpass, for the
# "Per-connection syscall budget" section of docs/performance.md. By hand only.
#
#   bench/syscall_budget.sh                  # uses build/default (needs -DFORKPOOL_BENCH=ON)
#   BUILD=build/release bench/syscall_budget.sh
#   SCENARIOS="close" DURATION=5 bench/syscall_budget.sh
#   STRACE=0 REF=0 bench/syscall_budget.sh   # CPU time only, forkpool only (A/B runs)
#
# Scenarios (wrk -t1 -cCONNS against 4 workers):
#   close       Connection: close, max_inflight 1 (per connection)
#   ka_worker   keep-alive held by workers, max_inflight 64 (per request)
#   ka_master   keepalive = "master", max_inflight 1 (per request: a resume and a PARK each)
# For each: `strace -c -f` on the master and, separately, on all workers while wrk runs,
# counts divided by wrk's request count; then, without strace, `perf stat -e task-clock`
# on the same processes: CPU microseconds per request (less noise-sensitive than req/s,
# still affected by cache and frequency effects of other load on the machine).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/default}
DURATION=${DURATION:-3}
CONNS=${CONNS:-16}
SCENARIOS=${SCENARIOS:-close ka_worker ka_master}
STRACE=${STRACE:-1}  # 0: only the CPU time
REF=${REF:-1}  # 0: no prefork_ref runs
FORKPOOL=$BUILD/supervisor/forkpool
HELLO=$BUILD/worker/hello/forkpool-hello
REF_BIN=$BUILD/bench/prefork_ref
LUA=$ROOT/bench/lua
for b in "$FORKPOOL" "$HELLO" "$REF_BIN"; do [[ -x $b ]] || { echo "$b is missing" >&2; exit 1; }; done
for t in wrk strace perf; do command -v $t >/dev/null || { echo "$t is missing" >&2; exit 1; }; done

TMP=$(mktemp -d /tmp/forkpool-budget.XXXXXX)
SERVER=
cleanup() {
  if [[ -n $SERVER ]]; then kill -TERM "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; fi
  rm -rf "$TMP"
  true
}
trap cleanup EXIT

wait_port() { # LOG REGEX: prints the port once the line is there
  local i
  for ((i = 0; i < 150; i++)); do
    local p
    p=$(sed -n "$2" "$1" | head -1)
    [[ -n $p ]] && { echo "$p"; return 0; }
    sleep 0.1
  done
  echo "no port in $1: $(tail -3 "$1")" >&2
  return 1
}

start_forkpool() { # MAX_INFLIGHT KEEPALIVE
  cat >"$TMP/forkpool.toml" <<EOF
[supervisor]
control_socket = "$TMP/forkpool.sock"
log_level = "info"

[pools.web]
command = ["$HELLO"]
dispatch = "master"
listen = ["tcp://127.0.0.1:0"]
workers = 4
max_inflight = $1
balance = "least-busy"
keepalive = "$2"
EOF
  "$FORKPOOL" -c "$TMP/forkpool.toml" >"$TMP/server.log" 2>&1 &
  SERVER=$!
  PORT=$(wait_port "$TMP/server.log" 's/.*\[listener.open\] pool web listens on tcp:\/\/127.0.0.1:\([0-9]*\).*/\1/p')
  local i
  for ((i = 0; i < 150; i++)); do grep -q '\[master.ready\]' "$TMP/server.log" && break; sleep 0.1; done
}

start_ref() {
  "$REF_BIN" --listen 127.0.0.1:0 --workers 4 --mode fdpass --max-inflight 1 >"$TMP/server.log" 2>&1 &
  SERVER=$!
  PORT=$(wait_port "$TMP/server.log" 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p')
}

stop_server() {
  kill -TERM "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=
}

run_wrk() { # LUA: prints the request count
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$LUA/$1.lua" "http://127.0.0.1:$PORT/" 2>&1 |
    sed -n 's/^RESULT .*requests=\([0-9]*\) errors=\([0-9]*\).*/\1 \2/p'
}

# strace -c output to per-request counts: "syscall calls/req (errors/req)".
per_request() { # FILE REQUESTS
  awk -v n="$2" '
    /^[ ]*[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "total" {
      calls = $4; errs = (NF == 6) ? $5 : 0; name = $NF
      total += calls
      if (errs > 0) printf "  %-16s %6.2f (%.2f errors)\n", name, calls / n, errs / n
      else printf "  %-16s %6.2f\n", name, calls / n
    }
    END { printf "  %-16s %6.2f\n", "TOTAL", total / n }' "$1"
}

measure() { # LABEL LUA PARENT_PID
  local label=$1 lua=$2 parent=$3
  local kids
  kids=$(pgrep -P "$parent" | tr '\n' ' ')
  run_wrk "$lua" >/dev/null  # warm-up
  local res n
  if [[ $STRACE == 1 ]]; then
  local pargs=() p
  for p in $kids; do pargs+=(-p "$p"); done
  strace -c -f -o "$TMP/parent.strace" -p "$parent" 2>/dev/null &
  local s1=$!
  strace -c -f -o "$TMP/kids.strace" "${pargs[@]}" 2>/dev/null &
  local s2=$!
  sleep 0.5
  res=$(run_wrk "$lua")
  kill -INT $s1 $s2
  wait $s1 $s2 2>/dev/null || true
  n=${res% *}
  echo "### $label: $n requests (errors ${res#* }) under strace"
  echo " parent:"; per_request "$TMP/parent.strace" "$n"
  echo " children:"; per_request "$TMP/kids.strace" "$n"
  else
    echo "### $label"
  fi
  # CPU time without strace.
  local all
  all=$(echo "$parent $kids" | tr ' ' ',' | sed 's/,*$//')
  perf stat -x, -e task-clock -p "$parent" -o "$TMP/parent.perf" -- sleep $((DURATION + 1)) &
  local q1=$!
  perf stat -x, -e task-clock -p "$(echo "$kids" | tr ' ' ',' | sed 's/,*$//')" -o "$TMP/kids.perf" -- sleep $((DURATION + 1)) &
  local q2=$!
  sleep 0.3
  res=$(run_wrk "$lua")
  wait $q1 $q2 || true
  n=${res% *}
  local pm km
  pm=$(awk -F, '/task-clock/ {print $1}' "$TMP/parent.perf")
  km=$(awk -F, '/task-clock/ {print $1}' "$TMP/kids.perf")
  awk -v n="$n" -v p="$pm" -v k="$km" -v d="$DURATION" 'BEGIN {
    printf " without strace: %.0f req/s; CPU us/request: parent %.2f, children %.2f, total %.2f\n",
      n / d, p * 1000 / n, k * 1000 / n, (p + k) * 1000 / n }'
}

for s in $SCENARIOS; do
  case $s in
    close) lua=close mi=1 ka=worker ;;
    ka_worker) lua=keepalive mi=64 ka=worker ;;
    ka_master) lua=keepalive mi=1 ka=master ;;
    *) echo "unknown scenario $s" >&2; exit 1 ;;
  esac
  start_forkpool $mi $ka
  measure "forkpool $s (max_inflight $mi, keepalive $ka)" $lua "$SERVER"
  stop_server
  if [[ $s != ka_master && $REF == 1 ]]; then
    start_ref
    measure "prefork_ref fdpass $s (max_inflight 1)" $lua "$SERVER"
    stop_server
  fi
done
