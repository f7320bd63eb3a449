#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/status_scale.py FORKPOOL HELLO: how long `status` of one pool of WORKERS (1000)
forkpool-hello workers takes. Run by hand (never from CI or ctest).

Starts the master, waits until every worker is ready, then sends RUNS (21) `status`
requests on the control socket, one at a time, and prints the median and range of the
round trip (wall) and of the master's own CPU time per request (/proc/PID/schedstat,
which machine load affects far less). The master reads each worker's /proc/PID/stat at
most once a second (supervisor/process/worker_usage.hpp), so it prints two lines:
"fresh", COLD_RUNS (5) requests each more than a second after the previous one (every
worker's /proc figures are read again), and "within 1 s", RUNS requests back to back.
"""
import os
import statistics
import sys
import time

from hello_master import control_request, cpu_ms, hello_master


def main():
    forkpool, hello = sys.argv[1:3]
    workers = int(os.environ.get("WORKERS", "1000"))
    runs = int(os.environ.get("RUNS", "21"))
    cold_runs = int(os.environ.get("COLD_RUNS", "5"))
    fmt = lambda v: f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
    with hello_master(forkpool, hello, workers) as (proc, sock):
        # The first status opens every worker's /proc/PID/stat: not counted.
        size = ask(proc, sock)[2]
        cold = []
        for _ in range(cold_runs):
            time.sleep(1.1)
            cold.append(ask(proc, sock))
        warm = [ask(proc, sock) for _ in range(runs)]
    for name, rows in (("fresh", cold), ("within 1 s", warm)):
        walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
        print(f"status of {workers} workers ({size} bytes), {name}: {len(rows)} requests, ms: "
              f"round trip {fmt(walls)}, master CPU {fmt(cpus)}; {os.getloadavg()[0]:.2f} load")


def ask(proc, sock):
    """One status request: (round trip ms, master CPU ms, reply bytes)."""
    c0, t0 = cpu_ms(proc.pid), time.monotonic()
    reply = control_request(sock, {"cmd": "status"})
    return (time.monotonic() - t0) * 1000, cpu_ms(proc.pid) - c0, len(reply)


if __name__ == "__main__":
    main()
