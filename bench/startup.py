#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/startup.py: how fast a pool of N workers starts, forkpool against prefork_ref.

Used by bench/startup.sh (which builds and passes the binaries). For each run it starts
the server on a port chosen beforehand and measures, from the moment of the exec:
  first   the first HTTP response (a client retries connect every 0.2 ms while refused;
          a connection accepted before any worker is ready simply waits for one)
  ready   forkpool: the log line "every pool has its workers ready" (every worker sent
          READY); prefork_ref: "listening on" (printed once every child is forked)
  cpu     the master's (parent's) own user+system CPU time at that point, from
          /proc/PID/schedstat: load on the machine changes it much less than wall times
Prints the median and range over RUNS runs, interleaving the two servers.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from hello_master import cpu_ms, free_port


def first_response(port, t0, deadline, out):
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            time.sleep(0.0002)
            continue
        try:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.sendall(request)
            data = s.recv(64)
            if data.startswith(b"HTTP/1.1 200"):
                out["first"] = (time.monotonic() - t0) * 1000
                return
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.0002)


def run_once(argv, ready_text, port, workdir):
    out = {}
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = t0 + 30
    client = threading.Thread(target=first_response, args=(port, t0, deadline, out))
    client.start()
    for line in proc.stdout:
        if ready_text in line:
            out["ready"] = (time.monotonic() - t0) * 1000
            out["cpu"] = cpu_ms(proc.pid)
            break
    client.join()
    proc.terminate()
    # Drain so the server never blocks on a full pipe while it stops.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return out


def main():
    forkpool, hello, ref = sys.argv[1:4]
    workers = int(os.environ.get("WORKERS", "64"))
    runs = int(os.environ.get("RUNS", "5"))
    dispatch = os.environ.get("DISPATCH", "master")
    results = {"forkpool": [], "prefork_ref": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            port = free_port()
            config = os.path.join(tmp, "forkpool.toml")
            with open(config, "w") as f:
                f.write(f'[supervisor]\nlog_level = "info"\nshutdown_timeout = "10s"\n\n'
                        f'[pools.web]\ncommand = ["{hello}"]\ndispatch = "{dispatch}"\n'
                        f'listen = ["tcp://127.0.0.1:{port}"]\nworkers = {workers}\n')
            results["forkpool"].append(run_once([forkpool, "-c", config], b"every pool has its workers ready", port, tmp))
            port = free_port()
            results["prefork_ref"].append(run_once(
                [ref, "--listen", f"127.0.0.1:{port}", "--workers", str(workers), "--mode", "shared"],
                b"listening on", port, tmp))
    print(f"{workers} workers ({dispatch} dispatch for forkpool), {runs} runs, medians [range], milliseconds")
    print(f"{'server':12} {'first response':>22} {'all ready':>22} {'master CPU':>22}")
    for name, rs in results.items():
        cells = []
        for key in ("first", "ready", "cpu"):
            v = [r[key] for r in rs if key in r]
            cells.append(f"{statistics.median(v):7.1f} [{min(v):.1f}-{max(v):.1f}]" if v else "n/a")
        print(f"{name:12} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22}")


if __name__ == "__main__":
    main()
