#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Chaos soak: forkpool under load while its workers are killed, stopped, scaled,
restarted and reloaded, the master upgrades its binary in place, and its descriptors
run short. At the end the master's
accounting must balance exactly and every request the client saw fail must match a
connection the master counted as lost with a killed worker.

Run through scripts/soak.sh, which builds what it needs; standard library only.
Traffic goes to 127.0.0.1 only, bounded in time.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HELLO_BODY = b"Hello, world\n"


def config_text(args, workers, mark, graceful):
    # flap_restarts: the soak SIGKILLs a worker every second or two, far more than the
    # default 10 in a minute that marks a pool failed (a real crash loop); the flap history
    # is carried across the upgrades the soak does too, so it adds up.
    return f"""[supervisor]
control_socket = "ctl.sock"
log_level = "info"
shutdown_timeout = "20s"

[pools.mweb]
command = ["{args.hello}"]
dispatch = "master"
listen = ["tcp://127.0.0.1:0"]
workers = {workers}
queue_timeout = "30s"
graceful_timeout = "{graceful}"
flap_restarts = 100000
env = {{ MARK = "{mark}" }}

[pools.sweb]
command = ["{args.hello}"]
dispatch = "shared"
listen = ["tcp://127.0.0.1:0"]
workers = 3
graceful_timeout = "{graceful}"
flap_restarts = 100000
env = {{ MARK = "{mark}" }}
"""


class Master:
    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.config = os.path.join(workdir, "soak.toml")
        self.log_path = os.path.join(workdir, "master.log")
        self.write_config(4, "a", "10s")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([args.forkpool, "-c", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def write_config(self, workers, mark, graceful):
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(config_text(self.args, workers, mark, graceful))
        os.rename(tmp, self.config)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, deadline=30):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            m = re.search(pattern, self.log_text())
            if m:
                return m
            if self.proc.poll() is not None:
                raise SystemExit("soak: the master exited early:\n" + self.log_text()[-4000:])
            time.sleep(0.05)
        raise SystemExit(f"soak: no log line matching {pattern!r} within {deadline}s")

    def request(self, obj, timeout=20):
        """One control request on its own connection; the reply as a dict."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(os.path.join(self.dir, "ctl.sock"))
            s.sendall((json.dumps(obj) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return json.loads(buf.decode())
        finally:
            s.close()

    def status(self):
        return self.request({"cmd": "status"})

    def pool(self, name):
        for p in self.status()["pools"]:
            if p["name"] == name:
                return p
        return None


class Client:
    """Sequential Connection: close requests from a few threads; every outcome counted."""

    def __init__(self, address, threads, stop):
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.stop = stop
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.reasons = {}
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def one(self):
        s = socket.create_connection((self.host, self.port), timeout=60)
        try:
            s.settimeout(60)
            s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        if not data.startswith(b"HTTP/1.1 200") or not data.endswith(HELLO_BODY):
            raise ValueError("short or wrong answer (%d bytes)" % len(data))

    def run(self):
        while not self.stop.is_set():
            try:
                self.one()
                with self.lock:
                    self.ok += 1
            except Exception as e:  # every failure is counted and named
                reason = type(e).__name__ + ": " + str(e)[:80]
                with self.lock:
                    self.failed += 1
                    self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def join(self):
        for t in self.threads:
            t.join(timeout=120)


def worker_pids(pool):
    return [w["pid"] for w in pool["workers"] if w["role"] == "serving" and w["pid"] > 0]


def chaos(master, args, stop, counts, rng):
    stopped = []
    workers, mark, graceful = 4, "a", "10s"
    while not stop.is_set():
        time.sleep(rng.uniform(0.2, 0.6))
        if stop.is_set():
            break
        action = rng.choice(["kill", "kill", "stop", "scale", "restart", "reload", "reload", "fds", "upgrade"])
        name = rng.choice(["mweb", "sweb"])
        try:
            pool = master.pool(name)
            pids = worker_pids(pool) if pool else []
            if action == "kill" and pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                counts["kill_" + name] += 1
            elif action == "stop" and pids:
                pid = rng.choice(pids)
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
                time.sleep(rng.uniform(0.2, 1.0))
                os.kill(pid, signal.SIGCONT)
                stopped.remove(pid)
                counts["stop"] += 1
            elif action == "scale" and name == "mweb":
                n = rng.randint(2, 6)
                master.request({"cmd": "scale", "pool": name, "workers": n})
                counts["scale"] += 1
            elif action == "restart":
                master.request({"cmd": "restart", "pool": name})
                counts["restart"] += 1
            elif action == "reload":
                # Half of them replace every worker (env), half change both pools in place
                # (graceful_timeout; mweb's size too): shared workers keep accepting on the
                # listener they set up, which the master must leave as they set it.
                workers = rng.randint(2, 6)
                if rng.random() < 0.5:
                    mark = "b" if mark == "a" else "a"
                else:
                    graceful = "11s" if graceful == "10s" else "10s"
                master.write_config(workers, mark, graceful)
                reply = master.request({"cmd": "reload"})
                if not reply.get("ok"):
                    raise SystemExit("soak: reload refused: " + json.dumps(reply))
                counts["reload"] += 1
            elif action == "upgrade":
                # The binary re-executes itself in place; workers, listeners and counters stay.
                reply = master.request({"cmd": "upgrade"})
                counts["upgrade" if reply.get("ok") else "upgrade_refused"] += 1
            elif action == "fds":
                # The master's descriptors run short for a moment: it must pause and recover.
                # Only the soft limit moves ("N:"), so raising it back needs no privilege.
                pid = master.proc.pid
                soft = subprocess.run(["prlimit", f"--pid={pid}", "--nofile", "--noheadings", "--output=SOFT"],
                                      check=True, capture_output=True, text=True).stdout.strip()
                used = len(os.listdir(f"/proc/{pid}/fd"))
                subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={used + 4}:"], check=True)
                time.sleep(rng.uniform(0.3, 0.8))
                subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True)
                counts["fds"] += 1
        except (ProcessLookupError, ConnectionError, FileNotFoundError, socket.timeout):
            pass  # the worker was gone already, or the control socket busy: chaos goes on
        except subprocess.CalledProcessError as e:
            counts.setdefault("errors", []).append(str(e))
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def settle(master, deadline=60):
    """Waits until nothing is queued or in flight and every pool has its workers ready."""
    end = time.monotonic() + deadline
    st = None
    while time.monotonic() < end:
        st = master.status()
        quiet = all(p["queue"]["length"] == 0 and p["counters"]["in_flight"] == 0 and
                    p["ready"] == p["target"] and p["live"] == p["target"] for p in st["pools"])
        if quiet:
            return st
        time.sleep(0.1)
    raise SystemExit("soak: the pools did not settle:\n" + json.dumps(st, indent=1)[:4000])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--forkpool", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    workdir = tempfile.mkdtemp(prefix="forkpool-soak-")
    master = Master(args, workdir)
    problems = []
    try:
        master.wait_log(r"\[master\.ready\]")
        addr = {name: master.wait_log(rf"pool {name} listens on tcp://(\S+)").group(1) for name in ("mweb", "sweb")}
        stop = threading.Event()
        clients = {"mweb": Client(addr["mweb"], 6, stop), "sweb": Client(addr["sweb"], 4, stop)}
        counts = {k: 0 for k in ("kill_mweb", "kill_sweb", "stop", "scale", "restart", "reload", "fds", "upgrade",
                                 "upgrade_refused")}
        chaos_stop = threading.Event()
        chaos_thread = threading.Thread(target=chaos, args=(master, args, chaos_stop, counts, rng), daemon=True)
        chaos_thread.start()
        time.sleep(args.seconds)
        chaos_stop.set()
        chaos_thread.join(timeout=30)
        # Load goes on a little while the pools recover, then stops.
        time.sleep(1)
        stop.set()
        for c in clients.values():
            c.join()
        st = settle(master)

        m = next(p for p in st["pools"] if p["name"] == "mweb")
        c = m["counters"]
        queued = m["queue"]["length"]
        # The documented identities (docs/protocol.md, supervisor/dispatch/dispatcher.hpp).
        if c["accepted"] != c["dispatched"] + queued + c["queue_timeouts"] + c["closed"]:
            problems.append("mweb: accepted != dispatched + queued + queue_timeouts + closed: %s" % c)
        if c["dispatched"] != c["completed"] + c["in_flight"] + c["lost"]:
            problems.append("mweb: dispatched != completed + in_flight + lost: %s" % c)
        mc, sc = clients["mweb"], clients["sweb"]
        # Every failure a client saw is a connection lost with a killed worker.
        if mc.failed > c["lost"] + c["queue_timeouts"]:
            problems.append("mweb: %d client failures but only %d connections lost with killed workers"
                            % (mc.failed, c["lost"]))
        # Shared dispatch: the master does not see connections; a killed worker can take
        # at most the connections the clients had open with it.
        if sc.failed > counts["kill_sweb"] * len(sc.threads):
            problems.append("sweb: %d client failures for %d kills" % (sc.failed, counts["kill_sweb"]))
        if master.proc.poll() is not None:
            problems.append("the master exited during the soak")
        for e in counts.pop("errors", []):
            problems.append("chaos step failed: " + e)
        for line in master.log_text().splitlines():
            if "critical" in line or "AddressSanitizer" in line or "runtime error" in line:
                problems.append("log: " + line)

        print("soak: %.0fs, seed %d" % (args.seconds, seed))
        print("  chaos: " + ", ".join("%s %d" % kv for kv in counts.items()))
        print("  mweb: client ok %d failed %d; master accepted %d dispatched %d completed %d lost %d "
              "queue_timeouts %d closed %d" % (mc.ok, mc.failed, c["accepted"], c["dispatched"], c["completed"],
                                               c["lost"], c["queue_timeouts"], c["closed"]))
        print("  sweb: client ok %d failed %d" % (sc.ok, sc.failed))
        for name, cl in clients.items():
            for reason, n in sorted(cl.reasons.items()):
                print("    %s failure x%d: %s" % (name, n, reason))
    finally:
        if master.proc.poll() is None:
            master.proc.send_signal(signal.SIGTERM)
            try:
                master.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                master.proc.kill()
                master.proc.wait()
                problems.append("the master did not stop within 40 s of SIGTERM")
        if master.proc.returncode not in (0, None):
            problems.append("the master exited with %s" % master.proc.returncode)
    if problems:
        print("soak: FAILED (log in %s)" % master.log_path)
        for p in problems:
            print("  " + p)
        return 1
    print("soak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
