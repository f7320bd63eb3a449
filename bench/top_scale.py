#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/top_scale.py FORKPOOL FORKPOOLCTL HELLO: the CPU time one refresh of
`forkpoolctl top` costs with one pool of WORKERS (1000) forkpool-hello workers, and what
the master spends meanwhile. Run by hand (never from CI or ctest).

Starts the master, waits until every worker is ready, runs `forkpoolctl top --interval
INTERVAL_MS` (100) in a pseudo-terminal (script(1)), lets it attach and draw for a second,
then measures top's and the master's CPU time (/proc/PID/schedstat) over SECONDS (5) and
divides by the frames drawn in that time (SECONDS * 1000 / INTERVAL_MS). RUNS (5) times.
"""
import os
import statistics
import subprocess
import sys
import time

from hello_master import cpu_ms, hello_master


def descendant_named(root, name, deadline):
    """The pid of a process called `name` below `root` (script runs it through a shell)."""
    while time.monotonic() < deadline:
        parents, named = {}, []
        for task in os.listdir("/proc"):
            if not task.isdigit():
                continue
            try:
                with open(f"/proc/{task}/stat") as f:
                    parents[int(task)] = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{task}/comm") as f:
                    if f.read().strip() == name:
                        named.append(int(task))
            except OSError:
                continue
        for pid in named:
            p = pid
            while p in parents and p not in (root, 0, 1):
                p = parents[p]
            if p == root:
                return pid
        time.sleep(0.01)
    raise SystemExit(f"no {name} below pid {root}")


def main():
    forkpool, ctl, hello = sys.argv[1:4]
    ctl = os.path.abspath(ctl)
    workers = int(os.environ.get("WORKERS", "1000"))
    runs = int(os.environ.get("RUNS", "5"))
    seconds = float(os.environ.get("SECONDS", "5"))
    interval = int(os.environ.get("INTERVAL_MS", "100"))
    rows = int(os.environ.get("ROWS", "60"))  # the terminal's height
    with hello_master(forkpool, hello, workers) as (proc, sock):
        tops, masters = [], []
        for _ in range(runs):
            term = subprocess.Popen(
                ["script", "-qfc", f"stty rows {rows} cols 200; exec {ctl} -s {sock} top --interval {interval}",
                 "/dev/null"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            top = descendant_named(term.pid, "forkpoolctl", time.monotonic() + 10)
            time.sleep(1.0)  # attached, a few frames drawn
            t0, m0 = cpu_ms(top), cpu_ms(proc.pid)
            time.sleep(seconds)
            frames = seconds * 1000 / interval
            tops.append((cpu_ms(top) - t0) / frames)
            masters.append((cpu_ms(proc.pid) - m0) / frames)
            term.terminate()
            os.kill(top, 15)
            term.wait(timeout=10)
    fmt = lambda v: f"{statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}]"
    print(f"top refresh of {workers} workers on a 200x{rows} terminal, every {interval} ms, "
          f"{runs} runs of {seconds:.0f} s, CPU ms per frame: top {fmt(tops)}, master {fmt(masters)}; {os.getloadavg()[0]:.2f} load")


if __name__ == "__main__":
    main()
