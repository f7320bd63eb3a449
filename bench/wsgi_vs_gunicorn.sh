#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/wsgi_vs_gunicorn.sh: forkpool-wsgi against gunicorn's sync workers, the same WSGI
# app and the same number of worker processes, side by side. By hand on a quiet machine;
# never from CI or ctest (docs/performance.md, docs/wsgi.md).
#
#   bench/wsgi_vs_gunicorn.sh                  # the Flask app of the tests, 4 workers
#   APP=plain bench/wsgi_vs_gunicorn.sh        # a bare WSGI callable: the servers' own cost
#   RUNS=5 DURATION=10 bench/wsgi_vs_gunicorn.sh
#   BUILD=build/default SKIP_BUILD=1 bench/wsgi_vs_gunicorn.sh   # the binaries already built
#
# Scenarios (each RUNS times, servers interleaved; medians):
#   1. throughput, one request per connection (gunicorn's sync workers close every
#      connection): wrk -c CONNS, close.lua;
#   2. throughput with keep-alive, one client per worker (wrk -c WORKERS): gunicorn
#      still closes; forkpool-wsgi keeps the connection;
#   3. slow mix: SLOW_CONNS clients keep /sleep?ms=SLEEP_MS in flight while FAST_CONNS
#      clients GET /; the fast requests' p99. With keepalive = "master" (when the master
#      supports it) and in shared dispatch the fast clients also run with keep-alive.
# forkpool-wsgi runs three ways: master dispatch (fp_wsgi), master dispatch with
# keepalive = "master" (fp_wsgi_park), shared dispatch (fp_wsgi_shared: the workers
# accept, as gunicorn's do).
# Servers run on SERVER_CPU, wrk on CLIENT_CPU.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LUA=$ROOT/bench/lua
APPS=$ROOT/tests/integration/wsgi_apps
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-$ROOT/build/release}
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD

APP=${APP:-flask}
WORKERS=${WORKERS:-4}
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
FAST_CONNS=${FAST_CONNS:-16}
SLOW_CONNS=${SLOW_CONNS:-3}
SLEEP_MS=${SLEEP_MS:-100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

case $APP in
  flask) APP_SPEC=flask_app:app ;;
  plain) APP_SPEC=bench_app:application ;;
  *) die "APP is flask or plain, not $APP" ;;
esac

need=()
command -v wrk >/dev/null || need+=(wrk)
"$PYTHON" -c 'import gunicorn' 2>/dev/null || need+=(python3-gunicorn)
"$PYTHON" -c 'import flask' 2>/dev/null || need+=(python3-flask)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  SUDO=; ((EUID == 0)) || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building forkpool (release preset)"
  (cd "$ROOT" && cmake --preset release >/dev/null && cmake --build --preset release -j2 --target forkpool >/dev/null)
fi
FORKPOOL=${FORKPOOL:-$BUILD/supervisor/forkpool}  # another master binary: FORKPOOL=...
WSGI=${WSGI:-$BUILD/forkpool-wsgi}
[[ -x $FORKPOOL && -x $WSGI ]] || die "$FORKPOOL or $WSGI is missing (build first)"

ncpu=$(nproc)
if ((ncpu >= 2)) && command -v taskset >/dev/null; then
  ON_SERVER=(taskset -c "$SERVER_CPU")
  ON_CLIENT=(taskset -c "$CLIENT_CPU")
else
  ON_SERVER=()
  ON_CLIENT=()
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # PORT
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  die "nothing answers on port $1"
}

# A bare WSGI callable (APP=plain): what is left is the servers' own cost.
cat >"$TMP/bench_app.py" <<'EOF'
import time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        ms = int(environ.get("QUERY_STRING", "ms=100").partition("=")[2] or 100)
        time.sleep(ms / 1000.0)
    body = b"Hello, world\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
EOF

declare -A PORT
start_gunicorn() {
  local port
  port=$(free_port)
  "${ON_SERVER[@]}" "$PYTHON" -m gunicorn -w "$WORKERS" -k sync -b "127.0.0.1:$port" --backlog 1024 \
    --pythonpath "$APPS,$TMP" --log-level warning "$APP_SPEC" >"$TMP/gunicorn.log" 2>&1 &
  PIDS+=($!)
  PORT[gunicorn]=$port
}
start_forkpool() { # NAME KEEPALIVE|shared
  local port dir=$TMP/$1 how
  case $2 in
    master) how='max_inflight = 1
keepalive = "master"' ;;
    worker) how='max_inflight = 1' ;;
    shared) how='dispatch = "shared"' ;;
  esac
  port=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/f.toml" <<EOF
[supervisor]
control_socket = "ctl.sock"
log_level = "warn"
[pools.app]
command = ["$WSGI", "--pythonpath", "$APPS", "--pythonpath", "$TMP", "$APP_SPEC"]
listen = ["tcp://127.0.0.1:$port"]
workers = $WORKERS
ready = "notify"
queue_timeout = "30s"
$how
EOF
  if ! "$FORKPOOL" --check -c "$dir/f.toml" >/dev/null 2>&1; then
    log "$1: this forkpool does not accept the configuration ($2); skipped"
    return 1
  fi
  "${ON_SERVER[@]}" "$FORKPOOL" -c "$dir/f.toml" >"$dir/log" 2>&1 &
  PIDS+=($!)
  PORT[$1]=$port
}

start_gunicorn
start_forkpool fp_wsgi worker
SERVERS=(gunicorn fp_wsgi)
start_forkpool fp_wsgi_park master && SERVERS+=(fp_wsgi_park)
start_forkpool fp_wsgi_shared shared && SERVERS+=(fp_wsgi_shared)
for s in "${SERVERS[@]}"; do wait_http "${PORT[$s]}"; done

wrk_run() { # OUT CONNS SECONDS SCRIPT URL
  "${ON_CLIENT[@]}" wrk -t1 -c"$2" -d"$3"s --timeout 10s --latency -s "$LUA/$4" "$5" >"$1" 2>&1 || true
}
RESULTS=$TMP/results.tsv
record() { # SCENARIO SERVER OUTFILE
  local line
  line=$(grep '^RESULT' "$3" || echo "RESULT rps=0 p99_us=0 p50_us=0 requests=0 errors=1 status=0")
  printf '%s\t%s\t%s\n' "$1" "$2" "$(sed -E 's/.*rps=([0-9.]+) p99_us=([0-9]+).* errors=([0-9]+) status=([0-9]+).*/\1\t\2\t\3\t\4/' <<<"$line")" >>"$RESULTS"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "warming up (load average $LOAD_START)"
for s in "${SERVERS[@]}"; do wrk_run "$TMP/warm" "$CONNS" 1 close.lua "http://127.0.0.1:${PORT[$s]}/"; done

for ((run = 1; run <= RUNS; run++)); do
  for s in "${SERVERS[@]}"; do
    url=http://127.0.0.1:${PORT[$s]}
    wrk_run "$TMP/out" "$CONNS" "$DURATION" close.lua "$url/"
    record close "$s" "$TMP/out"
    wrk_run "$TMP/out" "$WORKERS" "$DURATION" keepalive.lua "$url/"
    record keepalive "$s" "$TMP/out"
    # Slow mix: the slow clients start first and end last.
    wrk_run "$TMP/slow" "$SLOW_CONNS" $((DURATION + 2)) close.lua "$url/sleep?ms=$SLEEP_MS" &
    slow=$!
    sleep 1
    fast_script=close.lua
    [[ $s == fp_wsgi_park || $s == fp_wsgi_shared ]] && fast_script=keepalive.lua
    wrk_run "$TMP/out" "$FAST_CONNS" "$DURATION" "$fast_script" "$url/"
    wait "$slow"
    record slowmix_fast "$s" "$TMP/out"
  done
  log "run $run/$RUNS done"
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
"$PYTHON" - "$RESULTS" "$APP" "$WORKERS" "$CONNS" "$FAST_CONNS" "$SLOW_CONNS" "$SLEEP_MS" "$RUNS" "$DURATION" <<'EOF'
import collections, statistics, sys
path, app, workers, conns, fast, slow, sleep_ms, runs, duration = sys.argv[1:]
data = collections.defaultdict(list)
for line in open(path):
    scen, server, rps, p99, errors, status = line.split("\t")
    data[scen, server].append((float(rps), int(p99) / 1000.0, int(errors) + int(status)))
servers = [s for s in ("gunicorn", "fp_wsgi", "fp_wsgi_park", "fp_wsgi_shared") if ("close", s) in data]
print("app %s, %s workers, %s runs of %ss (medians); close: wrk -c%s; keepalive: wrk -c%s; "
      "slow mix: %s fast + %s slow (/sleep?ms=%s)" % (app, workers, runs, duration, conns, workers, fast, slow, sleep_ms))
print("median (lowest-highest of the runs)")
print("%-26s" % "" + "".join("%24s" % s for s in servers))
def med(scen, server, i):
    return statistics.median(r[i] for r in data[scen, server])
def cell(scen, server, i):
    v = [r[i] for r in data[scen, server]]
    return "%.1f (%.1f-%.1f)" % (statistics.median(v), min(v), max(v))
for scen, label in (("close", "req/s, close"), ("keepalive", "req/s, keep-alive"), ("slowmix_fast", "slow mix: fast p99 ms")):
    i = 1 if scen == "slowmix_fast" else 0
    print("%-26s" % label + "".join("%24s" % cell(scen, s, i) for s in servers))
print("%-26s" % "errors (all scenarios)" + "".join(
    "%24d" % sum(r[2] for k, v in data.items() if k[1] == s for r in v) for s in servers))
g = lambda scen, i: med(scen, "gunicorn", i)
for s in servers[1:]:
    print("%s vs gunicorn: close req/s x%.2f (target >= 1.0), keep-alive req/s x%.2f, slow-mix fast p99 x%.2f (target <= 0.5)"
          % (s, med("close", s, 0) / g("close", 0), med("keepalive", s, 0) / g("keepalive", 0),
             med("slowmix_fast", s, 1) / max(g("slowmix_fast", 1), 1e-9)))
EOF
echo "load average (1, 5, 15 min): $LOAD_START at the start, $LOAD_END at the end"
