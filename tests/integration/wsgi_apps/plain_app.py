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
    answer = _MISBEHAVING.get(path)
    if answer is not None:
        return answer(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


# Apps that get HTTP wrong, or meet a failure of their own, which the server must not
# pass on to the wire as it is.
def _no_content(environ, start_response):
    # A body (and for the 204 a length) where none may be: neither reaches the client.
    status = environ["QUERY_STRING"] or "204"
    start_response(status + " X", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"BODY-OF-" + status.encode()]


def _short_file(environ, start_response):
    # A file shorter than the Content-Length given (one that shrank after a stat).
    f = tempfile.TemporaryFile()
    f.write(b"y" * 100)
    f.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "200")])
    return environ["wsgi.file_wrapper"](f, 8192)


def _upstream_reset(environ, start_response):
    raise ConnectionResetError("deliberate: the upstream hung up")


def _write_then_read(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written;")
    return [b"read %d" % len(environ["wsgi.input"].read())]


def _echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


_BAD_HEADERS = {
    "crlf": ("200 OK", [("X-Test", "a\r\nSet-Cookie: injected=1")]),
    "lf": ("200 OK", [("X-Test", "a\nb")]),
    "name": ("200 OK", [("X Bad: y", "z")]),
    "reason": ("200 OK\r\nX-Injected: 1", []),
    "two-lengths": ("200 OK", [("Content-Length", "2"), ("Content-Length", "5")]),
    "bad-length": ("200 OK", [("Content-Length", "five")]),
    "early-hints": ("103 Early Hints", [("Link", "</a.css>; rel=preload")]),
    "euro": ("200 OK", [("X-Test", "euro \u20ac")]),
    "colon": ("200 OK", [("X-A: b", "c")]),  # would read as "X-A: b: c"
    "nbsp-length": ("200 OK", [("Content-Length", "5\xa0")]),
}


def _bad_header(environ, start_response):
    kind, _, body = environ["QUERY_STRING"].partition("&")
    status, headers = _BAD_HEADERS[kind]
    start_response(status, headers)
    if body == "streamed":  # no length known: chunked framing, until the check refuses it
        return (part for part in [b"hel", b"lo"])
    return [b"hello"]


def _overlong(environ, start_response):
    # More bytes than the Content-Length: to a pipelining client the rest would read as
    # a response of its own.
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello", b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nSPOOFED"]


def _same_lengths(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5"), ("Content-Length", "5")])
    return [b"hello"]


def _content_length(environ, start_response):
    body = environ.get("CONTENT_LENGTH", "").encode() + b" " + environ.get("HTTP_HOST", "").encode()
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# One list for every response, as some apps keep it at module level: the server's own
# fields (its Content-Length, Connection) must not be added to it.
_SHARED_HEADERS = [("Content-Type", "text/plain")]


def _shared_headers(environ, start_response):
    start_response("200 OK", _SHARED_HEADERS)
    return [b"x" * int(environ["QUERY_STRING"] or "1")]


def _where(environ, start_response):
    body = ("%s|%s" % (environ["SCRIPT_NAME"], environ["PATH_INFO"])).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


_MISBEHAVING = {"/no-content": _no_content, "/short-file": _short_file, "/upstream-reset": _upstream_reset,
                "/write-then-read": _write_then_read, "/echo": _echo, "/bad-header": _bad_header,
                "/overlong": _overlong, "/same-lengths": _same_lengths, "/environ-length": _content_length,
                "/where": _where, "/shared-headers": _shared_headers, "/app/where": _where, "/application/where": _where}
