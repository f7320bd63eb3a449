#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/pool_size_scale.py FORKPOOL HELLO: what the master spends per connection as a
master-dispatch pool grows. Run by hand (never from CI or ctest).

For each pool size in SIZES (4,64,1000), RUNS (3) times in turn: starts one pool of
forkpool-hello workers (max_inflight 1), waits until all are ready, runs wrk -t1 -cCONNS
(64; more than the workers to keep the pool saturated) with one request per connection (bench/lua/close.lua) for DURATION (5) s on CLIENT_CPU (1), and
reads the master's and the workers' CPU time (/proc/PID/schedstat) around it. Prints the
median [range] of connections/s and of the master's and the workers' CPU per connection
for each size, and the master's per-connection CPU as a ratio to the first size's: the
cost of choosing a worker among many (docs/performance.md, "Pool size").
"""
import os
import resource
import statistics
import subprocess
import sys
import time

from hello_master import cpu_ms, hello_master


def one_run(forkpool, hello, workers, conns, duration, client_cpu, lua):
    with hello_master(forkpool, hello, workers, "max_inflight = 1\n") as (proc, sock):
        time.sleep(1)  # the last READY records and the first status reads settle
        children = lambda: open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        workers_cpu = lambda: sum(cpu_ms(int(p)) for p in children())
        m0, w0 = cpu_ms(proc.pid), workers_cpu()
        out = subprocess.run(["taskset", "-c", client_cpu, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "-s", lua,
                              f"http://127.0.0.1:{proc.port}/"], capture_output=True, text=True, check=True).stdout
        m1, w1 = cpu_ms(proc.pid), workers_cpu()
        result = next(line for line in out.splitlines() if line.startswith("RESULT"))
        n = int(result.split("requests=")[1].split()[0])
        return n / duration, 1000 * (m1 - m0) / n, 1000 * (w1 - w0) / n


def main():
    forkpool, hello = sys.argv[1:3]
    sizes = [int(s) for s in os.environ.get("SIZES", "4,64,1000").split(",")]
    runs = int(os.environ.get("RUNS", "3"))
    conns = int(os.environ.get("CONNS", "64"))
    duration = int(os.environ.get("DURATION", "5"))
    client_cpu = os.environ.get("CLIENT_CPU", "1")
    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lua", "close.lua")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * max(sizes) + 2 * conns + 256)), hard))
    rows = {s: [] for s in sizes}
    for _ in range(runs):
        for s in sizes:
            rows[s].append(one_run(forkpool, hello, s, conns, duration, client_cpu, lua))
    fmt = lambda v: f"{statistics.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]"
    base = statistics.median(r[1] for r in rows[sizes[0]])
    for s in sizes:
        rps, master, workers = zip(*rows[s])
        print(f"{s:5d} workers: conn/s {fmt(rps)}, master us/conn {fmt(master)} "
              f"(x{statistics.median(master) / base:.2f} of {sizes[0]}), workers us/conn {fmt(workers)}; "
              f"{os.getloadavg()[0]:.2f} load")


if __name__ == "__main__":
    main()
