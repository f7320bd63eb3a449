# SPDX-License-Identifier: Apache-2.0
"""HTTP/1.1 request side for forkpool-wsgi: the request head as a pure function, the
connection's read buffer, and the request body readers (Content-Length and chunked).

Standard library only. ``parse_request_head`` takes bytes and returns a ``RequestHead``
or raises ``HeadError``; it does no I/O, so it can be unit-tested and fuzzed alone.
``http.client.parse_headers`` (the email package) was measured against it on a typical
browser request head (11 header fields): 26 us against 11 us per head, and it accepts
what a server must refuse (obs-fold, whitespace before the colon, conflicting lengths),
so the head is parsed here; docs/wsgi.md has the numbers.
"""

import re
import socket
import struct
import sys
import time

__all__ = ["Limits", "RequestHead", "HeadError", "parse_request_head", "find_head_end",
           "ConnReader", "ClientGone", "BodyCut", "set_io_timeout", "Body", "LengthBody", "ChunkedBody"]


_NO_LIMIT = 1 << 62
_MAX_FIELDS = 32768  # gunicorn's MAX_HEADERS
_LINE_IN_TOTAL = 8190  # what an unlimited line counts for in the head's bound (gunicorn's)


class Limits:
    """Size limits of a request head (gunicorn's option names, defaults and 0: no limit on
    the request line or on one header line, the most fields for the count; the head as a
    whole stays bounded, counting 8190 bytes for an unlimited line, as gunicorn's buffer)."""

    __slots__ = ("request_line", "fields", "field_size", "_head_size")

    def __init__(self, request_line=4094, fields=100, field_size=8190):
        self.request_line = request_line or _NO_LIMIT  # bytes of the request line; longer: 400
        self.fields = fields or _MAX_FIELDS  # header fields; more: 431
        self.field_size = field_size or _NO_LIMIT  # bytes of one header line; longer: 431
        self._head_size = ((request_line or _LINE_IN_TOTAL) + 2 + self.fields * ((field_size or _LINE_IN_TOTAL) + 2)
                           + 2)

    def head_size(self):
        """The most bytes a head may take, request line and blank line included."""
        return self._head_size


class HeadError(Exception):
    """A request head that is refused: ``status`` is the answer (400, 431, 501, 505)."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestHead:
    """One parsed request head. Header names are kept as sent; values are str (latin-1)."""

    __slots__ = ("method", "target", "path", "query", "version", "headers",
                 "content_length", "chunked", "keep_alive", "expect_continue", "authority")

    def __init__(self):
        self.method = ""
        self.target = ""
        self.path = ""
        self.query = ""
        self.version = "HTTP/1.1"
        self.headers = []  # [(name, value)], in order
        self.content_length = 0  # 0 when chunked
        self.chunked = False
        self.keep_alive = True
        self.expect_continue = False
        self.authority = None  # host[:port] of an absolute-form target, which Host then yields to

    def header(self, lower_name, default=None):
        for name, value in self.headers:
            if name.lower() == lower_name:
                return value
        return default


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"HTTP/1\.([01])\Z")
_ANY_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]\Z")
_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f]")
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The authority of an absolute-form target (RFC 3986 section 3.2.2, without userinfo):
# uri-host [":" port], or empty; an IP literal in brackets.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|\[[vV][0-9A-Fa-f]+\.[\w.~!$&'()*+,;=:-]+\]|[\w.~%!$&'()*+,;=-]*)(?::[0-9]*)?\Z",
                   re.ASCII)


def find_head_end(buf, start=0):
    """The index just past the blank line ending a head in ``buf``, or -1.

    Lines end with CRLF or a bare LF (RFC 9112 section 2.2 allows a server to accept it).
    ``start`` is where to resume a search that found nothing (the last bytes seen may be
    the first half of the terminator)."""
    i = buf.find(b"\n", max(start - 3, 0))
    while i >= 0:
        j = i + 1
        if buf[j:j + 1] == b"\n":
            return j + 1
        if buf[j:j + 2] == b"\r\n":
            return j + 2
        i = buf.find(b"\n", j)
    return -1


# Optional whitespace (RFC 9110 section 5.6.3) is SP and HTAB only. str.strip() would take
# latin-1's NBSP (\xa0) and NEL (\x85) too, so "Content-Length: \xa05" would frame a body
# that nginx and HAProxy refuse: a proxy and this server would disagree where it ends.
_OWS = " \t"


def _parse_content_length(values):
    lengths = set()
    for v in values:
        for part in v.split(","):
            part = part.strip(_OWS)
            if not part.isdigit() or not part.isascii() or len(part) > 18:
                raise HeadError(400, "invalid Content-Length")
            lengths.add(int(part))
    if len(lengths) != 1:
        raise HeadError(400, "conflicting Content-Length values")
    return lengths.pop()


_DEFAULT_LIMITS = Limits()

# The fast path: a well-formed head (as latin-1 text: the request line, header fields
# without folding, whitespace before the colon or control characters) is checked and
# taken apart by two regular expressions, one match for the request line and one
# findall over the fields: all the fields are well formed when findall finds one on
# every line. Anything else goes through the line-by-line checks of
# _parse_head_carefully, which find the refusal. tests/python/test_forkpool_wsgi.py
# checks that both agree on mutated heads.
_TOKEN_TEXT = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile("(" + _TOKEN_TEXT + r") ([^\x00-\x20\x7f]+) HTTP/1\.([01])\r?\n")
_FIELD = re.compile("^(" + _TOKEN_TEXT + r"):[ \t]*((?:[^\x00-\x08\x0a-\x1f\x7f]*[^\x00-\x20\x7f])?)[ \t]*\r?\n",
                    re.MULTILINE)
# Header fields the parser acts on; any other name is only kept.
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection", "expect", "host"))


def parse_request_head(head, limits=None):
    """Parses one request head (``head`` ends with its blank line, as ``find_head_end``
    finds it) into a RequestHead. Raises HeadError for anything refused."""
    limits = limits or _DEFAULT_LIMITS
    text = head.decode("latin-1")
    m = _REQUEST_LINE.match(text)
    if m is None or m.end() > limits.request_line:
        return _parse_head_carefully(head, limits)
    # The fields, each with its line end, without the blank line that ends the head.
    rest = text[m.end():]
    if rest.endswith("\n\r\n") or rest == "\r\n":
        fields = rest[:-2]
    elif rest.endswith("\n\n") or rest == "\n":
        fields = rest[:-1]
    else:
        return _parse_head_carefully(head, limits)  # no blank line at the end
    if len(fields) > limits.field_size:
        return _parse_head_carefully(head, limits)  # a field may be over the limit
    headers = _FIELD.findall(fields)
    if len(headers) != fields.count("\n") or len(headers) > limits.fields:
        return _parse_head_carefully(head, limits)  # a malformed line, or too many
    req = RequestHead()
    req.headers = headers
    lengths = encodings = connection = expect = None
    hosts = []
    for name, value in headers:
        lname = name.lower()
        if lname in _FRAMING:
            if lname == "host":
                hosts.append(value)
            elif lname == "content-length":
                lengths = (lengths or []) + [value]
            elif lname == "transfer-encoding":
                encodings = (encodings or []) + [e.strip(_OWS).lower() for e in value.split(",") if e.strip(_OWS)]
            elif lname == "connection":
                connection = (connection or []) + [t.strip(_OWS).lower() for t in value.split(",")]
            else:
                expect = value.strip(_OWS).lower()
    req.method, req.target, minor = m.groups()
    _finish_head(req, minor == "1", lengths, encodings, connection or (), expect, hosts)
    return req


def _parse_head_carefully(head, limits):
    """parse_request_head line by line: finds the refusal of a head the fast path did
    not match (or one near a limit)."""
    lines = head.split(b"\n")
    # The head ends with an empty line; split() leaves an empty string after it.
    if len(lines) < 3 or lines[-1] != b"" or lines[-2] not in (b"", b"\r"):
        raise HeadError(400, "incomplete request head")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines[:-2]]
    request_line = lines[0]
    if len(request_line) > limits.request_line:
        raise HeadError(400, "request line too long")
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise HeadError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HeadError(400, "malformed method")
    m = _VERSION.match(version)
    if m is None:
        if _ANY_VERSION.match(version):
            raise HeadError(505, "HTTP version not supported")
        raise HeadError(400, "malformed HTTP version")
    minor = int(m.group(1))
    if not target or _TARGET_BAD.search(target):
        raise HeadError(400, "malformed request target")

    if len(lines) - 1 > limits.fields:
        raise HeadError(431, "too many header fields")
    req = RequestHead()
    headers = req.headers
    lengths = []
    encodings = None
    connection = []
    expect = None
    hosts = []
    for line in lines[1:]:
        if len(line) > limits.field_size:
            raise HeadError(431, "header field too large")
        if line[:1] in (b" ", b"\t"):
            raise HeadError(400, "obsolete line folding")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise HeadError(400, "malformed header field")
        value = value.strip(b" \t")
        if _VALUE_BAD.search(value):
            raise HeadError(400, "invalid character in header value")
        name_s = name.decode("ascii")
        value_s = value.decode("latin-1")
        headers.append((name_s, value_s))
        lname = name_s.lower()
        if lname == "host":
            hosts.append(value_s)
        elif lname == "content-length":
            lengths.append(value_s)
        elif lname == "transfer-encoding":
            encodings = (encodings or []) + [e.strip(_OWS).lower() for e in value_s.split(",") if e.strip(_OWS)]
        elif lname == "connection":
            connection.extend(t.strip(_OWS).lower() for t in value_s.split(","))
        elif lname == "expect":
            expect = value_s.strip(_OWS).lower()

    req.method = method.decode("ascii")
    req.target = target.decode("latin-1")
    _finish_head(req, minor == 1, lengths, encodings, connection, expect, hosts)
    return req


def _finish_head(req, http11, lengths, encodings, connection, expect, hosts):
    """Version, keep-alive, framing, Host and target of a head whose fields are checked.
    ``encodings`` is None without a Transfer-Encoding field, else its codings in order."""
    req.version = "HTTP/1.1" if http11 else "HTTP/1.0"
    if not http11:
        req.keep_alive = "keep-alive" in connection
    else:
        req.keep_alive = "close" not in connection
    if encodings is not None:
        if not http11:
            raise HeadError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if not encodings or encodings[-1] != "chunked" or "chunked" in encodings[:-1]:
            # RFC 9112 section 6.3: without chunked as the last coding (an empty field
            # included) the body's end cannot be known; chunked twice is not allowed.
            raise HeadError(400, "Transfer-Encoding does not end with chunked")
        if len(encodings) > 1:
            raise HeadError(501, "unsupported Transfer-Encoding")
        req.chunked = True
        if lengths:
            # Both: the length is ignored (RFC 9112 section 6.3) and the connection
            # ends after this request, so a disagreeing proxy cannot smuggle one.
            req.keep_alive = False
    elif lengths:
        req.content_length = _parse_content_length(lengths)
    req.expect_continue = http11 and expect == "100-continue"
    # Two Host fields are refused (RFC 9112 section 3.2: the app would see "a,b", and a
    # cache in front might key on the other). A missing or odd Host is left to the app
    # (Django's ALLOWED_HOSTS, Flask's SERVER_NAME), as gunicorn and uWSGI leave it:
    # health checks and hand-written clients often send none.
    if len(hosts) > 1:
        raise HeadError(400, "more than one Host field")

    # A fragment is the client's own (no '#' belongs in a request target): cut off first,
    # so "/a#f?x" has no query, as gunicorn reads it.
    t = req.target.partition("#")[0]
    if t.startswith("/"):
        path, _, query = t.partition("?")
    elif t == "*":
        path, query = "*", ""
    else:
        scheme, sep, rest = t.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            raise HeadError(400, "malformed request target")
        # absolute-form (RFC 9112 section 3.2.2): the authority stands for Host; the
        # path may be empty ("http://h?q" is "/" with the query "q").
        end = len(rest)
        for c in "/?#":
            i = rest.find(c)
            if 0 <= i < end:
                end = i
        authority = rest[:end]
        # An http(s) URI with an empty host is invalid (RFC 9110 section 4.2.1).
        if "@" in authority or not _HOST.match(authority) or authority.startswith(":") or not authority:
            raise HeadError(400, "malformed request target")
        req.authority = authority
        rest = rest[end:]
        path, _, query = rest.partition("?")
        if not path.startswith("/"):
            path = "/" + path
    req.path = path
    req.query = query


# A read that timed out: socket.timeout (TimeoutError) with a Python-level timeout, or
# EAGAIN (BlockingIOError) from a blocking socket with SO_RCVTIMEO (set_io_timeout).
_TIMEOUTS = (TimeoutError, BlockingIOError)


def set_io_timeout(sock, seconds):
    """Bounds every recv and send on a blocking socket by ``seconds``, in the kernel
    (SO_RCVTIMEO, SO_SNDTIMEO). Python's own socket timeout would poll() before every
    recv and send; this costs nothing per call. A timeout then raises BlockingIOError."""
    if sock.gettimeout() is not None:
        sock.settimeout(None)  # blocking (a connection from the master already is)
    whole = int(seconds)
    tv = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


class ClientGone(ConnectionAbortedError):
    """The client closed the connection or let a read time out in the middle of a request."""


class ConnReader:
    """The connection's read buffer: a request head at a time, then its body."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def buffered(self):
        return len(self.buf)

    def skip_empty_lines(self):
        """Drops the empty lines (CRLF or LF) at the start of the buffer: a client may send
        them before a request (RFC 9112 section 2.2), or one after a body, as old ones do."""
        buf = self.buf
        while buf and buf[0] in (10, 13):
            if buf[0] == 10:
                del buf[:1]
            elif buf[1:2] == b"\n":
                del buf[:2]
            else:
                break  # a CR not (yet) followed by LF

    def fill(self, size=65536):
        """Reads what the socket has (blocking up to its timeout); False at EOF."""
        data = self.sock.recv(size)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self, limits, within=None):
        """The next request head as bytes, or None when the connection ends before one.

        Empty lines before a request are skipped (RFC 9112 section 2.2). Raises
        HeadError (400 or 431) when the head grows past the limits, ClientGone when the
        client goes away or times out halfway through a head, or has not sent it whole
        ``within`` seconds after its first bytes (nginx's client_header_timeout: a
        client that trickles a byte at a time is not waited for without end),
        TimeoutError when nothing at all arrives in time."""
        buf = self.buf
        scanned = 0
        first = True
        started = None  # when the first bytes of this head were there
        while True:
            if within is not None and buf and started is None:
                # Empty lines count: a client that sends CRLF now and then holds the
                # worker no longer than one that trickles a head.
                started = time.monotonic()
            self.skip_empty_lines()
            end = find_head_end(buf, scanned)
            if end >= 0:
                head = bytes(buf[:end])
                del buf[:end]
                return head
            scanned = len(buf)
            if started is not None and time.monotonic() - started > within:
                raise ClientGone("request head not complete within %gs" % within)
            if b"\n" not in buf and len(buf) > limits.request_line + 1:
                raise HeadError(400, "request line too long")
            if len(buf) > limits.head_size():
                raise HeadError(431, "request head too large")
            try:
                if not self.fill():
                    if buf.strip(b"\r\n"):
                        raise ClientGone("connection closed in a request head")
                    return None
            except _TIMEOUTS:
                if not first or buf:
                    raise ClientGone("timed out in a request head") from None
                raise TimeoutError("no request") from None
            first = False

    def read_some(self, limit):
        """Up to ``limit`` bytes (at least one); raises ClientGone at EOF."""
        buf = self.buf
        if not buf:
            try:
                data = self.sock.recv(min(limit, 262144))
            except _TIMEOUTS:
                raise ClientGone("timed out in a request body") from None
            if not data:
                raise ClientGone("connection closed in a request body")
            if len(data) <= limit:
                return data
            buf += data[limit:]
            return data[:limit]
        n = min(limit, len(buf))
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def read_line(self, limit):
        """One line with its LF, at most ``limit`` bytes; raises ClientGone at EOF and
        HeadError(400) for a longer line."""
        buf = self.buf
        while True:
            i = buf.find(b"\n", 0, limit + 1)
            if i >= 0:
                line = bytes(buf[:i + 1])
                del buf[:i + 1]
                return line
            if len(buf) > limit:
                raise HeadError(400, "chunk line too long")
            try:
                if not self.fill():
                    raise ClientGone("connection closed in a chunked body")
            except _TIMEOUTS:
                raise ClientGone("timed out in a chunked body") from None


class BodyCut(ClientGone):
    """Raised by wsgi.input when the client went away (or silent) in the middle of the
    request body: what came is not the whole body, and the app must not take it for one."""


_werkzeug_classes = {}


def _as_werkzeug(base, werkzeug_name, make, args_of, description):
    """``make(base)``, also an instance of Werkzeug's exception ``werkzeug_name`` when the
    app runs on Werkzeug (Flask): a 400 that Flask answers without logging a traceback, as
    under Werkzeug's own server. Werkzeug is used only if the app imported it; anything
    unexpected in it gives ``make(base)`` alone. The combined class pickles (and shows
    itself) as ``base``, rebuilt from ``args_of(exc)``: it is not importable by name."""
    werkzeug = sys.modules.get("werkzeug.exceptions")
    theirs = getattr(werkzeug, werkzeug_name, None)
    if not isinstance(theirs, type) or not issubclass(theirs, Exception):
        return make(base)
    cls = _werkzeug_classes.get((base, theirs))
    if cls is None:
        try:
            cls = type(base.__name__, (base, theirs), {
                "__qualname__": base.__qualname__ + "_under_werkzeug",
                "__str__": lambda self: base.__str__(self),
                "__repr__": lambda self: "%s(%s)" % (base.__name__, ", ".join(map(repr, args_of(self)))),
                "__reduce__": lambda self: (base, args_of(self)),
            })
        except TypeError:  # a Werkzeug whose exception cannot be combined: ours alone
            cls = base
        _werkzeug_classes[(base, theirs)] = cls
    try:
        exc = make(cls)
        if cls is not base:
            theirs.__init__(exc, description)
            exc.args = make(base).args  # Werkzeug's constructor reset them
        return exc
    except Exception:  # noqa: BLE001
        return make(base)


def body_cut(reason):
    """A BodyCut for ``reason``; under Werkzeug also its ClientDisconnected (400)."""
    return _as_werkzeug(BodyCut, "ClientDisconnected", lambda cls: cls(reason), lambda e: tuple(e.args),
                        "the request body was cut short: " + reason)


def bad_body(reason):
    """HeadError(400) for a malformed request body; under Werkzeug also its BadRequest."""
    return _as_werkzeug(HeadError, "BadRequest", lambda cls: cls(400, reason), lambda e: (e.status, e.reason),
                        "bad request body: " + reason)


class Body:
    """wsgi.input: read(), readline(), readlines() and iteration over the request body.

    Subclasses provide ``_next(limit)``: up to ``limit`` bytes of the body, b"" at its
    end. ``on_first_read`` is called before the first read (100 Continue).

    A client that goes away in the middle of the body (closes, resets, or lets a read
    time out) raises BodyCut (a ClientGone, so an OSError) at the read that finds it and
    at every later one: with a chunked body, or an app that does not compare what it
    read with CONTENT_LENGTH, a short read would be taken for the whole body. ``gone``
    then says why, and the connection is not kept.

    A malformed chunked body raises HeadError(400) to the app, at that read and every
    later one; ``broken`` then says why, and the connection is not kept: where the
    request ends is not known, so nothing after it is read as a request."""

    def __init__(self, reader, on_first_read=None):
        self._reader = reader
        self._on_first_read = on_first_read
        self._pending = b""  # read past a line end by readline()
        self.finished = False
        self.gone = None
        self.broken = None

    def _start(self):
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            callback()

    def _take(self, limit):
        if self._pending:
            data, self._pending = self._pending[:limit], self._pending[limit:]
            return data
        if self.broken is not None:
            raise bad_body(self.broken)
        if self.gone is not None:
            raise body_cut(self.gone)
        if self.finished:
            return b""
        try:
            self._start()
            data = self._next(limit)
        except ConnectionError as e:  # ClientGone included
            self.gone = str(e) or type(e).__name__
            raise body_cut(self.gone) from None
        except HeadError as e:
            self.broken = e.reason
            raise bad_body(e.reason) from None
        if not data:
            self.finished = True
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            parts = []
            while True:
                data = self._take(262144)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        parts = []
        while size > 0:
            data = self._take(size)
            if not data:
                break
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def readline(self, size=-1):
        limit = size if size is not None and size >= 0 else 1 << 62
        parts = []
        while limit > 0:
            data = self._take(min(limit, 65536))
            if not data:
                break
            i = data.find(b"\n")
            if i >= 0:
                self._pending = data[i + 1:] + self._pending
                parts.append(data[:i + 1])
                break
            parts.append(data)
            limit -= len(data)
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def discard(self, most):
        """Reads and drops what is left, up to ``most`` bytes; True if the body ended
        (False too when the client went away in it)."""
        try:
            while most > 0:
                data = self._take(min(most, 65536))
                if not data:
                    break
                most -= len(data)
        except ClientGone:
            return False
        return not self.has_unread()

    def has_unread(self):
        """True when the body is not read to its end (bytes of it may still come)."""
        return not (self.finished and not self._pending) or self.gone is not None or self.broken is not None

    def awaits_continue(self):
        """True when the client waits for 100 Continue before it sends the body."""
        return self._on_first_read is not None

    def known_left(self):
        """Bytes of the body not yet received, when known (0 otherwise)."""
        return 0


class LengthBody(Body):
    def __init__(self, reader, length, on_first_read=None):
        super().__init__(reader, on_first_read if length > 0 else None)
        self._left = length
        self.finished = length == 0

    def known_left(self):
        return self._left + len(self._pending)

    def _next(self, limit):
        if self._left <= 0:
            return b""
        data = self._reader.read_some(min(limit, self._left))
        self._left -= len(data)
        return data


# A chunk-size line (RFC 9112 section 7.1): the size in hex, extensions (name, or
# name=token or quoted string, with optional whitespace around ";" and "="), CRLF.
_CHUNK_EXT = (rb'(?:[ \t]*;[ \t]*[!#$%&\'*+\-.^_`|~0-9A-Za-z]+'
              rb'(?:[ \t]*=[ \t]*(?:[!#$%&\'*+\-.^_`|~0-9A-Za-z]+'
              rb'|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*')
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})" + _CHUNK_EXT + rb"\r\n\Z")
_TRAILER_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n\Z")


class ChunkedBody(Body):
    """A chunked request body (RFC 9112 section 7.1); trailers are read and dropped.

    Stricter than the head: every line of the body ends with CRLF (a bare LF, which the
    head may use, is refused here), so that a proxy in front and this server cannot
    disagree on where a chunk, and so the request, ends."""

    LINE_LIMIT = 4096
    TRAILER_LIMIT = 100  # trailer fields, as Limits.fields

    def __init__(self, reader, on_first_read=None):
        super().__init__(reader, on_first_read)
        self._left = 0  # bytes left in the current chunk
        self._done = False

    def _next(self, limit):
        reader = self._reader
        if self._done:
            return b""
        if self._left == 0:
            m = _CHUNK_LINE.match(reader.read_line(self.LINE_LIMIT))
            if m is None:
                raise HeadError(400, "malformed chunk size line")
            self._left = int(m.group(1), 16)
            if self._left == 0:
                for _ in range(self.TRAILER_LIMIT + 1):
                    line = reader.read_line(self.LINE_LIMIT)
                    if line == b"\r\n":
                        self._done = True
                        return b""
                    if not _TRAILER_FIELD.match(line):
                        raise HeadError(400, "malformed trailer field")
                raise HeadError(400, "too many trailer fields")
        data = reader.read_some(min(limit, self._left))
        self._left -= len(data)
        if self._left == 0 and reader.read_line(2) != b"\r\n":
            raise HeadError(400, "chunk not followed by CRLF")
        return data
