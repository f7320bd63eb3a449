# SPDX-License-Identifier: Apache-2.0
"""Plain WSGI callables for the cases Flask hides: iterables with close(), file_wrapper,
write(), an app that fails after its response began."""

import os
import tempfile

CLOSED_LOG = os.environ.get("PLAIN_APP_CLOSED_LOG", "")


class Tracked:
    """An iterable whose close() is recorded in CLOSED_LOG."""

    def __init__(self, parts, name):
        self.parts = parts
        self.name = name

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        if CLOSED_LOG:
            with open(CLOSED_LOG, "a") as f:
                f.write("closed %s\n" % self.name)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/tracked":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"one ", b"two ", b"three\n"], environ.get("QUERY_STRING", ""))
    if path == "/file":
        f = tempfile.TemporaryFile()
        f.write(b"x" * 100000)
        f.seek(0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "100000")])
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned\n"]
    if path == "/empty":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d\n" % os.getpid()]
    if path == "/hop":
        # Hop-by-hop fields are not the app's to send (PEP 3333): dropped, "close" honoured.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close"),
                                  ("Keep-Alive", "timeout=99")])
        return [b"hop\n"]
    if path == "/raise":
        raise RuntimeError("deliberate failure in /raise")
    if path == "/late-failure":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def parts():
            yield b"begun "
            raise RuntimeError("deliberate failure after the response began")
        return parts()
    if path == "/errors":
        environ["wsgi.errors"].write("a line to wsgi.errors\n")
        start_response("204 No Content", [])
        return []
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
