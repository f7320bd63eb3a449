# SPDX-License-Identifier: Apache-2.0
"""Unit tests of forkpool-wsgi's pure parts (the request head, chunked bodies, the step
after a response) and of its parking decision against a fake master: forkpool_wsgi runs
as a real process on a SOCK_SEQPACKET channel this test holds, as the master would.

Run: /usr/bin/python3 -m unittest discover -s tests/python (CTest: python_wsgi_unit).
"""

import array
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.join(HERE, "..", "..", "worker", "python")
sys.path.insert(0, PYDIR)

import forkpool_http as http  # noqa: E402
import forkpool_wsgi as wsgi  # noqa: E402
import forkpool_wsgi_handler as handler  # noqa: E402

MSG = struct.Struct("=HHIQ")
CONN, READY, DONE, PARK = 1, 16, 17, 18


class RequestHeadTest(unittest.TestCase):
    def parse(self, text, limits=None, host=True):
        """Parses ``text``; with ``host``, an HTTP/1.1 head without a Host field gets one
        (RFC 9112 requires it) after its request line."""
        if host and " HTTP/1.1" in text.split("\n", 1)[0] and "\nhost:" not in text.lower():
            line, sep, rest = text.partition("\n")
            text = line + sep + "Host: h\r\n" + rest
        return http.parse_request_head(text.encode("latin-1"), limits)

    def refused(self, text, limits=None, host=True):
        with self.assertRaises(http.HeadError) as cm:
            self.parse(text, limits, host)
        return cm.exception.status

    def test_a_simple_get(self):
        req = self.parse("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n")
        self.assertEqual((req.method, req.path, req.query, req.version), ("GET", "/a/b", "x=1&y=2", "HTTP/1.1"))
        self.assertEqual(req.headers, [("Host", "example.org"), ("Accept", "*/*")])
        self.assertTrue(req.keep_alive)
        self.assertEqual(req.content_length, 0)
        self.assertFalse(req.chunked)

    def test_keep_alive_follows_the_version_and_connection(self):
        self.assertFalse(self.parse("GET / HTTP/1.0\r\n\r\n").keep_alive)
        self.assertTrue(self.parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive)
        self.assertFalse(self.parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive)
        self.assertTrue(self.parse("GET / HTTP/1.1\r\nConnection: Upgrade, Keep-Alive\r\n\r\n").keep_alive)

    def test_bare_lf_lines_are_accepted(self):
        self.assertEqual(self.parse("GET /x HTTP/1.1\nHost: a\n\n").path, "/x")

    def test_bodies(self):
        self.assertEqual(self.parse("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n").content_length, 42)
        self.assertEqual(self.parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").content_length, 5)
        req = self.parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertTrue(req.chunked)
        req = self.parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
        self.assertTrue(req.chunked)
        self.assertFalse(req.keep_alive, "a request with both framings must end its connection")
        self.assertTrue(self.parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect_continue)
        self.assertFalse(self.parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue)

    def test_absolute_and_asterisk_targets(self):
        req = self.parse("GET http://h:8/p/q?z HTTP/1.1\r\n\r\n")
        self.assertEqual((req.path, req.query, req.target, req.authority), ("/p/q", "z", "http://h:8/p/q?z", "h:8"))
        self.assertEqual(self.parse("OPTIONS * HTTP/1.1\r\n\r\n").path, "*")
        # No path: "/" with the query kept.
        req = self.parse("GET http://abs.example?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
        self.assertEqual((req.path, req.query, req.authority), ("/", "x=1", "abs.example"))
        self.assertEqual(self.parse("GET https://[::1]:8443 HTTP/1.1\r\n\r\n").authority, "[::1]:8443")
        # An empty host is invalid in an http URI (RFC 9110 section 4.2.1): refused.
        for bad in ("http://u@h/", "http://h h/", "http:///p", "http://:80/p", "http://?q", "http://h/\x7f"):
            self.assertEqual(self.refused("GET %s HTTP/1.1\r\n\r\n" % bad), 400, bad)
        # A fragment is cut off before the query is looked for (no '#' belongs there).
        req = self.parse("GET /a#frag?x HTTP/1.1\r\n\r\n")
        self.assertEqual((req.path, req.query), ("/a", ""))
        req = self.parse("GET /a?x=1#frag?y HTTP/1.1\r\n\r\n")
        self.assertEqual((req.path, req.query), ("/a", "x=1"))
        req = self.parse("GET http://h/a#f?x HTTP/1.1\r\n\r\n")
        self.assertEqual((req.path, req.query, req.authority), ("/a", "", "h"))

    def test_host_may_be_left_out_but_not_given_twice(self):
        """Two Host fields get 400 (RFC 9112 section 3.2); a head without one, or with a
        value that is no host, is passed to the app as gunicorn passes it."""
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\nHost: a\nHost: b\n\n"), 400)  # the careful parser
        self.assertIsNone(self.parse("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", host=False).header("host"))
        self.assertEqual(self.parse("GET / HTTP/1.1\r\nHost: unix:/run/app.sock\r\n\r\n").header("host"),
                         "unix:/run/app.sock")

    def test_refusals(self):
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n"), 400)
        # Transfer-Encoding (RFC 9112 section 6.3): chunked must be the last coding, and
        # only once, else the body's end is unknown: 400. An empty field is no exception.
        for te in ("gzip", "", ",", " , ", "chunked, chunked", "chunked, gzip"):
            self.assertEqual(self.refused("GET / HTTP/1.1\r\nTransfer-Encoding: %s\r\nContent-Length: 5\r\n\r\n" % te),
                             400, te)
            self.assertEqual(self.refused("GET / HTTP/1.1\nTransfer-Encoding: %s\nContent-Length: 5\n\n" % te), 400, te)
        # Empty list elements are ignored (RFC 9110 section 5.6.1): this is chunked.
        self.assertTrue(self.parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n").chunked)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501)
        self.assertEqual(self.refused("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/2.0\r\n\r\n"), 505)
        self.assertEqual(self.refused("GET / FTP/1.0\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET  / HTTP/1.1\r\n\r\n"), 400)
        self.assertEqual(self.refused("G(T / HTTP/1.1\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET ftp://x/ HTTP/1.1\r\n\r\n"), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\n"), 400)

    def test_limits(self):
        limits = http.Limits(request_line=20, fields=2, field_size=10)
        self.assertEqual(self.refused("GET /" + "a" * 20 + " HTTP/1.1\r\n\r\n", limits), 400)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits), 431)
        self.assertEqual(self.refused("GET / HTTP/1.1\r\nA: 12345678\r\n\r\n", limits), 431)
        self.parse("GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\n\r\n", limits)
        # 0, as in gunicorn: no limit on a line, 32768 fields; the head stays bounded.
        unlimited = http.Limits(request_line=0, fields=0, field_size=0)
        self.parse("GET /" + "a" * 20000 + " HTTP/1.1\r\nA: " + "b" * 20000 + "\r\n" + "C: d\r\n" * 500 + "\r\n",
                   unlimited)
        self.assertEqual(unlimited.fields, 32768)
        self.assertEqual(unlimited.head_size(), 8190 + 2 + 32768 * (8190 + 2) + 2)
        reader = http.ConnReader(FakeSocket([b"GET /" + b"a" * 9000]))
        with self.assertRaises(http.HeadError) as cm:
            reader.read_head(http.Limits(request_line=0, fields=1, field_size=10))
        self.assertEqual(cm.exception.status, 431)  # past the head's bound: 8190 + 2 + 1 * 12 + 2

    def test_find_head_end(self):
        self.assertEqual(http.find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), 18)
        self.assertEqual(http.find_head_end(b"GET / HTTP/1.1\n\nrest"), 16)
        self.assertEqual(http.find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), -1)


class HeadMutationTest(unittest.TestCase):
    """A bounded, seeded fuzz of the head parser: whatever the bytes, the answer is a
    RequestHead or a HeadError with a status, and reading the head from a connection
    gives the same answer whether the bytes arrive at once or one at a time."""

    SEEDS = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x?y=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
        b"PUT /u HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        b"\r\nGET http://h/p HTTP/1.1\nA: b\nHost: h\n\n",
    ]
    ALPHABET = b" :\r\n\t/?HTTP1.0GETabc-_\x00\x7f\xff,;"

    def outcome(self, data, pieces):
        reader = http.ConnReader(FakeSocket(pieces))
        try:
            head = reader.read_head(http.Limits(request_line=64, fields=8, field_size=64))
            if head is None:
                return "eof"
            req = http.parse_request_head(head)
            return ("ok", req.method, req.target, req.path, req.query, req.version, tuple(req.headers),
                    req.content_length, req.chunked, req.keep_alive, req.expect_continue, req.authority,
                    bytes(reader.buf) + b"".join(reader.sock.pieces))  # nothing read past the head is lost
        except http.HeadError as e:
            self.assertIn(e.status, (400, 431, 501, 505))
            return ("refused", e.status)
        except http.ClientGone:
            return "gone"

    def test_mutated_heads(self):
        import random
        rng = random.Random(1312)
        for _ in range(10000):
            data = bytearray(rng.choice(self.SEEDS))
            for _ in range(rng.randint(1, 4)):
                op = rng.randrange(3)
                at = rng.randrange(len(data) + 1)
                if op == 0:
                    data[at:at] = bytes([rng.choice(self.ALPHABET)]) * rng.randint(1, 3)
                elif op == 1 and at < len(data):
                    del data[at:at + rng.randint(1, 3)]
                elif at < len(data):
                    data[at] = rng.choice(self.ALPHABET)
            data = bytes(data)
            whole = self.outcome(data, [data])
            bytewise = self.outcome(data, [data[i:i + 1] for i in range(len(data))])
            self.assertEqual(whole, bytewise, data)


    def test_the_fast_path_agrees_with_the_careful_parser(self):
        """parse_request_head matches a well-formed head with one regular expression and
        leaves the rest to the line-by-line parser: both give the same answer."""
        import random
        rng = random.Random(2606)

        def answer(parse, data, limits):
            try:
                req = parse(data, limits)
            except http.HeadError as e:
                return ("refused", e.status)
            return (req.method, req.target, req.path, req.query, req.version, req.headers,
                    req.content_length, req.chunked, req.keep_alive, req.expect_continue, req.authority)

        fast_hits = 0
        for _ in range(10000):
            data = bytearray(rng.choice(self.SEEDS))
            for _ in range(rng.randint(0, 3)):
                at = rng.randrange(len(data) + 1)
                data[at:at] = bytes([rng.choice(self.ALPHABET)]) * rng.randint(1, 3)
            end = http.find_head_end(bytes(data))
            if end < 0:
                continue
            head = bytes(data[:end])
            limits = http.Limits(request_line=rng.randint(8, 40), fields=rng.randint(0, 4),
                                 field_size=rng.randint(4, 60))
            fast = answer(http.parse_request_head, head, limits)
            fast_hits += fast[0] != "refused"
            self.assertEqual(fast, answer(http._parse_head_carefully, head, limits), head)
            for cut in (head[:-1], head[:-2], head + b"\n"):  # not ending as find_head_end cuts
                self.assertEqual(answer(http.parse_request_head, cut, limits),
                                 answer(http._parse_head_carefully, cut, limits), cut)
        self.assertGreater(fast_hits, 100)  # the comparison covered accepted heads too


class FakeSocket:
    """Just enough of a socket for ConnReader: recv() hands out prepared pieces."""

    def __init__(self, pieces):
        self.pieces = list(pieces)

    def recv(self, size):
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > size:
            self.pieces.insert(0, piece[size:])
            piece = piece[:size]
        return piece


class BodyTest(unittest.TestCase):
    def test_chunked_body_split_anywhere(self):
        wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"
        for split in range(1, len(wire)):
            reader = http.ConnReader(FakeSocket([wire[:split], wire[split:]]))
            body = http.ChunkedBody(reader)
            self.assertEqual(body.read(), b"hello world", split)
            self.assertEqual(bytes(reader.buf) + b"".join(reader.sock.pieces), b"NEXT")

    def test_readline_and_iteration(self):
        reader = http.ConnReader(FakeSocket([b"a\nbb\n", b"ccc"]))
        body = http.LengthBody(reader, 6)
        self.assertEqual(body.readline(), b"a\n")
        self.assertEqual(list(body), [b"bb\n", b"c"])
        self.assertEqual(bytes(reader.buf) + b"".join(reader.sock.pieces), b"cc", "nothing read past the body")

    def test_malformed_chunk_size(self):
        body = http.ChunkedBody(http.ConnReader(FakeSocket([b"zz\r\nhello\r\n0\r\n\r\n"])))
        with self.assertRaises(http.HeadError):
            body.read()

    def test_chunk_lines_end_with_crlf_and_follow_the_grammar(self):
        """RFC 9112 section 7.1: a chunk-size line is hex digits, extensions and CRLF; the
        data is followed by CRLF; trailers are fields ending with CRLF. A bare LF or a
        stray byte anywhere is refused, so that no front proxy can read the body's end
        elsewhere (a chunk extension ending at a bare LF smuggled a request)."""
        good = [b"5;a\r\nhello\r\n0\r\n\r\n", b"5 ; a = b\r\nhello\r\n0\r\n\r\n",
                b'5;a="x\\"y;z"\r\nhello\r\n0\r\n\r\n', b"5\r\nhello\r\n0;end\r\nT: v\r\n\r\n",
                b"00005\r\nhello\r\n000\r\n\r\n"]
        for wire in good:
            body = http.ChunkedBody(http.ConnReader(FakeSocket([wire + b"NEXT"])))
            self.assertEqual(body.read(), b"hello", wire)
            self.assertFalse(body.has_unread(), wire)
        bad = [b"5;a\nhello\r\n0\r\n\r\n", b"5\r\r\nhello\r\n0\r\n\r\n", b" 5\r\nhello\r\n0\r\n\r\n",
               b"5 \r\nhello\r\n0\r\n\r\n", b"5;a\x01\r\nhello\r\n0\r\n\r\n", b"5;a=b c\r\nhello\r\n0\r\n\r\n",
               b"5\nhello\r\n0\r\n\r\n", b"5\r\nhello\n0\r\n\r\n", b"5\r\nhelloX\r\n0\r\n\r\n",
               b"5\r\nhello\r\n0\n\r\n", b"5\r\nhello\r\n0\r\n\n", b"5\r\nhello\r\n0\r\nT v\r\n\r\n",
               b"5\r\nhello\r\n0\r\nT: v\n\r\n", b"-5\r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n",
               b"5\r\nhello\r\n0\r\n" + b"T: v\r\n" * 101 + b"\r\n"]
        for wire in bad:
            body = http.ChunkedBody(http.ConnReader(FakeSocket([wire])))
            with self.assertRaises(http.HeadError, msg=wire) as cm:
                body.read()
            self.assertEqual(cm.exception.status, 400)
            # Broken for good: a later read raises again (nothing after the bad line is
            # taken as body or as the next request), and the body is not complete.
            self.assertIsNotNone(body.broken, wire)
            with self.assertRaises(http.HeadError):
                body.read(1)
            self.assertTrue(body.has_unread(), wire)

    def test_a_head_trickled_past_its_time_is_dropped(self):
        """read_head(within=S): a head not whole S seconds after its first bytes ends the
        connection (ClientGone), however often bytes come; a whole one is taken."""

        class Trickle(FakeSocket):
            def recv(self, size):
                time.sleep(0.02)
                return super().recv(size)

        head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        reader = http.ConnReader(Trickle([head[i:i + 1] for i in range(len(head))]))
        with self.assertRaises(http.ClientGone):
            reader.read_head(http.Limits(), within=0.1)
        reader = http.ConnReader(Trickle([head[i:i + 1] for i in range(len(head))]))
        self.assertEqual(reader.read_head(http.Limits(), within=30), head)
        # Empty lines, which may come before a request, count as its first bytes: a client
        # sending nothing but CRLF now and then is dropped as well (it held a worker for ever).
        reader = http.ConnReader(Trickle([b"\r\n"] * 50 + [head]))
        with self.assertRaises(http.ClientGone):
            reader.read_head(http.Limits(), within=0.1)
        reader = http.ConnReader(Trickle([b"\r\n", b"\n", head]))
        self.assertEqual(reader.read_head(http.Limits(), within=30), head)

    def test_empty_lines_after_a_body_are_not_a_request(self):
        reader = http.ConnReader(FakeSocket([]))
        reader.buf += b"\r\n\n\r\n"
        reader.skip_empty_lines()
        self.assertEqual(reader.buffered(), 0)
        reader.buf += b"\r\nGET"
        reader.skip_empty_lines()
        self.assertEqual(bytes(reader.buf), b"GET")
        reader.buf[:] = b"\r"  # a CR whose LF has not come yet stays
        reader.skip_empty_lines()
        self.assertEqual(reader.buffered(), 1)

    def test_a_client_gone_in_the_body_raises_at_the_read_that_finds_it(self):
        """The connection ends in the body (EOF before its end): every way of reading it
        gives what came whole, then raises BodyCut (a ClientGone), at that read and every
        later one, so a cut body is never taken for a whole one (by length or chunked: a
        chunked body has no CONTENT_LENGTH to compare with)."""
        reads = {
            "read": lambda b, got: got.append(b.read()),
            "read(n)": lambda b, got: [got.append(b.read(3)), got.append(b.read(100))],
            "readline": lambda b, got: [got.append(b.readline()) for _ in range(3)],
            "readlines": lambda b, got: got.append(b.readlines()),
            "iteration": lambda b, got: [got.append(line) for line in b],
        }
        before = {"read": [], "read(n)": [b"a\nb"], "readline": [b"a\n", b"bb\n"], "readlines": [],
                  "iteration": [b"a\n", b"bb\n"]}
        for kind, read in reads.items():
            for body in (http.LengthBody(http.ConnReader(FakeSocket([b"a\nbb", b"\nc"])), 100),
                         http.ChunkedBody(http.ConnReader(FakeSocket([b"64\r\na\nbb", b"\nc"])))):
                with self.subTest(kind=kind, body=type(body).__name__):
                    got = []
                    with self.assertRaises(http.BodyCut):
                        read(body, got)
                    self.assertEqual(got, before[kind])
                    self.assertIsInstance(http.body_cut("x"), http.ClientGone)
                    self.assertEqual(body.gone, "connection closed in a request body")
                    with self.assertRaises(http.BodyCut):
                        body.read(1)
                    self.assertTrue(body.has_unread())
                    self.assertFalse(body.discard(1000))
        # A whole body, then the connection's end: no error.
        body = http.LengthBody(http.ConnReader(FakeSocket([b"abc"])), 3)
        self.assertEqual((body.read(), body.read()), (b"abc", b""))
        body = http.ChunkedBody(http.ConnReader(FakeSocket([b"3\r\nabc\r\n0\r\n\r\n"])))
        self.assertEqual((body.read(), body.read()), (b"abc", b""))

    def test_under_werkzeug_the_body_errors_are_its_400s_and_still_pickle(self):
        """With Werkzeug imported (a Flask app), a cut body and a malformed one raise
        exceptions that are also Werkzeug's ClientDisconnected and BadRequest (Flask answers
        400 without a traceback); they pickle as ours (multiprocessing, task queues)."""
        import pickle
        try:
            import werkzeug.exceptions as wz
        except ImportError:
            self.skipTest("werkzeug is not installed")
        cut, bad = http.body_cut("gone"), http.bad_body("bare LF")
        self.assertIsInstance(cut, http.BodyCut)
        self.assertIsInstance(cut, wz.ClientDisconnected)
        self.assertIsInstance(bad, http.HeadError)
        self.assertIsInstance(bad, wz.BadRequest)
        self.assertEqual((str(cut), cut.args, bad.status, bad.reason, str(bad)),
                         ("gone", ("gone",), 400, "bare LF", "bare LF"))
        self.assertEqual(repr(cut), "BodyCut('gone')")
        again = pickle.loads(pickle.dumps(cut))
        self.assertEqual((type(again), again.args), (http.BodyCut, ("gone",)))
        again = pickle.loads(pickle.dumps(bad))
        self.assertEqual((type(again), again.status, again.reason), (http.HeadError, 400, "bare LF"))

    def test_continue_is_sent_on_the_first_read_only(self):
        calls = []
        body = http.LengthBody(http.ConnReader(FakeSocket([b"abcdef"])), 6, lambda: calls.append(1))
        self.assertTrue(body.awaits_continue())
        self.assertEqual(body.read(3) + body.read(3), b"abcdef")
        self.assertEqual(calls, [1])


class AfterResponseTest(unittest.TestCase):
    def test_the_step_after_a_response(self):
        table = [
            # keep_alive, buffered, keepalive_master -> step
            (False, 0, False, wsgi.CLOSE),
            (False, 10, True, wsgi.CLOSE),
            (True, 10, True, wsgi.SERVE),  # a pipelined request is answered before any PARK
            (True, 10, False, wsgi.SERVE),
            (True, 0, True, wsgi.PARK),
            (True, 0, False, wsgi.WAIT),
        ]
        for keep, buffered, master, step in table:
            self.assertEqual(wsgi.after_response(keep, buffered, master), step, (keep, buffered, master))


class AccessLogTest(unittest.TestCase):
    def test_what_the_client_chose_cannot_forge_a_line_or_end_a_field(self):
        import base64
        import io
        out = io.StringIO()
        forged = 'evil\n10.0.0.1 - admin [x] "GET /forged HTTP/1.1" 200 1 "-" "-'
        env = {"REMOTE_ADDR": "127.0.0.1", "REQUEST_METHOD": "GET", "RAW_URI": "/a?\xe9", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(forged.encode() + b":pw").decode(),
               "HTTP_REFERER": "\x1b[31mred", "HTTP_USER_AGENT": 'ua" "injected'}
        handler.AccessLog(out).log(env, 200, 5)
        text = out.getvalue()
        self.assertEqual(text.count("\n"), 1, text)
        self.assertIn("127.0.0.1 - evil\\x0a10.0.0.1 - admin [x] \\x22GET /forged HTTP/1.1\\x22 200 1 \\x22-\\x22 \\x22- ", text)
        self.assertIn('"GET /a?\\xe9 HTTP/1.1" 200 5 "\\x1b[31mred" "ua\\x22 \\x22injected"\n', text)
        self.assertNotIn("\x1b", text)
        # Nothing to escape: as it came.
        out = io.StringIO()
        handler.AccessLog(out).log(dict(env, HTTP_AUTHORIZATION="", HTTP_REFERER="http://r/", HTTP_USER_AGENT="curl/8",
                                        RAW_URI="/b"), 404, 0)
        self.assertTrue(out.getvalue().endswith('"GET /b HTTP/1.1" 404 0 "http://r/" "curl/8"\n'), out.getvalue())


class ConnectionVarsTest(unittest.TestCase):
    """REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT from the listener and the socket."""

    def test_tcp_listener_names_the_server_and_the_peer_is_asked(self):
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen()
            with socket.create_connection(lsock.getsockname()) as client:
                conn, _ = lsock.accept()
                with conn:
                    port = str(client.getsockname()[1])
                    got = handler.connection_vars(conn, handler.Listener("tcp://127.0.0.1:8080"))
                    self.assertEqual(got, ("127.0.0.1", port, "127.0.0.1", "8080"))
                    # A wildcard or port 0 in `listen`: the connection's own address.
                    got = handler.connection_vars(conn, handler.Listener("tcp://0.0.0.0:0"))
                    self.assertEqual(got, ("127.0.0.1", port, "127.0.0.1", str(lsock.getsockname()[1])))

    def test_unix_is_known_from_the_listener_or_from_the_socket(self):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with a, b:
            self.assertEqual(handler.connection_vars(a, handler.Listener("unix:/run/app.sock")),
                             ("", "", "localhost", "80"))
            # Not forkpool's address (socket activation without forkpool): the family tells.
            self.assertEqual(handler.connection_vars(a, handler.Listener(None)), ("", "", "localhost", "80"))
            self.assertEqual(handler.connection_vars(a, handler.Listener("somewhere")), ("", "", "localhost", "80"))


APP = textwrap.dedent("""
    import time

    def application(environ, start_response):
        if environ["PATH_INFO"] == "/sleep":
            time.sleep(0.5)
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
""")


class FakeMaster:
    """The master's end of a channel, with forkpool_wsgi running on the other end."""

    def __init__(self, keepalive, args=()):
        self.dir = tempfile.TemporaryDirectory()
        with open(os.path.join(self.dir.name, "tiny_app.py"), "w") as f:
            f.write(APP)
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, FORKPOOL_PROTOCOL="1", FORKPOOL_CHANNEL_FD=str(theirs.fileno()),
                   FORKPOOL_LISTENERS="unix:/nowhere", FORKPOOL_POOL="t", FORKPOOL_WORKER="0")
        env.pop("FORKPOOL_SCOREBOARD_FD", None)
        env.pop("NOTIFY_SOCKET", None)
        if keepalive:
            env["FORKPOOL_KEEPALIVE"] = keepalive
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(PYDIR, "forkpool_wsgi.py"), *args, "--pythonpath", self.dir.name, "tiny_app"],
            env=env, pass_fds=[theirs.fileno()], cwd=self.dir.name)
        theirs.close()
        self.channel.settimeout(10)
        self.expect(READY)

    def receive(self):
        fds = array.array("i")
        data, anc, _, _ = self.channel.recvmsg(16, socket.CMSG_SPACE(4 * fds.itemsize))
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
        return MSG.unpack(data) if data else None, list(fds)

    def expect(self, mtype, ident=None):
        msg, fds = self.receive()
        assert msg is not None and msg[0] == mtype, (msg, mtype)
        if ident is not None:
            assert msg[3] == ident, (msg, ident)
        return fds

    def send_conn(self, ident, reserved=0):
        """A connection to the worker; returns the client's end."""
        client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.channel.sendmsg([MSG.pack(CONN, 0, reserved, ident)],
                                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [server.fileno()]))])
        except OSError:
            client.close()
            raise
        finally:
            server.close()
        client.settimeout(10)
        return client

    def send_until_refused(self, first_ident, within=5.0):
        """Sends a CONN every 50 ms, each client sending one request with Connection: close,
        until a send fails with EPIPE (the worker refused more work). Returns whether one
        did within `within` seconds, and the clients sent before it."""
        sent, ident = [], first_ident
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                client = self.send_conn(ident)
            except BrokenPipeError:
                return True, sent
            client.settimeout(3)
            client.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            sent.append(client)
            ident += 1
            time.sleep(0.05)
        return False, sent

    def abandon(self):
        """For a worker meant to exit on its own: kills it if it did not, then cleans up."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.stop()

    def stop(self):
        self.channel.shutdown(socket.SHUT_WR)  # end of work
        code = self.proc.wait(10)
        self.channel.close()
        self.dir.cleanup()
        return code


def read_responses(sock, count):
    data = b""
    while data.count(b"HTTP/1.1 200 OK") < count or not data.endswith((b"/a", b"/b", b"/c")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class ParkingTest(unittest.TestCase):
    def test_an_idle_keep_alive_connection_is_parked_and_served_again(self):
        master = FakeMaster("master")
        try:
            client = master.send_conn(7)
            client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(read_responses(client, 1).endswith(b"\r\n\r\n/a"))
            fds = master.expect(PARK, 7)
            self.assertEqual(len(fds), 1, "PARK carries the connection")
            parked = socket.socket(fileno=fds[0])
            # The client's next request on the same connection is readable on the parked fd:
            # the worker kept nothing of it.
            client.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            # Resumed as the master does it: CONN again, same id, the parked descriptor.
            master.channel.sendmsg([MSG.pack(CONN, 0, 0, 7)],
                                   [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [parked.fileno()]))])
            parked.close()
            self.assertTrue(read_responses(client, 1).endswith(b"/b"))
            master.expect(PARK, 7)
            client.close()
        finally:
            self.assertEqual(master.stop(), 0)

    def test_a_last_connection_is_answered_with_connection_close_not_parked(self):
        """FP_FD_LAST (bit 2 of the CONN's reserved): the master will not hold the connection
        again (a reload took the pool out of master dispatch), so the worker answers, says
        Connection: close, closes it and sends DONE."""
        master = FakeMaster("master")
        try:
            client = master.send_conn(11, reserved=0x4)
            client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            data = read_responses(client, 1)
            self.assertIn(b"\r\nConnection: close\r\n", data)
            self.assertEqual(client.recv(1), b"")  # closed by the worker
            self.assertEqual(master.expect(DONE, 11), [])
            client.close()
        finally:
            self.assertEqual(master.stop(), 0)

    def test_a_pipelined_request_is_served_before_the_connection_is_parked(self):
        master = FakeMaster("master")
        try:
            client = master.send_conn(9)
            client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            data = read_responses(client, 2)
            self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 2)
            self.assertTrue(data.endswith(b"/b"))
            fds = master.expect(PARK, 9)  # one PARK, after both answers
            os.close(fds[0])
            client.close()
        finally:
            self.assertEqual(master.stop(), 0)

    def test_an_empty_line_after_a_body_does_not_hold_the_connection_in_the_worker(self):
        """Old clients send CRLF after a POST body (RFC 9112 section 2.2): not a pipelined
        request, so the connection is parked at once (it was held for --read-timeout)."""
        master = FakeMaster("master", ["--read-timeout", "60"])
        try:
            client = master.send_conn(5)
            client.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\r\n")
            self.assertTrue(read_responses(client, 1).endswith(b"/a"))
            os.close(master.expect(PARK, 5)[0])  # within the channel's 10 s
            client.close()
        finally:
            self.assertEqual(master.stop(), 0)

    def test_with_threads_two_connections_are_parked_by_the_main_thread(self):
        master = FakeMaster("master", ["--threads", "2"])
        try:
            first, second = master.send_conn(21), master.send_conn(22)
            second.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            first.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(read_responses(first, 1).endswith(b"/a"))
            self.assertTrue(read_responses(second, 1).endswith(b"/b"))
            ids = set()
            for _ in range(2):
                msg, fds = master.receive()
                self.assertEqual((msg[0], len(fds)), (PARK, 1))
                ids.add(msg[3])
                os.close(fds[0])
            self.assertEqual(ids, {21, 22})
            first.close()
            second.close()
        finally:
            self.assertEqual(master.stop(), 0)

    def test_without_keepalive_master_the_worker_keeps_the_connection(self):
        master = FakeMaster(None)
        try:
            client = master.send_conn(3)
            client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(read_responses(client, 1).endswith(b"/a"))
            client.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(read_responses(client, 1).endswith(b"/c"))
            self.assertEqual(client.recv(10), b"", "Connection: close ends the connection")
            self.assertEqual(master.expect(DONE, 3), [])
            client.close()
        finally:
            self.assertEqual(master.stop(), 0)



class StopSignalTest(unittest.TestCase):
    def test_with_threads_connections_sent_after_the_drain_are_refused(self):
        """No end of work from the master: someone else sent SIGTERM. What the master sent
        is served; once the worker drains, a CONN fails to send (the master then gives
        it to another worker) instead of waiting unread in the channel until the worker
        exits. A half-sent request, held by a thread, keeps the worker alive meanwhile."""
        master = FakeMaster(None, ["--threads", "2"])
        held = master.send_conn(1)
        try:
            held.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n")
            master.proc.send_signal(signal.SIGTERM)
            refused, sent = master.send_until_refused(2)
            self.assertTrue(refused, "the channel never refused a connection")
            self.assertIsNone(master.proc.poll(), "refused while the worker still runs")
            for client in sent:  # sent before the refusal: each must be answered
                with client:
                    self.assertTrue(read_responses(client, 1).endswith(b"/c"))
            held.sendall(b"\r\n")
            self.assertTrue(read_responses(held, 1).endswith(b"/a"))
            self.assertEqual(master.proc.wait(10), 0)
        finally:
            held.close()
            master.abandon()

    def test_one_thread_refuses_more_while_connections_are_still_queued(self):
        """The channel never runs empty here (a master that refills it after each DONE):
        the worker must refuse more work once it drains anyway, before it takes the next
        queued connection, or it would go on serving for as long as work comes."""
        master = FakeMaster(None)
        busy = master.send_conn(1)
        stalled = master.send_conn(2)  # queued; its request comes only at the end
        later = []
        try:
            busy.sendall(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
            master.proc.send_signal(signal.SIGTERM)
            self.assertTrue(read_responses(busy, 1).endswith(b"/sleep"))
            master.expect(DONE, 1)
            # The worker now takes connection 2 and waits for its request: sends must
            # start failing although nothing told the worker the channel was empty.
            refused, later = master.send_until_refused(3)
            self.assertTrue(refused, "the channel never refused a connection")
            self.assertIsNone(master.proc.poll(), "refused while the worker still runs")
            # What was queued before the refusal is still served, then it exits 0.
            stalled.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(read_responses(stalled, 1).endswith(b"/b"))
            for client in later:
                self.assertTrue(read_responses(client, 1).endswith(b"/c"))
            self.assertEqual(master.proc.wait(10), 0)
        finally:
            for client in [busy, stalled, *later]:
                client.close()
            master.abandon()

    def test_one_thread_serves_what_was_sent_before_it_drains(self):
        """One thread is busy with the half-sent request when the signal comes: the CONN
        the master sends meanwhile waits in the channel, and is served before the exit."""
        master = FakeMaster(None)
        held = master.send_conn(1)
        try:
            held.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n")
            master.proc.send_signal(signal.SIGTERM)
            with master.send_conn(2) as queued:
                queued.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
                held.sendall(b"\r\n")
                self.assertTrue(read_responses(held, 1).endswith(b"/a"))
                self.assertTrue(read_responses(queued, 1).endswith(b"/b"))
            self.assertEqual(master.proc.wait(10), 0)
        finally:
            held.close()
            master.abandon()


class CommandLineTest(unittest.TestCase):
    SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))

    def run_wsgi(self, *args, launcher=None):
        argv = [launcher] if launcher else [sys.executable, os.path.join(PYDIR, "forkpool_wsgi.py")]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30)

    def test_version_is_the_projects(self):
        with open(os.path.join(self.SOURCE, "CMakeLists.txt")) as f:
            project = re.search(r"project\(forkpool VERSION ([0-9.]+)", f.read()).group(1)
        r = self.run_wsgi("--version")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "forkpool-wsgi %s\n" % project, ""))
        # The launcher of the build tree, beside the master it runs under: one version.
        build = os.environ.get("FORKPOOL_BINARY_DIR", "")
        launcher = os.path.join(build, "forkpool-wsgi")
        if not (build and os.access(launcher, os.X_OK)):
            self.skipTest("the build tree is not known (set FORKPOOL_BINARY_DIR)")
        master = subprocess.run([os.path.join(build, "supervisor", "forkpool"), "--version"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(master.returncode, 0)
        self.assertEqual(master.stdout.split()[:2], ["forkpool", project])
        r = self.run_wsgi("--version", "--threads", "2", launcher=launcher)
        self.assertEqual((r.returncode, r.stdout), (0, "forkpool-wsgi %s\n" % project))

    def test_a_negative_limit_is_refused(self):
        r = self.run_wsgi("--limit-request-line", "-1", "app:app")
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("--limit-request-line must be 0 (no limit, as in gunicorn) or more", r.stderr)

    def test_the_man_page_has_every_option(self):
        with open(os.path.join(self.SOURCE, "docs", "man", "forkpool-wsgi.1.scd")) as f:
            page = f.read()
        r = self.run_wsgi("--help")
        self.assertEqual(r.returncode, 0)
        options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", r.stdout))
        self.assertIn("--version", options)
        self.assertIn("--no-gc-freeze", options)
        for option in sorted(options):
            self.assertIn("*%s*" % option, page, "%s is not in docs/man/forkpool-wsgi.1.scd" % option)
        # It serves a shared-dispatch pool too, accepting on the listeners itself.
        self.assertIn('dispatch "shared"', page)


if __name__ == "__main__":
    unittest.main()
