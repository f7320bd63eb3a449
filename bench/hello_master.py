# SPDX-License-Identifier: Apache-2.0
"""What the Python benchmarks share: one master with one pool of forkpool-hello workers
in a temporary folder, started and waited for; a process's CPU time; a free port; one
control-socket request."""
import contextlib
import json
import os
import socket
import subprocess
import tempfile


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def control_request(sock, request):
    """Sends one request (a dict) on the control socket; returns the raw reply line."""
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.sendall(json.dumps(request).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        d = c.recv(1 << 20)
        if not d:
            break
        buf += d
    c.close()
    return buf


def recv_until(sock, marker, chunk=4096):
    """Reads from `sock` until `marker` has arrived or the peer closed; returns the bytes."""
    data = b""
    while marker not in data:
        more = sock.recv(chunk)
        if not more:
            break
        data += more
    return data


def cpu_ms(pid):
    """CPU time of a process so far (/proc/PID/schedstat), in milliseconds."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6


@contextlib.contextmanager
def hello_master(forkpool, hello, workers, pool_settings="", prefix=()):
    """Yields (master process, control socket path) once every worker is ready; the
    master is stopped at the end. Paths are made absolute (the master resolves a relative
    command against the config's folder). `pool_settings`: more TOML lines for the pool;
    `prefix`: a command the master runs under (taskset)."""
    forkpool, hello = os.path.abspath(forkpool), os.path.abspath(hello)
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "forkpool.toml")
        sock = os.path.join(tmp, "forkpool.sock")
        with open(config, "w") as f:
            f.write(f'[supervisor]\ncontrol_socket = "{sock}"\nshutdown_timeout = "20s"\n\n'
                    f'[pools.web]\ncommand = ["{hello}"]\nlisten = ["tcp://127.0.0.1:0"]\nworkers = {workers}\n'
                    f'{pool_settings}')
        proc = subprocess.Popen([*prefix, forkpool, "-c", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        port = None
        for line in proc.stdout:
            if b"listens on tcp://127.0.0.1:" in line and port is None:
                port = int(line.split(b"listens on tcp://127.0.0.1:")[1].split()[0])
            if b"every pool has its workers ready" in line:
                break
        else:
            raise SystemExit(f"{forkpool} exited before its workers were ready")
        # Keeps reading the log so the master never blocks on a full pipe.
        subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
        proc.port = port
        try:
            yield proc, sock
        finally:
            proc.terminate()
            proc.wait(timeout=60)
