#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/wsgi_cpu_per_request.sh: CPU time per request of forkpool-wsgi and of gunicorn's
# sync worker, one worker each (WORKERS=N: N each), the same app. CPU time (the scheduler's count in /proc/PID/schedstat,
# worker and master apart) is what a request costs the server, and unlike req/s it hardly
# depends on what else runs on the machine. By hand; never from CI or ctest.
#
#   bench/wsgi_cpu_per_request.sh                 # Flask app of the tests
#   APP=plain DURATION=10 bench/wsgi_cpu_per_request.sh
#   BUILD=build/default bench/wsgi_cpu_per_request.sh
#
# Scenarios: close (one request per connection, wrk -c16 close.lua: the worker always
# has the next connection waiting, so it never sleeps and its caches stay warm) and
# keep-alive (wrk -c1: one client per worker; gunicorn's sync worker closes anyway). forkpool-wsgi runs twice: keepalive =
# "worker" and keepalive = "master" (fp_park: each keep-alive request is a park + resume).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LUA=$ROOT/bench/lua
APPS=$ROOT/tests/integration/wsgi_apps
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-$ROOT/build/release}
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
APP=${APP:-flask}
DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
WORKERS=${WORKERS:-1}  # worker processes of each server; their CPU times are added
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
FORKPOOL=${FORKPOOL:-$BUILD/supervisor/forkpool}
WSGI=${WSGI:-$BUILD/forkpool-wsgi}
[[ -x $FORKPOOL && -x $WSGI ]] || { echo "build $FORKPOOL and $WSGI first" >&2; exit 1; }
case $APP in
  flask) APP_SPEC=flask_app:app ;;
  plain) APP_SPEC=bench_app:application ;;
  *) echo "APP is flask or plain" >&2; exit 1 ;;
esac

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
cat >"$TMP/bench_app.py" <<'PY'
def application(environ, start_response):
    body = b"Hello, world\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
PY

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # PORT
  for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done
  echo "nothing answers on port $1" >&2; tail -n 20 "$TMP"/*.log "$TMP"/*/log >&2; exit 1
}
cpu_ns() { # PID...: nanoseconds on a CPU, all threads (the scheduler's own count, /proc/PID/schedstat)
  local t=0 p
  for p in "$@"; do t=$((t + $(cut -d' ' -f1 "/proc/$p/schedstat"))); done
  echo "$t"
}

declare -A PORT MASTER
port=$(free_port)
taskset -c "$SERVER_CPU" "$PYTHON" -m gunicorn -w "$WORKERS" -k sync -b "127.0.0.1:$port" --backlog 1024 \
  --pythonpath "$APPS,$TMP" --log-level warning "$APP_SPEC" >"$TMP/gunicorn.log" 2>&1 &
PIDS+=($!); PORT[gunicorn]=$port; MASTER[gunicorn]=$!
for name in fp fp_park; do
  port=$(free_port); mkdir -p "$TMP/$name"
  cat >"$TMP/$name/f.toml" <<TOML
[supervisor]
control_socket = "ctl.sock"
log_level = "warn"
[pools.app]
command = ["$WSGI", "--pythonpath", "$APPS", "--pythonpath", "$TMP", "$APP_SPEC"]
listen = ["tcp://127.0.0.1:$port"]
workers = $WORKERS
ready = "notify"
$([[ $name == fp_park ]] && echo 'keepalive = "master"')
TOML
  taskset -c "$SERVER_CPU" "$FORKPOOL" -c "$TMP/$name/f.toml" >"$TMP/$name/log" 2>&1 &
  PIDS+=($!); PORT[$name]=$port; MASTER[$name]=$!
done
for s in gunicorn fp fp_park; do wait_http "${PORT[$s]}"; done

printf '%-10s %-10s %10s %14s %14s %8s\n' server scenario requests "worker us/req" "master us/req" errors
for scen in close keepalive; do
  for s in gunicorn fp fp_park; do
    w=$(pgrep -P "${MASTER[$s]}" | tr '\n' ' ')
    script=close.lua conns=$CONNS
    [[ $scen == keepalive ]] && script=keepalive.lua conns=1
    w0=$(cpu_ns $w); m0=$(cpu_ns "${MASTER[$s]}")
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"$DURATION"s --timeout 10s -s "$LUA/$script" \
      "http://127.0.0.1:${PORT[$s]}/" >"$TMP/out" 2>&1 || true
    w1=$(cpu_ns $w); m1=$(cpu_ns "${MASTER[$s]}")
    n=$(sed -nE 's/^RESULT .*requests=([0-9]+) errors=([0-9]+) status=([0-9]+).*/\1/p' "$TMP/out")
    e=$(sed -nE 's/^RESULT .*errors=([0-9]+) status=([0-9]+).*/\1+\2/p' "$TMP/out")
    ((n > 0)) || { cat "$TMP/out" >&2; n=1; }
    printf '%-10s %-10s %10d %14.1f %14.1f %8s\n' "$s" "$scen" "$n" \
      "$(echo "($w1 - $w0) / 1000 / $n" | bc -l)" "$(echo "($m1 - $m0) / 1000 / $n" | bc -l)" "$((e))"
  done
done
