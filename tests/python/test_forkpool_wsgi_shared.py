# SPDX-License-Identifier: Apache-2.0
"""forkpool-wsgi in shared dispatch (the workers accept on the inherited listeners, as
gunicorn's sync workers do), under the real master with the Flask app of the
integration tests; and under systemd-socket-activate, without forkpool at all.

Needs the built master (see test_forkpool_wsgi_master.py); skipped without it or Flask.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

from test_forkpool_wsgi_master import APPS, Client, Master, binary_dir, wait_until


def status_workers(master):
    reply = master.ctl("--json", "status")
    return json.loads(reply.stdout)["pools"][0]["workers"]


def get(master, path, close=True):
    client = Client(master)
    try:
        client.sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), b"Connection: close\r\n" if close else b""))
        return client.read_response()
    finally:
        client.close()


class SharedDispatchTest(unittest.TestCase):
    def test_flask_served_by_workers_that_accept(self):
        """GET, a 300 KB POST echoed intact, keep-alive reuse, and the scoreboard counts
        every connection the workers accepted themselves (handled, exactly)."""
        master = Master(self, dispatch="shared", workers=2)
        self.assertEqual(get(master, "/").body, b"Hello from Flask\n")
        body = os.urandom(300 * 1024)
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        response = client.read_response()
        self.assertEqual((response.status, response.body), (200, body))
        pids = set()
        for _ in range(3):  # the same connection, the same worker
            client.sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            response = client.read_response()
            self.assertNotIn("connection", response.headers)
            pids.add(int(response.body))
        self.assertEqual(len(pids), 1)
        client.sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        environ = json.loads(client.read_response().body)
        self.assertEqual((environ["REMOTE_ADDR"], environ["SERVER_NAME"], environ["SERVER_PORT"]),
                         ("127.0.0.1", master.address[0], str(master.address[1])))
        self.assertEqual(get(master, "/missing").status, 404)
        # Three connections: GET /, the keep-alive one, GET /missing.
        self.assertTrue(wait_until(lambda: sum(w["handled"] for w in status_workers(master)) == 3),
                        status_workers(master))
        self.assertNotIn("Traceback", master.log())
        self.assertEqual(master.stop(), 0)

    def test_a_waiting_client_ends_a_keep_alive_connection(self):
        """One worker, one thread, keep-alive timeout 60 s. A second client that connects
        while the worker serves a keep-alive client's request gets that response to say
        Connection: close; one that connects while the keep-alive connection sits idle
        has it closed for it (after 0.2 s idle). Without that, the second client would
        wait the whole keep-alive timeout."""
        master = Master(self, dispatch="shared", args=("--keepalive-timeout", "60"))
        first = Client(master)
        self.addCleanup(first.close)
        first.sock.sendall(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(wait_until(lambda: status_workers(master)[0]["state"] == "busy"))
        second = Client(master)  # waits in the listener's backlog
        self.addCleanup(second.close)
        second.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = first.read_response()
        self.assertEqual((response.status, response.headers.get("connection")), (200, "close"), response.headers)
        self.assertTrue(first.at_eof())
        response = second.read_response()  # kept alive: nobody else waits
        self.assertEqual(response.status, 200)
        self.assertNotIn("connection", response.headers)
        third = Client(master)  # the second sits idle; this one waits until it gives way
        self.addCleanup(third.close)
        third.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(third.read_response().status, 200)
        self.assertTrue(second.at_eof())
        self.assertEqual(master.stop(), 0)

    def test_one_idle_connection_gives_way_per_waiting_client(self):
        """--threads 2, both threads holding an idle keep-alive connection: a third client
        is served, and exactly one of the two connections was closed for it (each thread
        sees the client; the one that accepts it gives way)."""
        master = Master(self, threads=2, dispatch="shared", args=("--keepalive-timeout", "60"))
        held = []
        for _ in range(2):
            client = Client(master)
            self.addCleanup(client.close)
            client.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(client.read_response().status, 200)
            held.append(client)
        self.assertTrue(wait_until(lambda: status_workers(master)[0]["in_flight"] == 2), status_workers(master))
        third = Client(master)
        self.addCleanup(third.close)
        third.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(third.read_response().status, 200)
        answered = 0
        for client in held:
            try:
                client.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answered += client.read_response().status == 200
            except (EOFError, ConnectionResetError, BrokenPipeError):
                pass
        self.assertEqual(answered, 1)
        self.assertEqual(master.stop(), 0)

    def test_a_busy_listener_does_not_starve_another(self):
        """One worker with a TCP and a Unix listener; four clients keep the TCP listener's
        backlog full. A request on the Unix socket is answered while that goes on."""
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        path = os.path.join(folder.name, "app.sock")
        master = Master(self, dispatch="shared", listen=("tcp://127.0.0.1:0", "unix:" + path))
        stop = threading.Event()
        self.addCleanup(stop.set)

        def hammer():
            while not stop.is_set():
                get(master, "/sleep?ms=5")

        load = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for t in load:
            t.start()
        self.assertTrue(wait_until(lambda: status_workers(master)[0]["handled"] > 20))
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)  # the load runs until this request is answered
            s.connect(path)
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
            self.assertFalse(stop.is_set())
        stop.set()
        for t in load:
            t.join(30)
        self.assertEqual(master.stop(), 0)

    def test_a_silent_client_takes_no_worker(self):
        """One worker, one thread: a client that connects and sends nothing (a browser's
        preconnect) waits in the kernel (TCP_DEFER_ACCEPT), so the next client is served
        at once instead of after --read-timeout (30 s)."""
        master = Master(self, dispatch="shared")
        silent = socket.create_connection(master.address, timeout=10)
        self.addCleanup(silent.close)
        self.assertEqual(get(master, "/").status, 200)  # its socket times out after 10 s
        # The worker counts a request on its scoreboard page after the response has gone,
        # so the count may come a moment after the client has its answer (this failed once
        # under a loaded CI machine when read at once).
        self.assertTrue(wait_until(lambda: status_workers(master)[0]["handled"] == 1))
        silent.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(silent.recv(100).startswith(b"HTTP/1.1 200"))  # once it speaks, it is served
        self.assertEqual(master.stop(), 0)

    def test_threads_serve_connections_of_one_worker_at_once(self):
        """--threads 2: two slow requests on one worker are in flight together (the
        scoreboard says 2), both answered."""
        master = Master(self, threads=2, dispatch="shared")
        answers = []
        clients = [threading.Thread(target=lambda: answers.append(get(master, "/sleep?ms=3000").status))
                   for _ in range(2)]
        for c in clients:
            c.start()
        self.assertTrue(wait_until(lambda: status_workers(master)[0]["in_flight"] == 2), status_workers(master))
        for c in clients:
            c.join(30)
        self.assertEqual(answers, [200, 200])
        self.assertEqual(master.stop(), 0)

    def test_a_request_in_progress_when_the_work_ends_is_answered(self):
        """A graceful stop of the master while the app reads a request's body: the answer
        says Connection: close, an idle keep-alive connection is closed, and the master
        exits 0 (one thread and --threads 2)."""
        for threads in (1, 2):
            with self.subTest(threads=threads):
                master = Master(self, threads=threads, dispatch="shared")
                idle = Client(master)
                self.addCleanup(idle.close)
                idle.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(idle.read_response().status, 200)
                client = Client(master)
                self.addCleanup(client.close)
                client.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                    b"Expect: 100-continue\r\n\r\n")
                self.assertEqual(client.read_head()[0], 100)
                master.proc.send_signal(signal.SIGTERM)
                self.assertIsNotNone(master.wait_log("pool app is stopping"), master.log())
                master.ctl("status")  # the end of work has gone out (see the master test)
                client.sock.sendall(b"hello")
                response = client.read_response()
                self.assertEqual((response.status, response.body), (200, b"hello"))
                self.assertEqual(response.headers.get("connection"), "close", response.headers)
                self.assertTrue(client.at_eof())
                self.assertTrue(idle.at_eof())
                self.assertEqual(master.proc.wait(30), 0)

    def test_restarted_workers_exit_0_not_on_the_stop_signal(self):
        """The master's TERM follows its end of work at once in shared dispatch. A worker
        already on its way out (Python's shutdown puts back the default action of the
        signals it handles) was killed by it now and then: "exited on signal 15", for a
        stop that went as planned."""
        master = Master(self, dispatch="shared", workers=2)
        for _ in range(6):
            self.assertEqual(master.ctl("restart", "app").returncode, 0)
        self.assertTrue(wait_until(lambda: master.log().count("exited with status 0") >= 12, 30), master.log())
        self.assertNotIn("exited on signal", master.log())
        self.assertEqual(master.stop(), 0)

    def test_rolling_restarts_under_load_lose_no_request(self):
        """ab with and without keep-alive while the pool is restarted twice and a worker
        gets a TERM of its own: every request answered."""
        ab = shutil.which("ab")
        if ab is None:
            self.skipTest("ab (apache2-utils) is not installed")
        master = Master(self, dispatch="shared", workers=3)
        url = "http://%s:%d/" % master.address
        runs = [subprocess.Popen([ab, *keep, "-n", "6000", "-c", "6", url], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for keep in ([], ["-k"])]
        for p in runs:
            self.addCleanup(p.kill)
        for _ in range(2):
            self.assertEqual(master.ctl("restart", "app").returncode, 0)
            self.assertEqual(master.ctl("kill", "app", "1", "TERM").returncode, 0)
        for p in runs:
            out = p.communicate(timeout=120)[0]
            self.assertIn("Complete requests:      6000", out)
            self.assertIn("Failed requests:        0", out)
            self.assertNotIn("Non-2xx", out)
        self.assertEqual(master.stop(), 0)


class BadListenFdsTest(unittest.TestCase):
    def run_wsgi(self, fd_sock, pid_is_ours=True):
        """forkpool-wsgi with LISTEN_FDS=1 and fd 3 set to ``fd_sock`` (a socket, or None for
        /dev/null); its exit status and stderr."""
        build = binary_dir()
        if build is None:
            self.skipTest("the forkpool build is missing")
        env = dict(os.environ, LISTEN_FDS="1")
        env.pop("FORKPOOL_CHANNEL_FD", None)
        # A launcher puts the descriptor at 3 and LISTEN_PID (its own pid, which the exec
        # keeps) in place, as socket activation does.
        launch = ("import os, sys\n"
                  "os.dup2(int(sys.argv[1]), 3)\n"
                  "os.environ['LISTEN_PID'] = str(os.getpid()) if sys.argv[2] == 'ours' else '1'\n"
                  "os.execv(sys.argv[3], sys.argv[3:])\n")
        with open(os.devnull) as null:
            source = fd_sock.fileno() if fd_sock is not None else null.fileno()
            proc = subprocess.run([sys.executable, "-c", launch, str(source), "ours" if pid_is_ours else "other",
                                   os.path.join(build, "forkpool-wsgi"), "--pythonpath", APPS, "flask_app:app"],
                                  env=env, pass_fds=(source,), capture_output=True, text=True, timeout=30)
        return proc.returncode, proc.stderr

    def test_unusable_listeners_exit_78_with_one_line(self):
        """Not a socket, a UDP socket, a TCP socket that does not listen, another
        process's LISTEN_PID: exit 78 (the pool is marked failed) with one line that
        names the problem, no traceback."""
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket()
        self.addCleanup(tcp.close)
        tcp.bind(("127.0.0.1", 0))
        cases = [(None, True, "LISTEN_FDS: fd 3: Socket operation on non-socket"),
                 (udp, True, "fd 3 is not a listening stream socket"),
                 (tcp, True, "fd 3 is not a listening stream socket"),
                 (None, False, "not this process")]
        for sock, ours, message in cases:
            with self.subTest(message=message, sock=sock):
                status, err = self.run_wsgi(sock, ours)
                self.assertEqual(status, 78, err)
                self.assertIn(message, err)
                self.assertNotIn("Traceback", err)


class SocketActivationTest(unittest.TestCase):
    def test_runs_under_systemd_socket_activate_without_forkpool(self):
        """systemd's own socket activation passes a Unix listener (LISTEN_FDS) and no
        forkpool channel: forkpool-wsgi serves on it and ends on SIGTERM with 0."""
        tool = shutil.which("systemd-socket-activate")
        build = binary_dir()
        if tool is None or build is None:
            self.skipTest("systemd-socket-activate or the forkpool build is missing")
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        path = os.path.join(folder.name, "app.sock")
        log = open(os.path.join(folder.name, "log"), "w+")
        self.addCleanup(log.close)
        proc = subprocess.Popen([tool, "-l", path, os.path.join(build, "forkpool-wsgi"), "--pythonpath", APPS,
                                 "flask_app:app"], stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertTrue(wait_until(lambda: os.path.exists(path)))
        for _ in range(2):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)  # the first connection starts the program (and Flask)
                s.connect(path)
                s.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    more = s.recv(65536)
                    if not more:
                        break
                    data += more
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), data)
            self.assertEqual(json.loads(body)["SERVER_NAME"], "localhost")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(30), 0)
        log.seek(0)
        self.assertNotIn("Traceback", log.read())


if __name__ == "__main__":
    unittest.main()
