# SPDX-License-Identifier: Apache-2.0
"""One request of forkpool-wsgi: the environ, wsgiref's handler writing HTTP/1.1, the
answers to refused heads, and the access log. The connection loop is forkpool_wsgi.py."""

import base64
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from wsgiref.handlers import BaseHandler, format_date_time
from wsgiref.headers import Headers
from wsgiref.util import FileWrapper, is_hop_by_hop

import forkpool_http as http

__all__ = ["Handler", "Listener", "connection_vars", "build_environ", "error_response", "AccessLog",
           "SERVER_SOFTWARE", "BODY_DRAIN_LIMIT"]

SERVER_SOFTWARE = "forkpool-wsgi"
BODY_DRAIN_LIMIT = 1 << 20  # unread request body read and dropped to keep a connection


_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = format_date_time(now)
    return _date_cache[1]


class Handler(BaseHandler):
    """wsgiref's WSGI semantics for one request, writing HTTP/1.1 to the connection."""

    os_environ = {}  # the process environment is not part of a request's environ
    server_software = SERVER_SOFTWARE
    http_version = "1.1"
    wsgi_multiprocess = True
    wsgi_run_once = False

    def __init__(self, conn, req, environ, body, multithread, head_only, send_timeout=30.0, ending=None):
        self._conn = conn
        self._ending = ending  # a callable: True once the worker is finishing (Connection: close)
        self._send_timeout = send_timeout
        self._req = req
        self._base_environ = environ
        self._body = body
        self.wsgi_multithread = multithread
        self.head_only = head_only
        self.out = []
        self.chunked = False
        self.declared_length = None
        self.body_sent = 0
        self.keep_alive = req.keep_alive
        self.status_code = 0
        self.no_body = False  # 204 or 304: whatever the app returns is not sent
        self.overran = False  # the app sent more than its Content-Length
        self.failed_late = False  # the app failed after the status line was sent
        self.completed = False  # the response was sent in full and the iterable closed

    # Input and output.
    def get_stdin(self):
        return self._body

    def get_stderr(self):
        return sys.stderr

    def setup_environ(self):
        # wsgiref's setup_environ, in one step: build_environ made a fresh dict with the
        # CGI variables (nothing of os.environ, so no HTTPS there: the scheme is http).
        env = self.environ = self._base_environ
        env["wsgi.input"] = self._body
        env["wsgi.errors"] = sys.stderr
        env["wsgi.version"] = (1, 0)
        env["wsgi.run_once"] = False
        env["wsgi.url_scheme"] = "http"
        env["wsgi.multithread"] = self.wsgi_multithread
        env["wsgi.multiprocess"] = True
        env["wsgi.file_wrapper"] = FileWrapper
        env["SERVER_SOFTWARE"] = SERVER_SOFTWARE

    def _write(self, data):
        self.out.append(data)

    def _flush(self):
        if self.out:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out = []
            try:
                self._conn.sendall(data)
            except (TimeoutError, BlockingIOError) as e:
                raise self._stopped_reading() from e
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
                raise http.ClientGone("the client went away: %s" % e) from e

    def _stopped_reading(self):
        """A send that timed out: the client stopped reading the response. That is the
        client going away (wsgiref ends the request quietly on ConnectionAbortedError), not
        an error of the app: one line, no traceback."""
        env = self.environ or {}
        print("forkpool-wsgi[%d]: client stopped reading the response of %s %s (nothing taken for %gs)"
              % (os.getpid(), env.get("REQUEST_METHOD", "?"), env.get("RAW_URI", "?"), self._send_timeout),
              file=sys.stderr)
        return http.ClientGone("the client stopped reading")

    def run(self, application):
        # wsgiref's run(), except that only a write to the client that failed (ClientGone)
        # ends the request quietly: a ConnectionResetError or BrokenPipeError the app
        # raised itself (an upstream that hung up, say) is an error of the app, answered
        # with a 500 and a traceback like any other.
        try:
            self.setup_environ()
            self.result = application(self.environ, self.start_response)
            self.finish_response()
        except http.ClientGone:
            return
        except:  # noqa: E722 (wsgiref's rule: whatever the app raised)
            try:
                self.handle_error()
            except http.ClientGone:
                return
            except:  # noqa: E722
                self.close()
                raise

    # Headers.
    def start_response(self, status, headers, exc_info=None):
        # Hop-by-hop fields are the server's (PEP 3333); as gunicorn does, they are dropped
        # rather than refused, and an app's "Connection: close" is honoured.
        if exc_info is None and self.headers is None and type(headers) is list:
            # The usual call, checked as wsgiref checks it, in one pass over the fields.
            for field in headers:
                name, value = field
                if type(name) is not str or type(value) is not str or name.lower() in _HOP_BY_HOP:
                    break
            else:
                if type(status) is not str:
                    raise AssertionError("Status must be of type str (got %r)" % (status,))
                if len(status) < 4 or not status[:3].isdigit() or status[3] != " " or status[0] < "2":
                    raise AssertionError("Status must be a 3-digit code of 200 or more, a space and a reason: %r"
                                         % status)
                self.status = status
                self.headers = _headers_unchecked(headers)
                return self.write
        if any(is_hop_by_hop(name) for name, _ in headers):
            kept = []
            for name, value in headers:
                if not is_hop_by_hop(name):
                    kept.append((name, value))
                elif name.lower() == "connection" and "close" in value.lower():
                    self.keep_alive = False
            headers = kept
        if type(status) is str and status[:1] in ("0", "1"):
            # An interim (1xx) status cannot be the response: the client would wait on.
            raise AssertionError("Status must be 200 or more: %r" % status)
        # A copy, as above (wsgiref's Headers keeps the list it is given, and refuses what
        # is not a list, as PEP 3333 asks).
        return super().start_response(status, list(headers) if type(headers) is list else headers, exc_info)

    def cleanup_headers(self):
        headers = self.headers
        # From scratch: a response refused in send_headers is followed by the 500 of
        # handle_error, which must not inherit its framing (chunked, length).
        self.chunked = False
        self.declared_length = None
        self.status_code = int(self.status[:3])
        no_body = self.no_body = self.status_code in (204, 304)
        length = None
        lengths = 0
        self._has_date = self._has_server = False
        hop_by_hop = False  # start_response dropped them; kept as a guard for subclasses
        for name, value in headers._headers:
            lname = name.lower()
            if lname == "content-length":
                lengths += 1
                if length is None:
                    length = value
                elif value.strip(" \t") != length.strip(" \t"):
                    raise AssertionError("two different Content-Length values: %r and %r" % (length, value))
            elif lname == "date":
                self._has_date = True
            elif lname == "server":
                self._has_server = True
            elif lname in _HOP_BY_HOP:
                hop_by_hop = True
        # Connection and Transfer-Encoding are added here: appended, or set (replacing
        # what the app put there) in the odd case above.
        add = headers.__setitem__ if hop_by_hop else lambda name, value: headers._headers.append((name, value))
        if length is None and not no_body:
            # wsgiref's rule: a single block gives the length, for HEAD as for GET (an app
            # that answers HEAD as GET gets the GET's length, an empty block 0); frameworks
            # (Werkzeug) return no block at all for HEAD, which gives no length here.
            self.set_content_length()
            length = headers.get("Content-Length")
        if lengths > 1 or (length is not None and self.status_code == 204):
            # One Content-Length on the wire; none on a 204 (RFC 9110 section 8.6).
            del headers["Content-Length"]
            if self.status_code != 204:
                headers._headers.append(("Content-Length", length))
        if length is not None:
            text = length.strip(" \t")
            if not (text.isdigit() and text.isascii()):
                raise AssertionError("Content-Length must be a number of bytes: %r" % length)
            self.declared_length = int(text)
        elif not no_body:
            if self._req.version == "HTTP/1.1":
                # HEAD too: the GET's framing (RFC 9112 section 6.1), no body follows.
                add("Transfer-Encoding", "chunked")
                self.chunked = not self.head_only
            elif not self.head_only:
                self.keep_alive = False  # the end of the body is the end of the connection
        body = self._body
        if body.has_unread() and (body.gone is not None or body.broken is not None or body.awaits_continue()
                                  or body.known_left() > BODY_DRAIN_LIMIT):
            # The client went away in its body, was never asked for it, or too much of it
            # is left to read and drop after this response: the connection ends with it.
            self.keep_alive = False
        if self.keep_alive and self._ending is not None and self._ending():
            self.keep_alive = False  # the worker is finishing: this is the last answer
        if not self.keep_alive:
            add("Connection", "close")
        elif self._req.version == "HTTP/1.0":
            add("Connection", "keep-alive")

    def send_headers(self):
        # wsgiref's send_headers and send_preamble, as one block of bytes.
        self.cleanup_headers()
        parts = []
        if not self._has_date:
            parts += ("Date: ", _http_date(), "\r\n")
        if not self._has_server:
            parts.append("Server: " + SERVER_SOFTWARE + "\r\n")
        colon = False  # a ':' in a name: "X-A: b" would pass the line check as name X-A
        for name, value in self.headers._headers:
            parts += (name, ": ", value, "\r\n")
            colon = colon or ":" in name
        fields = "".join(parts)
        # Checked before anything is sent, so that what fails is answered with a 500: a
        # field name that is not a token, a CR, LF or other control character in a value
        # (a response split in two: one line end per field), a reason phrase with one,
        # text beyond latin-1.
        if (colon or _FIELDS_OK.match(fields) is None or fields.count("\n") != len(self.headers._headers) + (not self._has_date) + (not self._has_server)
                or _REASON_BAD.search(self.status) is not None):
            raise AssertionError("invalid response status or header field: %r %r"
                                 % (self.status, _first_bad_field(self.headers._headers)))
        data = ("HTTP/1.1 " + self.status + "\r\n" + fields + "\r\n").encode("iso-8859-1")
        self.headers_sent = True
        self._write(data)

    # The body.
    def write(self, data):
        if type(data) is not bytes:
            raise AssertionError("write() argument must be a bytes instance")
        if not self.status:
            raise AssertionError("write() before start_response()")
        if not self.headers_sent:
            self.bytes_sent = len(data)
            self.send_headers()
        else:
            self.bytes_sent += len(data)
        if data and not self.head_only and not self.no_body:
            if self.chunked:
                self._write(b"%x\r\n" % len(data))
                self._write(data)
                self._write(b"\r\n")
            else:
                if self.declared_length is not None and self.body_sent + len(data) > self.declared_length:
                    data = self._beyond_length(data)
                self._write(data)
            self.body_sent += len(data)
        self._flush()

    def _beyond_length(self, data):
        """What of ``data`` fits the declared Content-Length; the rest is not sent (to a
        client that pipelines, it would read as the next response) and the connection
        ends after this response."""
        fits = data[:max(self.declared_length - self.body_sent, 0)]
        if not self.overran:
            env = self.environ or {}
            print("forkpool-wsgi[%d]: %s %s: the app sent more than its Content-Length of %d; the rest is cut"
                  % (os.getpid(), env.get("REQUEST_METHOD", "?"), env.get("RAW_URI", "?"), self.declared_length),
                  file=sys.stderr)
        self.overran = True
        self.keep_alive = False
        return fits

    def finish_content(self):
        if not self.headers_sent:
            code = int(self.status[:3])
            if code >= 200 and code not in (204, 304) and not self.head_only:
                self.headers.setdefault("Content-Length", "0")
            self.send_headers()
        elif self.chunked:
            self._write(b"0\r\n\r\n")
        self._check_length()
        self._flush()

    def _check_length(self):
        if (self.declared_length is not None and not self.head_only and not self.no_body
                and self.body_sent != self.declared_length):
            self.keep_alive = False  # the client cannot tell where this response ends

    def sendfile(self):
        filelike = self.result.filelike
        if (self.head_only or self.chunked or "Content-Length" not in self.headers
                or self.status[:3] in ("204", "304")):
            return False
        try:
            filelike.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        if not self.headers_sent:
            self.send_headers()
            self._flush()
        if self.chunked:
            return False
        # socket.sendfile() waits without end on a blocking socket the client does not read.
        self._conn.settimeout(self._send_timeout)
        try:
            sent = self._conn.sendfile(filelike, offset=filelike.tell(), count=self.declared_length)
        except (TimeoutError, BlockingIOError) as e:
            raise self._stopped_reading() from e
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            raise http.ClientGone("the client went away: %s" % e) from e
        finally:
            self._conn.settimeout(None)
        self.body_sent += sent
        self.bytes_sent += sent
        # A file shorter than its Content-Length (wsgiref skips finish_content after a
        # sendfile): the client waits for the rest, so the connection ends here.
        self._check_length()
        return True

    def close(self):
        try:
            super().close()
        finally:
            self.completed = True

    # Errors.
    def log_exception(self, exc_info):
        env = self.environ or {}
        print("forkpool-wsgi[%d]: error handling %s %s" % (os.getpid(), env.get("REQUEST_METHOD", "?"),
                                                          env.get("RAW_URI", "?")), file=sys.stderr)
        super().log_exception(exc_info)

    def handle_error(self):
        if self.headers_sent:
            self.failed_late = True
            self.keep_alive = False
        self.out = []
        if self._body.broken is not None and isinstance(sys.exc_info()[1], http.HeadError):
            # The client's malformed chunked body reached the app as HeadError: a 400 and
            # no traceback (forkpool_wsgi logs one line), not an error of the app.
            self.keep_alive = False
            if not self.headers_sent:
                self.error_status = "400 Bad Request"
                self.error_body = b"bad request body: " + self._body.broken.encode("latin-1", "replace") + b"\n"
                self.result = self.error_output(self.environ, self.start_response)
                self.finish_response()
            return
        super().handle_error()


_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailers", "transfer-encoding", "upgrade"))  # wsgiref.util's


# What a response's header fields (each "name: value\r\n") and status must look like.
_FIELDS_OK = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff]*\r\n)*\Z")
_REASON_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff]")


def _first_bad_field(fields):
    for name, value in fields:
        if ("\r" in value or "\n" in value or ":" in name
                or _FIELDS_OK.match("%s: %s\r\n" % (name, value)) is None):
            return (name, value)
    return None


def _headers_unchecked(fields):
    """wsgiref's Headers over a copy of ``fields``, whose types start_response has checked.
    A copy: the server adds its own fields (Content-Length, Transfer-Encoding, Connection)
    to the list, and an app may pass the same list to every response."""
    headers = Headers.__new__(Headers)
    headers._headers = list(fields)
    return headers


class Listener:
    """SERVER_NAME and SERVER_PORT of a listener as written in `listen`."""

    def __init__(self, address):
        self.unix = False
        # Whether `unix` is known; else the connection's family tells (not forkpool's address).
        self.known = address is not None and address.startswith(("unix:", "tcp://"))
        self.name = ""
        self.port = ""
        if address is None or address.startswith("unix:"):
            self.unix = address is not None
            return
        rest = address[len("tcp://"):] if address.startswith("tcp://") else address
        host, _, port = rest.rpartition(":")
        self.name = host.strip("[]")
        self.port = port
        if self.name in ("", "0.0.0.0", "::", "*") or self.port == "0":
            self.name = self.port = ""  # taken from the connection's own address


def connection_vars(conn, listener):
    """REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT for a connection."""
    # conn.family is converted to an enum on every read (0.35 µs): the listener tells.
    if listener.unix if listener.known else conn.family == socket.AF_UNIX:
        return "", "", listener.name or "localhost", listener.port or "80"
    try:
        peer = conn.getpeername()
        remote, remote_port = peer[0], str(peer[1])
    except OSError:
        remote, remote_port = "", ""
    name, port = listener.name, listener.port
    if not name:
        try:
            local = conn.getsockname()
            name, port = local[0], str(local[1])
        except OSError:
            name, port = "localhost", "80"
    return remote, remote_port, name, port


# The app mounted under a prefix, as gunicorn takes it: SCRIPT_NAME in the process
# environment (the pool's `env`), without its trailing slash. A request under it has the
# prefix as SCRIPT_NAME and the rest as PATH_INFO; any other keeps its whole path.
SCRIPT_NAME = os.environ.get("SCRIPT_NAME", "").rstrip("/")


def _split_script_name(path):
    if SCRIPT_NAME and path.startswith(SCRIPT_NAME) and path[len(SCRIPT_NAME):len(SCRIPT_NAME) + 1] in ("", "/"):
        return SCRIPT_NAME, path[len(SCRIPT_NAME):]
    return "", path


def build_environ(req, conn_vars):
    """The CGI part of a request's environ (PEP 3333)."""
    remote, remote_port, server_name, server_port = conn_vars
    path_info = urllib.parse.unquote(req.path, "iso-8859-1")
    script_name = ""
    if SCRIPT_NAME:
        script_name, path_info = _split_script_name(path_info)
    env = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": req.query,
        "RAW_URI": req.target,
        "REQUEST_URI": req.target,
        "SERVER_PROTOCOL": req.version,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": remote,
        "REMOTE_PORT": remote_port,
        "wsgi.input_terminated": True,
    }
    for name, value in req.headers:
        key = name.upper()
        if "_" in key:
            continue  # X_Forwarded_For would pose as X-Forwarded-For: dropped, as gunicorn does
        key = key.replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if key == "CONTENT_LENGTH" and req.chunked:
                continue
        else:
            key = "HTTP_" + key
        if key in env:
            env[key] += "," + value
        else:
            env[key] = value
    if "CONTENT_LENGTH" in env and not req.chunked:
        env["CONTENT_LENGTH"] = str(req.content_length)  # "5, 5" or two fields: one number
    if req.authority is not None:
        env["HTTP_HOST"] = req.authority  # RFC 9112 section 3.2.2: the target's, not Host's
    return env


_ERROR_TEXT = {400: "Bad Request", 431: "Request Header Fields Too Large",
               501: "Not Implemented", 505: "HTTP Version Not Supported"}


def error_response(status, reason):
    body = ("%s\n" % reason).encode("latin-1", "replace")
    return (("HTTP/1.1 %d %s\r\nDate: %s\r\nServer: %s\r\nContent-Type: text/plain\r\n"
             "Content-Length: %d\r\nConnection: close\r\n\r\n")
            % (status, _ERROR_TEXT.get(status, "Error"), _http_date(), SERVER_SOFTWARE, len(body))
            ).encode("latin-1") + body


# What the client chose (the user of Basic auth, the target, Referer, User-Agent) is
# written with control characters, '"', '\\' and what is not ASCII as \xHH, as nginx
# writes its log: a client cannot add a line of its own or end a quoted field early.
_LOG_UNSAFE = re.compile(r'[\x00-\x1f"\\\x7f-\U0010ffff]')


def _log_safe(text):
    if _LOG_UNSAFE.search(text) is None:
        return text
    # environ's strings are latin-1 (PEP 3333): a character is the byte that came.
    return _LOG_UNSAFE.sub(lambda m: "".join("\\x%02x" % b for b in m.group().encode(
        "latin-1" if m.group() <= "\xff" else "utf-8", "replace")), text)


class AccessLog:
    """gunicorn's default access log format:
    %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" """

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()

    @staticmethod
    def _user(env):
        auth = env.get("HTTP_AUTHORIZATION", "")
        if auth[:6].lower() == "basic ":
            try:
                return base64.b64decode(auth[6:].strip()).decode("latin-1").split(":", 1)[0] or "-"
            except ValueError:
                return "-"
        return "-"

    def log(self, env, status, body_bytes):
        line = '%s - %s %s "%s %s %s" %s %s "%s" "%s"\n' % (
            env.get("REMOTE_ADDR") or "-", _log_safe(self._user(env)), time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            env["REQUEST_METHOD"], _log_safe(env["RAW_URI"]), env["SERVER_PROTOCOL"], status, body_bytes,
            _log_safe(env.get("HTTP_REFERER", "-")), _log_safe(env.get("HTTP_USER_AGENT", "-")))
        with self.lock:
            self.stream.write(line)
            self.stream.flush()
