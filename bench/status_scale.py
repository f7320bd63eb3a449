#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/status_scale.py FORKPOOL HELLO: how long `status` of one pool of WORKERS (1000)
forkpool-hello workers takes. Run by hand (never from CI or ctest).

Starts the master, waits until every worker is ready, then sends `status` requests on
the control socket, one at a time, and prints the median and range of the round trip
(wall) and of the master's own CPU time per request (/proc/PID/schedstat, which machine
load affects far less). The master reads each worker's CPU time at most once a second,
and its resident set only if it ran since (supervisor/process/worker_usage.hpp), so it
prints three lines:
- "fresh, idle": COLD_RUNS (5) requests, each more than a second after the previous one:
  every worker's CPU-time clock is read again, nothing ran, so no /proc/PID/statm is;
- "fresh, every worker ran": the same, with every worker handed a connection and a
  request before each (WORKERS connections held at once, so each worker gets one): both
  figures of every worker are read again;
- "within 1 s": RUNS (21) requests back to back, nothing read.
"""
import json
import os
import resource
import socket
import statistics
import sys
import time

from hello_master import control_request, cpu_ms, hello_master, recv_until


def main():
    forkpool, hello = sys.argv[1:3]
    workers = int(os.environ.get("WORKERS", "1000"))
    runs = int(os.environ.get("RUNS", "21"))
    cold_runs = int(os.environ.get("COLD_RUNS", "5"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, workers + 256)), hard))
    fmt = lambda v: f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
    with hello_master(forkpool, hello, workers) as (proc, sock):
        # The first status opens every worker's /proc/PID/statm: not counted.
        size = ask(proc, sock)[2]
        idle = []
        for _ in range(cold_runs):
            time.sleep(1.1)
            idle.append(ask(proc, sock))
        ran, served, busy = [], [], []
        for _ in range(cold_runs):
            before = handled(sock)
            time.sleep(1.1)
            touch_every_worker(proc.port, workers)
            # Time for every worker to report its connection done, so the master's CPU time
            # below is the status request's alone (checked: "still busy" is printed).
            time.sleep(0.3)
            row = ask(proc, sock)
            ran.append(row)
            busy.append(sum(1 for p in row[3]["pools"] for w in p["workers"] if w["in_flight"] > 0))
            # A worker counts a connection once it is closed: wait for the closes to land.
            deadline = time.monotonic() + 10
            while True:
                after = handled(sock)
                if sum(after.values()) >= sum(before.values()) + workers or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            served.append(sum(1 for pid, n in after.items() if n > before.get(pid, 0)))
        warm = [ask(proc, sock) for _ in range(runs)]
    for name, rows in (("fresh, idle", idle), (f"fresh, every worker ran ({min(served)} of {workers} did, at most {max(busy)} still busy)", ran),
                       ("within 1 s", warm)):
        walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
        print(f"status of {workers} workers ({size} bytes), {name}: {len(rows)} requests, ms: "
              f"round trip {fmt(walls)}, master CPU {fmt(cpus)}; {os.getloadavg()[0]:.2f} load")


def ask(proc, sock):
    """One status request: (round trip ms, master CPU ms, reply bytes, reply)."""
    c0, t0 = cpu_ms(proc.pid), time.monotonic()
    reply = control_request(sock, {"cmd": "status"})
    return (time.monotonic() - t0) * 1000, cpu_ms(proc.pid) - c0, len(reply), json.loads(reply)


def handled(sock):
    """pid -> connections handled, for every worker."""
    reply = json.loads(control_request(sock, {"cmd": "status"}))
    return {w["pid"]: w["handled"] for p in reply["pools"] for w in p["workers"]}


def touch_every_worker(port, count):
    """Opens `count` keep-alive connections, one request on each, and reads every answer
    before closing any: while all are held, each worker holds one."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for c in conns:
        c.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    for c in conns:
        recv_until(c, b"\r\n\r\n")
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
