#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/respawn.py FORKPOOL HELLO PREFORK_REF: how long a pool goes without a worker
after one is SIGKILLed, until its replacement has answered a request. Run by hand (never
from CI or ctest); bench/run.sh runs it at its end with the release binaries.

Every server runs ONE worker, so nothing else can answer: the time measured is from the
kill(2) until the first complete "200 OK" to a client that starts asking right after the
kill (it retries at once when the dying worker took its connection with it). Servers:

  forkpool master   master dispatch: the master holds the connection until the
                    replacement is ready, then passes it
  forkpool shared   the replacement accepts from the inherited listener
  prefork_ref       shared mode with --respawn: the parent forks a fresh child (no exec),
                    the C limit
  gunicorn          sync worker, a three-line WSGI app (when python3-gunicorn is installed)

forkpool restarts a worker that had been healthy (ready and up for a second or more) at
once; a worker that dies again within the healthy-run window is restarted with backoff.
So every run starts a fresh server, waits until its worker is ready and 1.2 s old, kills
it once and stops the server. RUNS (7) runs per server, interleaved. Prints the median
and range in milliseconds, and each server's ratio to prefork_ref.
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from hello_master import free_port, recv_until

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def get_ok(port, timeout):
    """One request; True on a 200 response."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(REQUEST)
        data = recv_until(s, b"\r\n", 256)
        return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        return False
    finally:
        s.close()


def wait_serving(port, deadline):
    while time.monotonic() < deadline:
        if get_ok(port, 1.0):
            return True
        time.sleep(0.0002)
    return False


def start(kind, bins, tmp, port):
    forkpool, hello, ref = bins
    if kind.startswith("forkpool"):
        dispatch = kind.split()[1]
        conf = os.path.join(tmp, f"{dispatch}.toml")
        with open(conf, "w") as f:
            f.write(f'[supervisor]\ncontrol_socket = "{tmp}/{dispatch}.sock"\nlog_level = "warn"\n\n'
                    f'[pools.web]\ncommand = ["{hello}"]\ndispatch = "{dispatch}"\n'
                    f'listen = ["tcp://127.0.0.1:{port}"]\nworkers = 1\nmax_inflight = 1\n')
        return subprocess.Popen([forkpool, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kind == "prefork_ref":
        return subprocess.Popen([ref, "--listen", f"127.0.0.1:{port}", "--workers", "1", "--mode", "shared",
                                 "--respawn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = os.path.join(tmp, "respawn_app.py")
    with open(app, "w") as f:
        f.write("def app(environ, start_response):\n"
                "    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '13')])\n"
                "    return [b'Hello, world\\n']\n")
    return subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
                             "--bind", f"127.0.0.1:{port}", "--chdir", tmp, "--log-level", "warning",
                             "respawn_app:app"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one_run(kind, bins, tmp):
    port = free_port()
    server = start(kind, bins, tmp, port)
    try:
        if not wait_serving(port, time.monotonic() + 30):
            raise RuntimeError(f"{kind} did not serve on port {port}")
        time.sleep(1.2)  # a healthy run: ready, and up for longer than the start-up grace
        workers = children(server.pid)
        if len(workers) != 1:
            raise RuntimeError(f"{kind}: expected one worker process, found {workers}")
        t0 = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        if not wait_serving(port, t0 + 10):
            raise RuntimeError(f"{kind}: no answer within 10 s of the kill")
        elapsed = (time.monotonic() - t0) * 1000
        replacement = children(server.pid)
        if workers[0] in replacement:
            raise RuntimeError(f"{kind}: the killed worker still runs")
        return elapsed
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def have_gunicorn():
    return subprocess.run([sys.executable, "-c", "import gunicorn"], capture_output=True).returncode == 0


def main():
    bins = sys.argv[1:4]
    runs = int(os.environ.get("RUNS", "7"))
    kinds = ["forkpool master", "forkpool shared", "prefork_ref"]
    if have_gunicorn():
        kinds.append("gunicorn")
    times = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            for k in kinds:
                times[k].append(one_run(k, bins, tmp))
    ref = statistics.median(times["prefork_ref"])
    print(f"a SIGKILLed worker replaced and serving (1 worker, {runs} runs), ms: median [range], ratio to prefork_ref")
    for k in kinds:
        v = times[k]
        m = statistics.median(v)
        print(f"  {k:16s} {m:7.2f} [{min(v):.2f}-{max(v):.2f}]  x{m / ref:.2f}")
    print(f"  load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
