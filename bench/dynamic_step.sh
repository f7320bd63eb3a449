#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/dynamic_step.sh: how fast a dynamic pool catches up with a step in load, side by
# side with a fixed pool of the size the step needs (the ideal). Run by hand on a quiet
# machine; never from CI or ctest (docs/performance.md).
#
#   bench/dynamic_step.sh                     # build the release preset, then measure (~1 minute)
#   SKIP_BUILD=1 bench/dynamic_step.sh        # measure the binaries already in build/release
#   BUILD=build/default SKIP_BUILD=1 bench/dynamic_step.sh   # a quick look with the debug build
#   RUNS=3 STEP=64 bench/dynamic_step.sh
#
# What it measures: a master-dispatch pool of forkpool-hello at rest (dynamic: min_workers =
# MIN, max_workers = STEP, spare_workers = 0; fixed: workers = STEP), then at t = 0 a step to
# STEP concurrent clients, each sending GET /sleep?ms=SLEEP_MS (Connection: close) in a loop
# for DURATION seconds. Every SAMPLE_MS the master's queue-wait histogram is read (forkpoolctl
# metrics) and the p99 of the connections dispatched in that window is computed from the
# bucket differences. The result per pool: the time from the step until the windowed p99 of
# the queue wait is under TARGET_MS and stays there, the time until the pool reached STEP
# workers, and the client-side p99 latency over the whole run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
[[ $BUILD = /* ]] || BUILD=$ROOT/$BUILD
MIN=${MIN:-2}
STEP=${STEP:-32}
SLEEP_MS=${SLEEP_MS:-100}
DURATION=${DURATION:-8}
SAMPLE_MS=${SAMPLE_MS:-100}
TARGET_MS=${TARGET_MS:-5}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-30s}
RUNS=${RUNS:-1}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  cd "$ROOT"
  log "building the release preset"
  cmake --preset release -DFORKPOOL_WERROR=ON >/dev/null
  cmake --build --preset release -j2 --target forkpool forkpoolctl forkpool-hello >/dev/null
fi
FORKPOOL=$BUILD/supervisor/forkpool
CTL=$BUILD/ctl/forkpoolctl
HELLO=$BUILD/worker/hello/forkpool-hello
for b in "$FORKPOOL" "$CTL" "$HELLO"; do [[ -x $b ]] || die "$b is missing (build first)"; done

TMP=$(mktemp -d /tmp/forkpool-dynstep.XXXXXX)
MASTER=
cleanup() {
  [[ -n $MASTER ]] && kill -TERM "$MASTER" 2>/dev/null && wait "$MASTER" 2>/dev/null || true
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

run_one() { # NAME SIZING
  local name=$1 dir=$TMP/$1
  mkdir -p "$dir"
  cat >"$dir/forkpool.toml" <<EOF
[supervisor]
control_socket = "forkpool.sock"
log_level = "info"
shutdown_timeout = "5s"

[pools.web]
command = ["$HELLO"]
listen = ["tcp://127.0.0.1:0"]
max_inflight = 1
queue_timeout = "30s"
$2
EOF
  "$FORKPOOL" -c "$dir/forkpool.toml" >"$dir/master.log" 2>&1 &
  MASTER=$!
  wait_for_line "$dir/master.log" '\[master.ready\]' 15 || die "$name did not start: $(tail -5 "$dir/master.log")"
  local port
  port=$(sed -n 's/.*\[listener.open\] pool web listens on tcp:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$dir/master.log" | head -1)
  python3 - "$name" "$port" "$CTL" "$dir/forkpool.sock" "$STEP" "$SLEEP_MS" "$DURATION" "$SAMPLE_MS" "$TARGET_MS" <<'PY'
import http.client, json, re, subprocess, sys, threading, time

name, port, ctl, sock = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
step, sleep_ms, duration, sample_ms, target_ms = (int(x) for x in sys.argv[5:10])
bucket = re.compile(r'forkpool_queue_wait_seconds_bucket\{pool="web",le="([^"]+)"\} (\d+)')
target = re.compile(r'forkpool_pool_workers_target\{pool="web"\} (\d+)')

def scrape():
    text = subprocess.run([ctl, "-s", sock, "metrics"], capture_output=True, text=True).stdout
    buckets = [(float("inf") if le == "+Inf" else float(le), int(n)) for le, n in bucket.findall(text)]
    t = target.search(text)
    return buckets, int(t.group(1)) if t else -1

def p99_ms(before, after):
    diff = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    total = diff[-1][1] if diff else 0
    if total == 0:
        return None, 0
    for le, n in diff:  # cumulative buckets: the first bound holding 99 %
        if n >= 0.99 * total:
            return le * 1000.0, total
    return float("inf"), total

latencies, stop = [], threading.Event()
lock = threading.Lock()
def client():
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", f"/sleep?ms={sleep_ms}", headers={"Connection": "close"})
            c.getresponse().read()
            c.close()
            with lock:
                latencies.append(time.monotonic() - t0)
        except OSError as e:
            with lock:
                latencies.append(None)

prev, size0 = scrape()
t0 = time.monotonic()
threads = [threading.Thread(target=client, daemon=True) for _ in range(step)]
for t in threads:
    t.start()
windows, full_at = [], (0.0 if size0 >= step else None)
while time.monotonic() - t0 < duration:
    time.sleep(sample_ms / 1000.0)
    cur, size = scrape()
    now = time.monotonic() - t0
    p99, n = p99_ms(prev, cur)
    windows.append((now, p99, n))
    if full_at is None and size >= step:
        full_at = now
    prev = cur
stop.set()
for t in threads:
    t.join()
# Recovered: the first window from which every window with traffic has p99 under target.
recovered = None
for i, (t, p, n) in enumerate(windows):
    if all(q is None or q < target_ms for _, q, _ in windows[i:]):
        recovered = windows[i - 1][0] if i > 0 else 0.0
        break
ok = sorted(x for x in latencies if x is not None)
errors = sum(1 for x in latencies if x is None)
p99_client = ok[int(0.99 * (len(ok) - 1))] * 1000 if ok else float("nan")
fmt = lambda x: "never" if x is None else f"{x:.2f}s"
print(f"RESULT {name} recovered={fmt(recovered)} full={fmt(full_at)} requests={len(ok)} errors={errors} "
      f"client_p99={p99_client:.0f}ms")
PY
  kill -TERM "$MASTER"
  wait "$MASTER" 2>/dev/null || true
  MASTER=
}

declare -a results
for ((r = 1; r <= RUNS; r++)); do
  log "run $r/$RUNS: dynamic $MIN..$STEP"
  results+=("$(run_one dynamic "min_workers = $MIN
max_workers = $STEP
spare_workers = 0
idle_timeout = \"$IDLE_TIMEOUT\"")")
  log "run $r/$RUNS: fixed $STEP"
  results+=("$(run_one fixed "workers = $STEP")")
done

printf '\nstep to %d concurrent %d ms requests (master dispatch, max_inflight 1), queue-wait p99 target %d ms\n' \
  "$STEP" "$SLEEP_MS" "$TARGET_MS"
printf '%-8s %-12s %-12s %-10s %-8s %s\n' pool recovered "at $STEP" requests errors client_p99
for line in "${results[@]}"; do
  # RESULT name recovered=.. full=.. requests=.. errors=.. client_p99=..
  read -r _ name rec full req err p99 <<<"$line"
  printf '%-8s %-12s %-12s %-10s %-8s %s\n' "$name" "${rec#*=}" "${full#*=}" "${req#*=}" "${err#*=}" "${p99#*=}"
done
