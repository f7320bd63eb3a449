#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/parked_scale.py FORKPOOL HELLO: does dispatch slow down with 10,000 parked or
queued connections in the master? Run by hand (never from CI or ctest).

One master-dispatch pool of 4 forkpool-hello workers, max_inflight = 1,
keepalive = "master" (keepalive_timeout "0": a parked connection stays until its client
closes it), on CPU 0; the clients on CPU 1.

parked   wrk, one request per connection, DURATION (5) s, with no parked connections and
         then with PARKED (10,000) idle keep-alive connections parked in the master
         (each sent one request and waits), RUNS (3) times in alternation. Prints
         conn/s and the master's CPU time per connection (/proc/PID/schedstat).
queued   BURST connections sent at once (each one request), so that all but 4 wait in
         the master's queue, for BURST = 1,000 and QUEUED (10,000): the time until every
         one is answered and the master's CPU per connection. A queue whose operations
         grew with its length would show as a lower rate and more CPU per connection
         for the deeper queue.

Needs RLIMIT_NOFILE above PARKED + 100 for this process and the master (it raises its
soft limit to the hard one).
"""
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time

from hello_master import control_request, cpu_ms, hello_master

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HERE = os.path.dirname(os.path.abspath(__file__))


def complete(buf):
    """True once buf holds one whole response (headers and Content-Length body)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    length = 0
    for line in buf[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return len(buf) >= head_end + 4 + length


def one_request_each(port, n, keep):
    """Opens n connections, sends one keep-alive request on each at once, reads every
    response; returns (seconds until the last response, the sockets if keep)."""
    socks = []
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(REQUEST)
        socks.append(s)
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    left = n
    deadline = time.monotonic() + 120
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            if not data:
                raise SystemExit("a connection closed before its response")
            bufs[s] += data
            if complete(bufs[s]):
                sel.unregister(s)
                left -= 1
    elapsed = time.monotonic() - t0
    sel.close()
    if left:
        raise SystemExit(f"{left} of {n} responses missing after 120 s")
    if not keep:
        for s in socks:
            s.close()
        socks = []
    return elapsed, socks


def parked_now(sock):
    return json.loads(control_request(sock, {"cmd": "status"}))["pools"][0]["counters"]["parked_now"]


def wrk_close(port, duration):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{duration}s", "-s",
                          os.path.join(HERE, "lua", "close.lua"), f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split("=") for kv in out.split("RESULT ")[1].split())
    return float(fields["rps"]), int(fields["requests"]), int(fields["errors"]) + int(fields["status"])


def main():
    forkpool, hello = sys.argv[1:3]
    parked = int(os.environ.get("PARKED", "10000"))
    queued = int(os.environ.get("QUEUED", "10000"))
    runs = int(os.environ.get("RUNS", "3"))
    duration = int(os.environ.get("DURATION", "5"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < max(parked, queued) + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low for {max(parked, queued)} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})
    settings = (f'max_inflight = 1\nkeepalive = "master"\nkeepalive_timeout = "0"\n'
                f'max_parked = {parked + 100}\nqueue_limit = {queued + 100}\n')
    rows = {"0 parked": [], f"{parked} parked": []}
    with hello_master(forkpool, hello, 4, settings, prefix=("taskset", "-c", "0")) as (proc, sock):
        port = proc.port
        wrk_close(port, 1)  # warm-up
        for _ in range(runs):
            for name in rows:
                idle = []
                if name != "0 parked":
                    idle = one_request_each(port, parked, keep=True)[1]
                    deadline = time.monotonic() + 30
                    while parked_now(sock) < parked and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if parked_now(sock) < parked:
                        raise SystemExit(f"only {parked_now(sock)} of {parked} connections parked")
                c0 = cpu_ms(proc.pid)
                rps, n, errors = wrk_close(port, duration)
                cpu = cpu_ms(proc.pid) - c0
                rows[name].append((rps, cpu * 1000 / n, errors))
                for s in idle:
                    s.close()
                deadline = time.monotonic() + 30
                while parked_now(sock) > 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
        bursts = {}
        for n in (1000, queued):
            c0 = cpu_ms(proc.pid)
            elapsed = one_request_each(port, n, keep=False)[0]
            bursts[n] = (n / elapsed, (cpu_ms(proc.pid) - c0) * 1000 / n)
    fmt = lambda v, f: f"{statistics.median(v):{f}} [{min(v):{f}}-{max(v):{f}}]"
    print(f"master dispatch, keepalive = master, 4 workers, max_inflight 1; {runs} runs, median [range]")
    print(f"{'':18s} {'close conn/s':>24s} {'master CPU us/conn':>24s} errors")
    for name, r in rows.items():
        print(f"{name:18s} {fmt([x[0] for x in r], '.0f'):>24s} {fmt([x[1] for x in r], '.1f'):>24s} "
              f"{sum(x[2] for x in r)}")
    base = statistics.median(x[0] for x in rows["0 parked"])
    print(f"ratio with {parked} parked: {statistics.median(x[0] for x in rows[f'{parked} parked']) / base:.3f}")
    for n, (rate, cpu) in bursts.items():
        print(f"burst of {n:5d} (queued in the master): {rate:8.0f} conn/s drained, master CPU {cpu:.1f} us/conn")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
