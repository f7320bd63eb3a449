# SPDX-License-Identifier: Apache-2.0
"""forkpool-wsgi under the real forkpool master, through real sockets, with the Flask app
of the integration tests (tests/integration/wsgi_apps/flask_app.py): the answer to a
request in progress when the work ends, HEAD of a streamed response, a client that goes
away in the middle of its request body.

Needs the built master: FORKPOOL_BINARY_DIR, else the build tree CTest runs this from
(or build/default in the source tree); skipped without it or without Flask.
Run: /usr/bin/python3 -m unittest discover -s tests/python (CTest: python_wsgi_master).
"""

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
APPS = os.path.join(SOURCE, "tests", "integration", "wsgi_apps")


def binary_dir():
    candidates = [os.environ.get("FORKPOOL_BINARY_DIR", ""), os.path.join(os.getcwd(), ".."), os.getcwd(),
                  os.path.join(SOURCE, "build", "default")]
    for folder in candidates:
        if folder and os.access(os.path.join(folder, "supervisor", "forkpool"), os.X_OK) \
                and os.access(os.path.join(folder, "forkpool-wsgi"), os.X_OK):
            return os.path.abspath(folder)
    return None


def wait_until(condition, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    return condition()


class Master:
    """The real master running one forkpool-wsgi pool "app" (one worker unless told);
    its log (the workers' stdout and stderr included) in a temporary directory."""

    def __init__(self, test, threads=1, app="flask_app:app", dispatch="master", workers=1, args=(),
                 listen=("tcp://127.0.0.1:0",), env=None):
        build = binary_dir()
        if build is None:
            test.skipTest("the forkpool binaries are not built (set FORKPOOL_BINARY_DIR)")
        if importlib.util.find_spec("flask") is None:
            test.skipTest("python3-flask is not installed")
        self.build = build
        self.dir = tempfile.TemporaryDirectory()
        test.addCleanup(self.cleanup)
        args = (["--threads", str(threads)] if threads > 1 else []) + list(args)
        command = [os.path.join(build, "forkpool-wsgi"), *args, "--access-log", "-", "--pythonpath", APPS,
                   app]
        config = os.path.join(self.dir.name, "forkpool.toml")
        with open(config, "w") as f:
            f.write('[supervisor]\ncontrol_socket = "ctl.sock"\nlog_level = "debug"\n\n'
                    "[pools.app]\ncommand = [%s]\nlisten = [%s]\nworkers = %d\n"
                    'ready = "notify"\nmax_inflight = %d\ndispatch = "%s"\n'
                    % (", ".join('"%s"' % a for a in command), ", ".join('"%s"' % a for a in listen), workers,
                       threads, dispatch))
            if env:
                f.write("env = { %s }\n" % ", ".join('%s = "%s"' % kv for kv in env.items()))
        self.log_path = os.path.join(self.dir.name, "forkpool.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([os.path.join(build, "supervisor", "forkpool"), "-c", config],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.dir.name)
        found = self.wait_log(r"pool app listens on tcp://([0-9.]+):([0-9]+)")
        test.assertIsNotNone(found, self.log())
        self.address = (found.group(1), int(found.group(2)))
        test.assertIsNotNone(self.wait_log("every pool has its workers ready", 60), self.log())

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, within=10.0):
        return wait_until(lambda: re.search(pattern, self.log()), within)

    def connect(self):
        conn = socket.create_connection(self.address, timeout=10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def worker_pid(self):
        found = re.findall(r"worker app\[0\] pid ([0-9]+) started", self.log())
        return int(found[-1])

    def ctl(self, *args):
        return subprocess.run([os.path.join(self.build, "ctl", "forkpoolctl"), "-s",
                               os.path.join(self.dir.name, "ctl.sock"), *args],
                              capture_output=True, text=True, timeout=30)

    def stop(self):
        """A graceful stop; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # fast stop: the workers are killed
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


class Client:
    """One HTTP/1.1 connection; responses read as a client must frame them."""

    def __init__(self, master):
        self.sock = master.connect()
        self.buf = b""

    def close(self):
        self.sock.close()

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed; got %r" % self.buf[:200])
        self.buf += data

    def _until(self, marker):
        while marker not in self.buf:
            self._more()
        line, self.buf = self.buf.split(marker, 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self):
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def read_response(self, head_only=False):
        status, headers = self.read_head()
        while 100 <= status < 200:
            status, headers = self.read_head()
        if head_only or status in (204, 304):
            return Response(status, headers, b"")
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")
                    break
                body += self._take(size)
                self._take(2)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:
            while True:
                try:
                    self._more()
                except EOFError:
                    break
            body, self.buf = self.buf, b""
        return Response(status, headers, body)

    def at_eof(self):
        """True when the server closed the connection with nothing more sent."""
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def get_pid(master):
    client = Client(master)
    try:
        client.sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(client.read_response().body)
    finally:
        client.close()


class GracefulStopTest(unittest.TestCase):
    def test_a_request_in_progress_when_the_work_ends_is_answered_with_connection_close(self):
        """The app is inside the request (it asked for the body: 100 Continue) when the
        work ends; the answer's headers go out after that, so they say Connection: close
        and the connection then ends. By the master (its end of work comes first, its
        stop signal 1 s later, after the answer) and by TERM to the worker alone; one
        thread and --threads 2."""
        for by_master in (True, False):
            for threads in (1, 2):
                with self.subTest(by_master=by_master, threads=threads):
                    self.check_stop(by_master, threads)

    def check_stop(self, by_master, threads):
        master = Master(self, threads)
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                            b"Expect: 100-continue\r\n\r\n")
        self.assertEqual(client.read_head()[0], 100)  # the app is reading the body
        if by_master:
            master.proc.send_signal(signal.SIGTERM)
            self.assertIsNotNone(master.wait_log("pool app is stopping"), master.log())
            # The end of work goes out in the loop turn that logged that line: a control
            # round trip after it comes after the end of work too (no race with the body).
            reply = master.ctl("status")
            self.assertIn("app", reply.stdout + reply.stderr, reply)
        else:
            pid = master.worker_pid()
            self.assertEqual(master.ctl("kill", "app", "0", "TERM").returncode, 0)
            self.assertTrue(wait_until(lambda: term_delivered(pid)), "TERM not delivered")
        client.sock.sendall(b"hello")
        response = client.read_response()
        self.assertEqual((response.status, response.body), (200, b"hello"))
        self.assertEqual(response.headers.get("connection"), "close", response.headers)
        self.assertTrue(client.at_eof())
        if by_master:
            self.assertEqual(master.proc.wait(30), 0)
        else:
            self.assertIsNotNone(master.wait_log("pid %d exited with status 0" % pid), master.log())
            self.assertEqual(master.stop(), 0)


def term_delivered(pid):
    """True once the process has no SIGTERM pending (or is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            status = f.read()
    except OSError:
        return True
    pending = [int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigPnd", "ShdPnd"))]
    return not any(p & (1 << (signal.SIGTERM - 1)) for p in pending)


class GarbageCollectionTest(unittest.TestCase):
    def test_what_the_import_made_is_frozen_out_of_the_collector(self):
        """The app's modules and objects, made once at import, are out of the cyclic
        collector's sight (gc.freeze) when requests run, so its full collections do not
        walk them at every turn; what requests make is still collected."""
        master = Master(self)
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.sendall(b"GET /gc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        state = json.loads(client.read_response().body)
        self.assertGreater(state["frozen"], 10000, state)  # Flask and its imports
        self.assertLess(state["tracked"], state["frozen"], state)
        self.assertEqual(master.stop(), 0)


class HeadTest(unittest.TestCase):
    def test_head_of_a_streamed_response_claims_no_length(self):
        """Flask streams /stream (a generator, no length: the GET is chunked) and returns
        no body for HEAD. The HEAD answer has the GET's framing, not Content-Length: 0,
        and no body: the next answer on the connection is read intact."""
        master = Master(self)
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.sendall(b"GET /stream?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        get = client.read_response()
        self.assertEqual(get.headers.get("transfer-encoding"), "chunked")
        self.assertEqual(get.body, b"part 0\npart 1\npart 2\n")
        client.sock.sendall(b"HEAD /stream?n=3 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = client.read_response(head_only=True)
        self.assertEqual(head.status, 200)
        self.assertNotIn("content-length", head.headers)
        self.assertEqual(head.headers.get("transfer-encoding"), "chunked")
        self.assertNotIn("connection", head.headers)  # kept alive
        after = client.read_response()
        self.assertEqual((after.status, after.body), (200, b"Hello from Flask\n"))
        # A response whose length Flask knows keeps it for HEAD.
        client.sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(client.read_response(head_only=True).headers.get("content-length"), "17")
        self.assertEqual(master.stop(), 0)

    def test_head_of_a_single_empty_block_says_what_the_get_says(self):
        """An app that answers HEAD as GET with one empty block ([b""]): both get
        Content-Length: 0 (wsgiref's rule), not chunked framing for the HEAD."""
        master = Master(self, app="plain_app:application")
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.sendall(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
        get = client.read_response()
        self.assertEqual((get.status, get.headers.get("content-length"), get.body), (200, "0", b""))
        client.sock.sendall(b"HEAD /empty HTTP/1.1\r\nHost: x\r\n\r\n")
        head = client.read_response(head_only=True)
        self.assertEqual(head.headers.get("content-length"), "0")
        self.assertNotIn("transfer-encoding", head.headers)
        self.assertEqual(master.stop(), 0)


class ClientGoneTest(unittest.TestCase):
    def test_a_client_gone_in_its_body_is_not_taken_for_a_whole_body(self):
        """The client sends 300 KB of a longer body (by length, chunked) and closes its
        sending side: wsgi.input raises at the cut (BodyCut, which is also Werkzeug's
        ClientDisconnected), so Flask answers 400 itself, without a traceback, and never
        echoes the part as if it were the body. The connection is closed after the answer,
        and the worker goes on serving."""
        master = Master(self)
        pid = get_pid(master)
        part = b"x" * (300 * 1024)
        heads = {
            "length": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + part,
            "chunked": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"f4240\r\n" + part,  # a chunk of 1,000,000 bytes, cut short
        }
        for answered, (kind, request) in enumerate(heads.items(), start=2):
            with self.subTest(kind=kind):
                client = Client(master)
                self.addCleanup(client.close)
                client.sock.sendall(request)
                client.sock.shutdown(socket.SHUT_WR)
                response = client.read_response()
                self.assertEqual(response.status, 400)
                self.assertNotIn(part[:1000], response.body)
                self.assertEqual(response.headers.get("connection"), "close", response.headers)
                self.assertTrue(client.at_eof())
                # The same worker answers the next request; its access log line comes after
                # whatever it wrote for the one above.
                self.assertEqual(get_pid(master), pid)
                self.assertTrue(wait_until(lambda: master.log().count('"GET /pid HTTP/1.1" 200') == answered))
        log = master.log()
        self.assertEqual(log.count("client gone in the body of POST /echo"), 2, log)
        for bad in ("Traceback", "ERROR in app", "error handling"):
            self.assertNotIn(bad, log)
        self.assertEqual(master.stop(), 0)

    def test_a_malformed_chunked_body_is_a_400_from_flask_without_a_traceback(self):
        """A chunk line ended by a bare LF: wsgi.input raises HeadError, which under
        Werkzeug is also its BadRequest, so Flask answers 400 itself (it logged a 500 with a
        traceback), and the connection ends: nothing after the bad line is a request."""
        master = Master(self)
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\nhello\n0\n\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.status, 400)
        self.assertEqual(response.headers.get("connection"), "close", response.headers)
        self.assertTrue(client.at_eof())
        self.assertTrue(master.wait_log("bad request body of POST /echo"), master.log())
        for bad in ("Traceback", "ERROR in app", "error handling"):
            self.assertNotIn(bad, master.log())
        self.assertEqual(master.stop(), 0)

    def test_a_cut_body_the_app_lets_through_ends_the_request_quietly(self):
        """A plain WSGI app that reads the cut body and lets BodyCut through: no 500, no
        traceback, the connection closed without an answer, one line in the log."""
        master = Master(self, app="plain_app:application")
        pid = get_pid(master)
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        client.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(client.at_eof(), client.buf)  # nothing sent: no 200 with "hello" as the body
        self.assertTrue(master.wait_log("client gone in the body of POST /echo"), master.log())
        self.assertEqual(get_pid(master), pid)
        for bad in ("Traceback", "error handling"):
            self.assertNotIn(bad, master.log())
        self.assertEqual(master.stop(), 0)

    def test_a_client_that_stops_reading_is_not_an_error_of_the_app(self):
        """A streamed response the client stops reading: once a send waits --read-timeout,
        the request ends as for a client gone (one line), not as an error of the app with
        a traceback; the worker goes on serving."""
        master = Master(self, args=("--read-timeout", "1"))
        pid = get_pid(master)
        client = Client(master)
        self.addCleanup(client.close)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sock.sendall(b"GET /stream?n=2000000 HTTP/1.1\r\nHost: x\r\n\r\n")  # and read nothing
        self.assertTrue(master.wait_log("client stopped reading the response of GET /stream", 30), master.log())
        self.assertEqual(get_pid(master), pid)
        log = master.log()
        for bad in ("Traceback", "error handling", "BlockingIOError"):
            self.assertNotIn(bad, log)
        self.assertEqual(master.stop(), 0)


class MisbehavingAppTest(unittest.TestCase):
    """What an app gets wrong, or a failure of its own, does not reach the wire as it is:
    no body where HTTP has none, no response split by a header, no bytes past the length
    (tests/integration/wsgi_apps/plain_app.py, _MISBEHAVING)."""

    def setUp(self):
        self.master = Master(self, app="plain_app:application")
        self.pid = get_pid(self.master)

    def client(self):
        """A connection, closed by assert_still_serving (the one worker serves a kept
        connection until it closes)."""
        client = Client(self.master)
        self.addCleanup(client.close)
        self.clients = getattr(self, "clients", []) + [client]
        return client

    def assert_still_serving(self):
        for client in getattr(self, "clients", []):
            client.close()
        self.assertEqual(get_pid(self.master), self.pid)

    def test_no_body_on_204_or_304_and_the_connection_stays_in_step(self):
        client = self.client()
        for status in ("204", "304"):
            client.sock.sendall(b"GET /no-content?%s HTTP/1.1\r\nHost: x\r\n\r\n" % status.encode()
                                + b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            first = client.read_response()
            self.assertEqual(first.status, int(status))
            self.assertNotIn("connection", first.headers)  # kept
            if status == "204":
                self.assertNotIn("content-length", first.headers)  # RFC 9110 section 8.6
            else:
                self.assertEqual(first.headers.get("content-length"), "11")  # the GET's length
            # The next response is the next thing on the wire, not "BODY-OF-...".
            after = client.read_response()
            self.assertEqual((after.status, after.body), (200, b"%d\n" % self.pid), client.buf)
        self.assertNotIn("BODY-OF", self.master.log())
        self.assert_still_serving()

    def test_a_file_shorter_than_its_length_ends_the_connection(self):
        client = self.client()
        # A pipelined request behind it: answered, it would read as the missing bytes.
        client.sock.sendall(b"GET /short-file HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers = client.read_head()
        self.assertEqual((status, headers.get("content-length")), (200, "200"))
        got = b""
        while True:
            data = client.sock.recv(65536)  # the client sees the end, not a wait for 100 more
            if not data:
                break
            got += data
        self.assertEqual(client.buf + got, b"y" * 100)
        self.assert_still_serving()

    def test_connection_errors_the_app_raises_are_errors_of_the_app(self):
        """A ConnectionResetError from the app (its upstream hung up) is not the client
        going away: a 500 and a traceback, the worker serves on."""
        client = self.client()
        client.sock.sendall(b"GET /upstream-reset HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(client.read_response().status, 500)
        self.assertTrue(self.master.wait_log("ConnectionResetError: deliberate: the upstream hung up"), self.master.log())
        self.assertIn("error handling GET /upstream-reset", self.master.log())
        self.assert_still_serving()

    def test_no_100_continue_once_the_response_began(self):
        client = self.client()
        client.sock.sendall(b"POST /write-then-read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                            b"Expect: 100-continue\r\n\r\n")
        status, headers = client.read_head()
        self.assertEqual((status, headers.get("transfer-encoding")), (200, "chunked"))
        client.sock.sendall(b"hello")  # the client stops waiting for a 100 it never got
        response = b""
        while not response.endswith(b"0\r\n\r\n"):
            response += client._take(1) if client.buf else client.sock.recv(65536)
        self.assertNotIn(b"100 Continue", response)
        self.assertEqual(response, b"8\r\nwritten;\r\n6\r\nread 5\r\n0\r\n\r\n")
        self.assert_still_serving()

    def test_bad_response_headers_are_a_500_not_sent(self):
        for kind in ("crlf", "lf", "name", "reason", "two-lengths", "bad-length", "early-hints", "euro", "colon",
                     "nbsp-length"):
            for body in ("block", "streamed"):
                with self.subTest(kind=kind, body=body):
                    # Two requests on the connection: the 500 is framed as itself (not with
                    # the refused response's chunking), so the second answer reads intact.
                    client = self.client()
                    client.sock.sendall(b"GET /bad-header?%s&%s HTTP/1.1\r\nHost: x\r\n\r\n"
                                        b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n" % (kind.encode(), body.encode()))
                    response = client.read_response()
                    self.assertEqual(response.status, 500, (response.headers, response.body))
                    self.assertNotIn("set-cookie", response.headers)
                    self.assertNotIn("x-injected", response.headers)
                    self.assertEqual(response.body, b"A server error occurred.  Please contact the administrator.")
                    after = client.read_response()
                    self.assertEqual((after.status, after.body), (200, b"%d\n" % self.pid))
                    client.close()
        self.assertIn("'X-Test', 'a\\r\\nSet-Cookie: injected=1'", self.master.log())  # the log names the field
        self.assert_still_serving()

    def test_an_app_that_passes_one_header_list_to_every_response(self):
        """The server's fields (Content-Length, Connection) go into its own copy of the
        list: the lengths of later responses are their own, and one Connection: close
        does not end keep-alive for good."""
        client = self.client()
        client.sock.sendall(b"GET /shared-headers?3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first = client.read_response()
        self.assertEqual((first.headers.get("content-length"), first.body), ("3", b"xxx"))
        client = self.client()
        for size in (10, 2):
            client.sock.sendall(b"GET /shared-headers?%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
            response = client.read_response()
            self.assertEqual((response.headers.get("content-length"), response.body), (str(size), b"x" * size))
            self.assertNotIn("connection", response.headers)
        self.assert_still_serving()

    def test_identical_lengths_are_sent_once(self):
        client = self.client()
        client.sock.sendall(b"GET /same-lengths HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = client.read_head()
        head = client.buf  # what came with the head is the body
        self.assertEqual(status, 200)
        client.sock.sendall(b"GET /same-lengths HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = client.buf
        while True:
            data = client.sock.recv(65536)
            if not data:
                break
            raw += data
        self.assertEqual(raw.count(b"Content-Length: 5\r\n"), 1, raw)
        self.assertTrue(head.startswith(b"hello"))

    def test_bytes_past_the_length_are_cut_and_the_connection_ends(self):
        client = self.client()
        client.sock.sendall(b"GET /overlong HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        response = client.read_response()
        self.assertEqual(response.body, b"hello")
        self.assertTrue(client.at_eof(), client.buf)  # no SPOOFED response, no answer to the pipelined one
        self.assertTrue(self.master.wait_log("the app sent more than its Content-Length of 5"), self.master.log())
        self.assert_still_serving()


class RequestFramingTest(unittest.TestCase):
    """Requests whose framing a proxy in front might read otherwise are refused and end
    their connection: nothing after them is taken as a request."""

    def setUp(self):
        self.master = Master(self, app="plain_app:application")

    def exchange(self, data):
        client = Client(self.master)
        self.addCleanup(client.close)
        client.sock.sendall(data)
        client.sock.shutdown(socket.SHUT_WR)
        raw = b""
        while True:
            try:
                chunk = client.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            raw += chunk
        return raw

    def test_a_malformed_chunked_body_ends_the_connection(self):
        smuggled = b"GET /environ-length?SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n"
        bodies = {
            "bare LF in an extension": b"100;\n" + b"A" * 120 + b"\r\n0\r\n\r\n" + smuggled + b"B" * 10 + b"\r\n0\r\n\r\n",
            "not hex": b"zz\r\n0\r\n\r\n" + smuggled,
            "data not followed by CRLF": b"5\r\nhelloA\n0\r\n\r\n" + smuggled,
        }
        for name, body in bodies.items():
            with self.subTest(name=name):
                raw = self.exchange(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
                self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:200])
                self.assertIn(b"\r\nConnection: close\r\n", raw)
                self.assertEqual(raw.count(b"HTTP/1.1 "), 1, raw)
        log = self.master.log()
        self.assertNotIn("SMUGGLED", log)
        self.assertNotIn("Traceback", log)
        self.assertEqual(log.count("bad request body of POST /echo"), 3, log)

    def test_framing_refused_in_the_head(self):
        heads = [
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello",
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            b"GET /pid HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            # Whitespace is SP and HTAB only: latin-1's NBSP and NEL around a length or a
            # coding are not (nginx and HAProxy refuse them; a proxy that did not would
            # frame the body otherwise).
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: \xa05\r\n\r\nhello",
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\x85\r\n\r\nhello",
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \xa0chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x85\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ]
        for head in heads:
            with self.subTest(head=head):
                raw = self.exchange(head + b"GET /environ-length?SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:200])
                self.assertEqual(raw.count(b"HTTP/1.1 "), 1, raw)
        self.assertNotIn("SMUGGLED", self.master.log())

    def test_the_app_sees_one_length_and_the_target_host(self):
        raw = self.exchange(b"POST /environ-length HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n"
                            b"\r\nabcGET http://target.example:81/environ-length HTTP/1.1\r\nHost: other\r\n"
                            b"Connection: close\r\n\r\n")
        self.assertEqual(raw.count(b"HTTP/1.1 200 "), 2, raw)
        self.assertIn(b"\r\n\r\n3 a", raw)
        self.assertTrue(raw.endswith(b"\r\n\r\n target.example:81"), raw)


class ScriptNameTest(unittest.TestCase):
    def test_script_name_from_the_environment_splits_the_path(self):
        """SCRIPT_NAME in the worker's environment (the pool's env), as gunicorn takes it: a
        request under the prefix gets it as SCRIPT_NAME and the rest as PATH_INFO."""
        master = Master(self, app="plain_app:application", env={"SCRIPT_NAME": "/app/"})
        answers = {}
        for path in ("/app/where", "/where", "/application/where"):
            client = Client(master)
            self.addCleanup(client.close)
            client.sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
            answers[path] = client.read_response().body
        self.assertEqual(answers, {"/app/where": b"/app|/where", "/where": b"|/where",
                                   "/application/where": b"|/application/where"})
        self.assertEqual(master.stop(), 0)
