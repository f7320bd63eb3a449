#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/status_scale.py FORKPOOL HELLO: how long `status` of one pool of WORKERS (1000)
forkpool-hello workers takes. Run by hand (never from CI or ctest).

Starts the master, waits until every worker is ready, then sends RUNS (21) `status`
requests on the control socket, one at a time, and prints the median and range of the
round trip (wall) and of the master's own CPU time per request (/proc/PID/schedstat,
which machine load affects far less).
"""
import os
import socket
import statistics
import sys
import time

from hello_master import cpu_ms, hello_master


def main():
    forkpool, hello = sys.argv[1:3]
    workers = int(os.environ.get("WORKERS", "1000"))
    runs = int(os.environ.get("RUNS", "21"))
    with hello_master(forkpool, hello, workers) as (proc, sock):
        walls, cpus, size = [], [], 0
        for _ in range(runs):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            c0, t0 = cpu_ms(proc.pid), time.monotonic()
            s.sendall(b'{"cmd":"status"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(1 << 20)
                if not d:
                    break
                buf += d
            walls.append((time.monotonic() - t0) * 1000)
            cpus.append(cpu_ms(proc.pid) - c0)
            size = len(buf)
            s.close()
    fmt = lambda v: f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
    print(f"status of {workers} workers ({size} bytes), {runs} requests, ms: "
          f"round trip {fmt(walls)}, master CPU {fmt(cpus)}; {os.getloadavg()[0]:.2f} load")


if __name__ == "__main__":
    main()
