#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run.sh: forkpool against a plain C prefork reference server, side by side, in
# one run. Run by hand on a quiet machine; never from CI or ctest (docs/performance.md).
#
#   bench/run.sh                    # build the release preset, then measure (~9 minutes)
#   SKIP_BUILD=1 bench/run.sh       # measure the binaries already in build/release
#   RUNS=5 DURATION=10 bench/run.sh # more and longer runs
#
# What it measures (every scenario RUNS times, interleaved across servers so that a
# burst of noise hits all of them alike; the table shows medians):
#   1. throughput: keep-alive requests/s and p99, and one-request-per-connection
#      ("Connection: close") connections/s, for forkpool-hello under forkpool in
#      master and shared dispatch, and for bench/reference/prefork_ref with one
#      SO_REUSEPORT listener per process, with one shared listener, and in fdpass mode
#      (the C limit of master dispatch: the parent accepts and passes each connection
#      with SCM_RIGHTS to the least-busy blocking child, max_inflight 1), which is
#      compared with master dispatch at max_inflight = 1;
#   2. fairness: FAST_CONNS clients doing short requests on / while SLOW_CONNS
#      clients keep /sleep?ms=SLEEP_MS requests in flight (each blocks its process);
#      the p99 of the fast requests only, for master least-busy, master round-robin,
#      shared, and the references;
#   3. ab -n 20000 -c 32 against master dispatch (failures must be 0);
#   4. keep-alive parking (keepalive = "master", issue 13): the fairness mix of 2. with
#      keep-alive clients (KA_SLOW_CONNS slow, FAST_CONNS fast) on max_inflight = 1
#      pools, worker-held keep-alive against parked; and plain keep-alive throughput
#      (CONNS connections, max_inflight MAX_INFLIGHT) parked against worker-held, which
#      is the price of one PARK and one resume per request;
#   5. (EXTRAS=1, the default) a SIGKILLed worker replaced and serving
#      (bench/respawn.py), 64 workers started (bench/startup.py), each against
#      prefork_ref, and the master's memory with 4 workers (bench/master_memory.sh).
# Servers run on SERVER_CPU (forkpool's workers inherit the master's affinity), the
# load generators on CLIENT_CPU.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}  # another build folder for a quick smoke run
LUA=$ROOT/bench/lua

WORKERS=${WORKERS:-4}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}           # seconds per throughput measurement
CONNS=${CONNS:-64}                # wrk connections for throughput
MAX_INFLIGHT=${MAX_INFLIGHT:-64}  # master dispatch, throughput pools: >= CONNS / WORKERS
FAIR_DURATION=${FAIR_DURATION:-8} # seconds of fast load per fairness measurement
FAST_CONNS=${FAST_CONNS:-16}
SLOW_CONNS=${SLOW_CONNS:-2}
SLEEP_MS=${SLEEP_MS:-100}
KA_SLOW_CONNS=${KA_SLOW_CONNS:-3}
AB_REQUESTS=${AB_REQUESTS:-20000}
AB_CONCURRENCY=${AB_CONCURRENCY:-32}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v ab >/dev/null || need_pkgs+=(apache2-utils)
command -v python3 >/dev/null || need_pkgs+=(python3)
[[ -e /usr/lib/x86_64-linux-gnu/cmake/benchmark || -e /usr/lib/cmake/benchmark ]] ||
  dpkg -s libbenchmark-dev >/dev/null 2>&1 || need_pkgs+=(libbenchmark-dev)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  SUDO=; ((EUID == 0)) || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi

# --- build -------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cd "$ROOT"
  # FORKPOOL_BENCH=ON adds bench/ (prefork_ref, shm_bench).
  log "building the release preset"
  cmake --preset release -DFORKPOOL_BENCH=ON -DFORKPOOL_WERROR=ON >/dev/null
  cmake --build --preset release -j2 --target forkpool forkpool-hello prefork_ref >/dev/null
fi
FORKPOOL=$BUILD/supervisor/forkpool
HELLO=$BUILD/worker/hello/forkpool-hello
REF=$BUILD/bench/prefork_ref
for b in "$FORKPOOL" "$HELLO" "$REF"; do [[ -x $b ]] || die "$b is missing (build first)"; done

# --- pinning -----------------------------------------------------------------------
ncpu=$(nproc)
if ((ncpu >= 2)) && command -v taskset >/dev/null; then
  ON_SERVER=(taskset -c "$SERVER_CPU")
  ON_CLIENT=(taskset -c "$CLIENT_CPU")
else
  log "one CPU or no taskset: not pinning"
  ON_SERVER=()
  ON_CLIENT=()
fi

# --- servers -----------------------------------------------------------------------
TMP=$(mktemp -d /tmp/forkpool-bench.XXXXXX)
declare -A PORT PID
cleanup() {
  for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
  for name in "${!PID[@]}"; do wait "${PID[$name]}" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_line() { # FILE REGEX SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -qE "$2" "$1" && return 0
    sleep 0.1
  done
  return 1
}

check_http() { # NAME: one request must answer "Hello, world"
  local body
  body=$(curl --noproxy '*' -s --max-time 5 "http://127.0.0.1:${PORT[$1]}/") || true
  [[ $body == "Hello, world" ]] || die "$1 does not answer on port ${PORT[$1]} (got: ${body:0:80})"
}

start_forkpool() { # NAME DISPATCH MAX_INFLIGHT BALANCE [KEEPALIVE]
  local name=$1 dir=$TMP/$1
  mkdir -p "$dir"
  cat >"$dir/forkpool.toml" <<EOF
[supervisor]
control_socket = "forkpool.sock"
log_level = "info"
shutdown_timeout = "5s"

[pools.web]
command = ["$HELLO"]
dispatch = "$2"
listen = ["tcp://127.0.0.1:0"]
workers = $WORKERS
max_inflight = $3
balance = "$4"
keepalive = "${5:-worker}"
EOF
  "${ON_SERVER[@]}" "$FORKPOOL" -c "$dir/forkpool.toml" >"$dir/master.log" 2>&1 &
  PID[$name]=$!
  wait_for_line "$dir/master.log" '\[master.ready\]' 15 || die "$name did not start: $(tail -5 "$dir/master.log")"
  PORT[$name]=$(sed -n 's/.*\[listener.open\] pool web listens on tcp:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$dir/master.log" | head -1)
  check_http "$name"
  log "$name: forkpool dispatch=$2 max_inflight=$3 balance=$4 keepalive=${5:-worker} on port ${PORT[$name]}"
}

start_ref() { # NAME MODE [MORE OPTIONS]
  local name=$1 dir=$TMP/$1
  mkdir -p "$dir"
  "${ON_SERVER[@]}" "$REF" --listen 127.0.0.1:0 --workers "$WORKERS" --mode "$2" "${@:3}" >"$dir/ref.log" 2>&1 &
  PID[$name]=$!
  wait_for_line "$dir/ref.log" 'listening on' 15 || die "$name did not start: $(cat "$dir/ref.log")"
  PORT[$name]=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$dir/ref.log")
  check_http "$name"
  log "$name: prefork_ref --mode $2 ${*:3} on port ${PORT[$name]}"
}

# Every server is started once and stays up; idle ones sleep in epoll_wait.
start_forkpool fp_master master "$MAX_INFLIGHT" least-busy   # throughput
start_forkpool fp_master_1 master 1 least-busy               # fairness, close (informational)
start_forkpool fp_master_rr master 1 round-robin             # fairness
start_forkpool fp_shared shared 1 least-busy                 # max_inflight/balance unused
start_forkpool fp_park master "$MAX_INFLIGHT" least-busy master  # keep-alive throughput, parked
start_forkpool fp_park_1 master 1 least-busy master           # keep-alive fairness, parked
start_ref ref_reuseport reuseport
start_ref ref_shared shared
start_ref ref_fdpass fdpass --max-inflight 1   # the C limit of fp_master_1

RESULTS=$TMP/results.tsv
: >"$RESULTS"

wrk_run() { # OUT CONNS SECONDS SCRIPT URL
  "${ON_CLIENT[@]}" wrk -t1 -c"$2" -d"$3"s --timeout 5s --latency -s "$LUA/$4" "$5" >"$1" 2>&1 || true
}

result_of() { # wrk output file -> "rps p99_us errors status"
  local line
  line=$(grep '^RESULT' "$1" || true)
  [[ -n $line ]] || { log "wrk failed: $(tail -3 "$1")"; echo "0 0 1 0"; return; }
  sed -E 's/.*rps=([0-9.]+) p99_us=([0-9]+).* errors=([0-9]+) status=([0-9]+).*/\1 \2 \3 \4/' <<<"$line"
}

record() { # SCENARIO SERVER RUN "rps p99 errors status"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(tr ' ' '\t' <<<"$4")" >>"$RESULTS"
}

load1() { cut -d' ' -f1 /proc/loadavg; }
LOAD_START=$(load1)
T0=$SECONDS

log "warming up"
for name in "${!PORT[@]}"; do wrk_run "$TMP/warm.out" 16 1 keepalive.lua "http://127.0.0.1:${PORT[$name]}/"; done

# --- 1. throughput -------------------------------------------------------------------
# Each forkpool server is measured right next to its reference, so that the per-run
# ratios compare measurements taken under the same background load.
KA_SERVERS=(fp_master ref_reuseport fp_shared ref_shared fp_master_1 ref_fdpass)
CLOSE_SERVERS=(fp_master ref_reuseport fp_master_1 ref_fdpass fp_shared ref_shared)
for ((run = 1; run <= RUNS; run++)); do
  for name in "${KA_SERVERS[@]}"; do
    wrk_run "$TMP/out" "$CONNS" "$DURATION" keepalive.lua "http://127.0.0.1:${PORT[$name]}/"
    record keepalive "$name" "$run" "$(result_of "$TMP/out")"
  done
  for name in "${CLOSE_SERVERS[@]}"; do
    wrk_run "$TMP/out" "$CONNS" "$DURATION" close.lua "http://127.0.0.1:${PORT[$name]}/"
    record close "$name" "$run" "$(result_of "$TMP/out")"
  done
  log "throughput run $run/$RUNS done (load average $(load1))"
done

# --- 2. fairness ---------------------------------------------------------------------
# Fast and slow clients use "Connection: close": with max_inflight = 1 a keep-alive
# client would hold its worker for the whole run (SPEC section 3). The slow client
# starts first and runs longer, so SLOW_CONNS sleeps are in flight throughout.
FAIR_SERVERS=(fp_master_1 ref_fdpass ref_reuseport fp_shared fp_master_rr ref_shared)
for ((run = 1; run <= RUNS; run++)); do
  for name in "${FAIR_SERVERS[@]}"; do
    url="http://127.0.0.1:${PORT[$name]}"
    wrk_run "$TMP/slow.out" "$SLOW_CONNS" $((FAIR_DURATION + 2)) close.lua "$url/sleep?ms=$SLEEP_MS" &
    slow=$!
    sleep 1
    wrk_run "$TMP/fast.out" "$FAST_CONNS" "$FAIR_DURATION" close.lua "$url/"
    wait "$slow"
    record fair_fast "$name" "$run" "$(result_of "$TMP/fast.out")"
    record fair_slow "$name" "$run" "$(result_of "$TMP/slow.out")"
  done
  log "fairness run $run/$RUNS done (load average $(load1))"
done

# --- 3. ab ---------------------------------------------------------------------------
AB_OUT=$TMP/ab.txt
: >"$AB_OUT"
for name in fp_master fp_master_1; do
  "${ON_CLIENT[@]}" ab -q -n "$AB_REQUESTS" -c "$AB_CONCURRENCY" "http://127.0.0.1:${PORT[$name]}/" >"$TMP/ab.out" 2>&1 || true
  printf '%s\t%s\t%s\t%s\n' "$name" \
    "$(sed -n 's/^Complete requests: *//p' "$TMP/ab.out")" \
    "$(sed -n 's/^Failed requests: *//p' "$TMP/ab.out")" \
    "$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$TMP/ab.out")" >>"$AB_OUT"
  grep -q '^Non-2xx' "$TMP/ab.out" && grep '^Non-2xx' "$TMP/ab.out" >&2
done

# --- 4. keep-alive parking -------------------------------------------------------------
# The fairness mix with keep-alive clients. Held by workers (fp_master_1), the first
# connections occupy every max_inflight = 1 worker for the whole run and the rest wait;
# parked (fp_park_1), a worker is busy only while a request is in flight.
KA_FAIR_SERVERS=(fp_master_1 fp_park_1 ref_reuseport)
for ((run = 1; run <= RUNS; run++)); do
  for name in "${KA_FAIR_SERVERS[@]}"; do
    url="http://127.0.0.1:${PORT[$name]}"
    wrk_run "$TMP/slow.out" "$KA_SLOW_CONNS" $((FAIR_DURATION + 2)) keepalive.lua "$url/sleep?ms=$SLEEP_MS" &
    slow=$!
    sleep 1
    wrk_run "$TMP/fast.out" "$FAST_CONNS" "$FAIR_DURATION" keepalive.lua "$url/"
    wait "$slow"
    record ka_fair_fast "$name" "$run" "$(result_of "$TMP/fast.out")"
    record ka_fair_slow "$name" "$run" "$(result_of "$TMP/slow.out")"
  done
  for name in fp_master fp_park; do
    wrk_run "$TMP/out" "$CONNS" "$DURATION" keepalive.lua "http://127.0.0.1:${PORT[$name]}/"
    record ka_park "$name" "$run" "$(result_of "$TMP/out")"
  done
  log "keep-alive parking run $run/$RUNS done (load average $(load1))"
done

# --- health: a crashed worker makes every number above meaningless ------------------
CRASHES=0
for name in "${!PID[@]}"; do
  [[ -f $TMP/$name/master.log ]] || continue
  n=$(grep -c '\[worker.exit\]' "$TMP/$name/master.log" || true)
  if ((n > 0)); then
    log "WARNING: $name: $n worker exit(s) during the run:"
    grep -E '\[worker.exit\]|AddressSanitizer|double free|corrupt' "$TMP/$name/master.log" | head -5 >&2
    CRASHES=$((CRASHES + n))
  fi
done
for name in ref_reuseport ref_shared ref_fdpass; do
  grep -q 'exited unexpectedly' "$TMP/$name/ref.log" && { log "WARNING: $name lost a child"; CRASHES=$((CRASHES + 1)); }
done

# --- report --------------------------------------------------------------------------
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
printf '\nmachine: %s CPU(s), %s, kernel %s, %s; load average %s at start, %s at end; %ss\n' \
  "$ncpu" "${cpu_model:-unknown CPU}" "$(uname -r)" "$mem" "$LOAD_START" "$(load1)" $((SECONDS - T0))
printf 'worker exits during the run (must be 0): %s\n' "$CRASHES"
printf 'settings: %s workers; throughput: wrk -t1 -c%s -d%ss, master max_inflight=%s (max_inflight=1 rows and fdpass: 1); fairness: %s fast + %s slow (/sleep?ms=%s) connections, %ss, master max_inflight=1; %s runs, medians; server CPU %s, client CPU %s\n' \
  "$WORKERS" "$CONNS" "$DURATION" "$MAX_INFLIGHT" "$FAST_CONNS" "$SLOW_CONNS" "$SLEEP_MS" "$FAIR_DURATION" "$RUNS" "$SERVER_CPU" "$CLIENT_CPU"

python3 - "$RESULTS" "$AB_OUT" "$MAX_INFLIGHT" <<'PY'
import statistics
import sys

rows = {}
errors = {}
for line in open(sys.argv[1]):
    scen, server, run, rps, p99, err, status = line.split("\t")
    rows.setdefault((scen, server), []).append((float(rps), int(p99) / 1000.0, int(run)))
    errors[(scen, server)] = errors.get((scen, server), 0) + int(err) + int(status)

def med(scen, server, i):
    v = rows.get((scen, server))
    return statistics.median(x[i] for x in v) if v else float("nan")

def spread(scen, server, i):
    v = rows.get((scen, server))
    return "%.0f-%.0f" % (min(x[i] for x in v), max(x[i] for x in v)) if v else "-"

label = {
    "fp_master": "forkpool master (max_inflight=%s)" % sys.argv[3],
    "fp_master_1": "forkpool master (max_inflight=1, least-busy)",
    "fp_master_rr": "forkpool master (max_inflight=1, round-robin)",
    "fp_shared": "forkpool shared",
    "fp_park": "forkpool master, keepalive=master (max_inflight=%s)" % sys.argv[3],
    "fp_park_1": "forkpool master, keepalive=master (max_inflight=1)",
    "ref_reuseport": "prefork_ref SO_REUSEPORT",
    "ref_shared": "prefork_ref shared listener",
    "ref_fdpass": "prefork_ref fdpass (max_inflight=1)",
}

print("\n## Raw medians (range over runs in brackets; errors = socket errors + non-2xx, all runs)\n")
print("| scenario | server | req/s (or conn/s) | p99 ms | errors |")
print("|---|---|---:|---:|---:|")
for scen, title in [("keepalive", "keep-alive"), ("close", "Connection: close"),
                    ("fair_fast", "fairness: fast clients"), ("fair_slow", "fairness: slow clients"),
                    ("ka_fair_fast", "keep-alive fairness: fast clients"),
                    ("ka_fair_slow", "keep-alive fairness: slow clients"),
                    ("ka_park", "keep-alive throughput")]:
    for server in label:
        if (scen, server) not in rows:
            continue
        print("| %s | %s | %.0f [%s] | %.2f | %d |" % (
            title, label[server],
            med(scen, server, 0), spread(scen, server, 0), med(scen, server, 1), errors[(scen, server)]))

def paired(scen, a, sb, b, i):
    """Median over runs of a/b, each run's two measurements taken back to back."""
    va = {x[2]: x[i] for x in rows.get((scen, a), [])}
    vb = {x[2]: x[i] for x in rows.get((sb, b), [])}
    r = [va[k] / vb[k] for k in va if k in vb and vb[k]]
    return (statistics.median(r), min(r), max(r)) if r else (float("nan"),) * 3

def line(what, a, b, value_a, value_b, target, ok, fmt="%.0f", scen=None, i=0):
    ratio = value_a / value_b if value_b else float("nan")
    pm, lo, hi = paired(scen, a, scen, b, i)
    print("| %s | %s | %s | %.3f | %.3f [%.2f-%.2f] | %s | %s |" % (
        what, fmt % value_a, fmt % value_b, ratio, pm, lo, hi, target, "yes" if ok(pm) else "NO"))

print("\n## Targets\n")
print("ratio of medians, and the median of the per-run ratios (forkpool and reference measured")
print("back to back; range in brackets), which decides 'met'.\n")
print("| measure | forkpool | reference | ratio of medians | per-run ratio | target | met |")
print("|---|---:|---:|---:|---:|---|---|")
line("master, Connection: close conn/s vs SO_REUSEPORT", "fp_master", "ref_reuseport",
     med("close", "fp_master", 0), med("close", "ref_reuseport", 0), ">= 0.85", lambda r: r >= 0.85, scen="close")
line("master, keep-alive req/s vs SO_REUSEPORT", "fp_master", "ref_reuseport",
     med("keepalive", "fp_master", 0), med("keepalive", "ref_reuseport", 0), ">= 0.95", lambda r: r >= 0.95, scen="keepalive")
line("shared, keep-alive req/s vs shared reference", "fp_shared", "ref_shared",
     med("keepalive", "fp_shared", 0), med("keepalive", "ref_shared", 0), ">= 0.97", lambda r: r >= 0.97, scen="keepalive")
line("shared, Connection: close conn/s vs shared reference", "fp_shared", "ref_shared",
     med("close", "fp_shared", 0), med("close", "ref_shared", 0), ">= 0.97", lambda r: r >= 0.97, scen="close")
line("master max_inflight=1, Connection: close conn/s vs fdpass reference", "fp_master_1", "ref_fdpass",
     med("close", "fp_master_1", 0), med("close", "ref_fdpass", 0), ">= 1.00", lambda r: r >= 1.0, scen="close")
line("master max_inflight=1, keep-alive req/s vs fdpass reference", "fp_master_1", "ref_fdpass",
     med("keepalive", "fp_master_1", 0), med("keepalive", "ref_fdpass", 0), ">= 0.95", lambda r: r >= 0.95,
     scen="keepalive")
line("fast p99 ms, master least-busy vs SO_REUSEPORT", "fp_master_1", "ref_reuseport",
     med("fair_fast", "fp_master_1", 1), med("fair_fast", "ref_reuseport", 1), "<= 0.20",
     lambda r: r <= 0.20, "%.2f", scen="fair_fast", i=1)
line("fast p99 ms, master least-busy vs forkpool shared", "fp_master_1", "fp_shared",
     med("fair_fast", "fp_master_1", 1), med("fair_fast", "fp_shared", 1), "<= 1.00",
     lambda r: r <= 1.0, "%.2f", scen="fair_fast", i=1)

print("\n## Informational ratios\n")
print("| measure | forkpool | reference | ratio |")
print("|---|---:|---:|---:|")
def info(what, sa, a, sb, b, i, fmt="%.0f"):
    va, vb = med(sa, a, i), med(sb, b, i)
    print("| %s | %s | %s | %.3f |" % (what, fmt % va, fmt % vb, va / vb if vb else float("nan")))
info("master, close conn/s vs shared reference", "close", "fp_master", "close", "ref_shared", 0)
info("master max_inflight=1, close conn/s vs SO_REUSEPORT", "close", "fp_master_1", "close", "ref_reuseport", 0)
info("master, keep-alive p99 ms vs SO_REUSEPORT", "keepalive", "fp_master", "keepalive", "ref_reuseport", 1, "%.2f")
info("shared, keep-alive p99 ms vs shared reference", "keepalive", "fp_shared", "keepalive", "ref_shared", 1, "%.2f")
info("fast p99 ms, master least-busy vs fdpass reference", "fair_fast", "fp_master_1", "fair_fast", "ref_fdpass", 1, "%.2f")
info("fast p99 ms, master round-robin vs SO_REUSEPORT", "fair_fast", "fp_master_rr", "fair_fast", "ref_reuseport", 1, "%.2f")
info("fast p99 ms, forkpool shared vs SO_REUSEPORT", "fair_fast", "fp_shared", "fair_fast", "ref_reuseport", 1, "%.2f")
info("fast p99 ms, forkpool shared vs shared reference", "fair_fast", "fp_shared", "fair_fast", "ref_shared", 1, "%.2f")

print("\n## Keep-alive parking (keepalive = \"master\")\n")
print("| measure | parked | held by workers | ratio |")
print("|---|---:|---:|---:|")
info("keep-alive mix, fast p99 ms, max_inflight=1", "ka_fair_fast", "fp_park_1", "ka_fair_fast", "fp_master_1", 1, "%.2f")
info("keep-alive mix, fast req/s, max_inflight=1", "ka_fair_fast", "fp_park_1", "ka_fair_fast", "fp_master_1", 0)
info("keep-alive mix, fast p99 ms, parked vs SO_REUSEPORT", "ka_fair_fast", "fp_park_1", "ka_fair_fast", "ref_reuseport", 1, "%.2f")
info("keep-alive req/s, max_inflight=%s (cost of PARK + resume)" % sys.argv[3], "ka_park", "fp_park", "ka_park", "fp_master", 0)

print("\n## ab (one request per connection, HTTP/1.0)\n")
print("| server | complete | failed | req/s |")
print("|---|---:|---:|---:|")
for l in open(sys.argv[2]):
    name, complete, failed, rps = (l.rstrip("\n").split("\t") + ["", "", ""])[:4]
    print("| %s | %s | %s | %s |" % (label[name], complete or "-", failed or "-", rps or "-"))
PY

# --- respawn, start-up and memory ---------------------------------------------------
# The other figures of issue 15's table, each against prefork_ref in the same run (their
# scripts say how they measure; docs/performance.md). The servers above are stopped first.
cleanup
trap - EXIT
if [[ ${EXTRAS:-1} == 1 ]]; then
  # Debian's python3, which has python3-gunicorn, even where another python3 comes first.
  PY=/usr/bin/python3
  [[ -x $PY ]] || PY=python3
  printf '\n## Respawn (bench/respawn.py)\n\n```\n'
  RUNS=${RESPAWN_RUNS:-7} "$PY" "$ROOT/bench/respawn.py" "$FORKPOOL" "$HELLO" "$REF"
  printf '```\n\n## Start-up of 64 workers (bench/startup.py)\n\n```\n'
  WORKERS=64 "$PY" "$ROOT/bench/startup.py" "$FORKPOOL" "$HELLO" "$REF"
  printf '```\n\n## Master memory, 4 workers (bench/master_memory.sh)\n\n```\n'
  SKIP_BUILD=1 BUILD=$BUILD SIZES=4 "$ROOT/bench/master_memory.sh" 2>&1 | tail -n +3
  printf '```\n'
fi
