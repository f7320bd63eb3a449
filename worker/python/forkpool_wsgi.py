"""forkpool-wsgi: runs a Python WSGI application as a forkpool master-dispatch worker.

    [pools.app]
    command = ["forkpool-wsgi", "myproject.wsgi:application"]
    listen = ["tcp://127.0.0.1:8000"]

Standard library only. The WSGI semantics are wsgiref's (``wsgiref.handlers.BaseHandler``:
start_response, write, exc_info, wsgi.file_wrapper, close() on the iterable, the 500
answer); this module adds HTTP/1.1 around it: keep-alive, chunked responses when no length
is given, chunked and Content-Length request bodies, Expect: 100-continue, HEAD, and the
hand-back of idle keep-alive connections to the master (PARK) when the pool has
keepalive = "master". See docs/wsgi.md.
"""

import argparse
import importlib
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from wsgiref.handlers import BaseHandler, format_date_time
from wsgiref.util import is_hop_by_hop

import forkpool_http as http
import forkpool_worker

__all__ = ["main", "load_app", "after_response", "CLOSE", "SERVE", "PARK", "WAIT"]

EX_CONFIG = 78  # sysexits.h: the pool is marked failed instead of restarted
SERVER_SOFTWARE = "forkpool-wsgi"
DRAIN_GRACE = 1.0  # seconds an idle keep-alive connection waits for its next request at end of work
LINGER = 2.0  # seconds a closing connection keeps reading what the client still sends
LINGER_QUIET = 0.2  # ... but no longer than this after the client stopped sending
BODY_DRAIN_LIMIT = 1 << 20  # unread request body read and dropped to keep a connection

# What to do with a connection once a response is complete (after_response).
CLOSE, SERVE, PARK, WAIT = "close", "serve", "park", "wait"


def after_response(keep_alive, buffered, keepalive_master):
    """The next step for a connection whose response is complete.

    ``keep_alive``: the response left the connection open; ``buffered``: bytes of the next
    request are already in this process (a pipelined request); ``keepalive_master``: the
    pool has keepalive = "master". A pipelined request is answered here first, since PARK
    may only hand back a connection with nothing of it buffered in the worker."""
    if not keep_alive:
        return CLOSE
    if buffered:
        return SERVE
    if keepalive_master:
        return PARK
    return WAIT


class Drain:
    """End of work: set once (the channel's end, SIGTERM/SIGINT), seen by every poll.

    A pipe whose read end stays readable once a byte is written, so a thread waiting
    in poll() on a keep-alive connection wakes up too."""

    def __init__(self):
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.is_set = False
        self.since = 0.0

    def fileno(self):
        return self._r

    def set(self, *_):
        if not self.is_set:
            self.since = time.monotonic()
            self.is_set = True
            try:
                os.write(self._w, b"x")
            except OSError:
                pass


class Options:
    def __init__(self, args):
        self.threads = args.threads
        self.keepalive_timeout = args.keepalive_timeout
        self.read_timeout = args.read_timeout
        self.limits = http.Limits(args.limit_request_line, args.limit_request_fields,
                                  args.limit_request_field_size)
        self.access_log = None
        if args.access_log == "-":
            self.access_log = sys.stdout
        elif args.access_log:
            self.access_log = open(args.access_log, "a", buffering=1, encoding="utf-8")


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

    def __init__(self, conn, req, environ, body, multithread, head_only, send_timeout=30.0):
        self._conn = conn
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
        self.failed_late = False  # the app failed after the status line was sent
        self.completed = False  # the response was sent in full and the iterable closed

    # Input and output.
    def get_stdin(self):
        return self._body

    def get_stderr(self):
        return sys.stderr

    def add_cgi_vars(self):
        self.environ.update(self._base_environ)

    def _write(self, data):
        self.out.append(data)

    def _flush(self):
        if self.out:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out = []
            self._conn.sendall(data)

    # Headers.
    def start_response(self, status, headers, exc_info=None):
        # Hop-by-hop fields are the server's (PEP 3333); as gunicorn does, they are dropped
        # rather than refused, and an app's "Connection: close" is honoured.
        if any(is_hop_by_hop(name) for name, _ in headers):
            kept = []
            for name, value in headers:
                if not is_hop_by_hop(name):
                    kept.append((name, value))
                elif name.lower() == "connection" and "close" in value.lower():
                    self.keep_alive = False
            headers = kept
        return super().start_response(status, headers, exc_info)

    def cleanup_headers(self):
        headers = self.headers
        self.status_code = int(self.status[:3])
        no_body = self.status_code < 200 or self.status_code in (204, 304)
        if "Content-Length" not in headers and not no_body:
            self.set_content_length()
        length = headers.get("Content-Length")
        if length is not None:
            try:
                self.declared_length = int(length)
            except ValueError:
                self.declared_length = None
                self.keep_alive = False
        elif not no_body and not self.head_only:
            if self._req.version == "HTTP/1.1":
                headers["Transfer-Encoding"] = "chunked"
                self.chunked = True
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        body = self._body
        if body.has_unread() and (body.awaits_continue() or body.known_left() > BODY_DRAIN_LIMIT):
            # The client was never asked for its body, or too much of it is left to read
            # and drop after this response: the connection ends with this response.
            self.keep_alive = False
        if not self.keep_alive:
            headers["Connection"] = "close"
        elif self._req.version == "HTTP/1.0":
            headers["Connection"] = "keep-alive"

    def send_preamble(self):
        headers = self.headers
        line = "HTTP/1.1 %s\r\n" % self.status
        if "Date" not in headers:
            line += "Date: %s\r\n" % _http_date()
        if "Server" not in headers:
            line += "Server: %s\r\n" % SERVER_SOFTWARE
        self._write(line.encode("iso-8859-1"))

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
        if data and not self.head_only:
            if self.chunked:
                self._write(b"%x\r\n" % len(data))
                self._write(data)
                self._write(b"\r\n")
            else:
                self._write(data)
            self.body_sent += len(data)
        self._flush()

    def finish_content(self):
        if not self.headers_sent:
            code = int(self.status[:3])
            if code >= 200 and code not in (204, 304):
                self.headers.setdefault("Content-Length", "0")
            self.send_headers()
        elif self.chunked:
            self._write(b"0\r\n\r\n")
        if self.declared_length is not None and not self.head_only and self.body_sent != self.declared_length:
            self.keep_alive = False  # the client cannot tell where this response ends
        self._flush()

    def sendfile(self):
        filelike = self.result.filelike
        if self.head_only or self.chunked or "Content-Length" not in self.headers:
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
        finally:
            self._conn.settimeout(None)
        self.body_sent += sent
        self.bytes_sent += sent
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
        super().handle_error()


class Listener:
    """SERVER_NAME and SERVER_PORT of a listener as written in `listen`."""

    def __init__(self, address):
        self.unix = False
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


def _addresses(conn, listener):
    """REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT for a connection."""
    if conn.family == socket.AF_UNIX:
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


def build_environ(req, conn_vars):
    """The CGI part of a request's environ (PEP 3333)."""
    remote, remote_port, server_name, server_port = conn_vars
    env = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(req.path, "iso-8859-1"),
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
    return env


_ERROR_TEXT = {400: "Bad Request", 431: "Request Header Fields Too Large",
               501: "Not Implemented", 505: "HTTP Version Not Supported"}


def _error_response(status, reason):
    body = ("%s\n" % reason).encode("latin-1", "replace")
    return (("HTTP/1.1 %d %s\r\nDate: %s\r\nServer: %s\r\nContent-Type: text/plain\r\n"
             "Content-Length: %d\r\nConnection: close\r\n\r\n")
            % (status, _ERROR_TEXT.get(status, "Error"), _http_date(), SERVER_SOFTWARE, len(body))
            ).encode("latin-1") + body


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
            import base64
            try:
                return base64.b64decode(auth[6:].strip()).decode("latin-1").split(":", 1)[0] or "-"
            except ValueError:
                return "-"
        return "-"

    def log(self, env, status, body_bytes):
        line = '%s - %s %s "%s %s %s" %s %s "%s" "%s"\n' % (
            env.get("REMOTE_ADDR") or "-", self._user(env), time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            env["REQUEST_METHOD"], env["RAW_URI"], env["SERVER_PROTOCOL"], status, body_bytes,
            env.get("HTTP_REFERER", "-"), env.get("HTTP_USER_AGENT", "-"))
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


def _close(conn, reader, lingering):
    """Ends the connection. With ``lingering``, the client may still be sending: the write
    side is shut first and input read for a moment, so the last response is not destroyed
    by a reset (closing with unread input sends RST)."""
    if lingering or reader.buffered():
        try:
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                conn.settimeout(min(left, LINGER_QUIET))
                if not conn.recv(65536):
                    break
        except OSError:  # socket.timeout included: the client has gone quiet
            pass


class Server:
    """Serves the connections the master sends, one at a time per thread."""

    def __init__(self, worker, app, opts, drain):
        self.worker = worker
        self.app = app
        self.opts = opts
        self.drain = drain
        self.access = AccessLog(opts.access_log) if opts.access_log else None
        self.multithread = opts.threads > 1
        self._listeners = {}

    def _listener(self, conn):
        address = getattr(conn, "forkpool_address", None)
        found = self._listeners.get(address)
        if found is None:
            found = self._listeners[address] = Listener(address)
        return found

    # --- one connection ---

    def serve_connection(self, conn):
        """Answers requests on ``conn`` until it is closed or parked; returns PARK or CLOSE."""
        reader = http.ConnReader(conn)
        conn_vars = _addresses(conn, self._listener(conn))
        http.set_io_timeout(conn, self.opts.read_timeout)
        first = True
        while True:
            if not first:
                step = after_response(True, reader.buffered(), self.worker.keepalive_master)
                if step == PARK:
                    return PARK
                if step == WAIT and not self._wait_next_request(conn):
                    _close(conn, reader, False)
                    return CLOSE
            first = False
            try:
                head = reader.read_head(self.opts.limits)
                if head is None:
                    return CLOSE
                req = http.parse_request_head(head, self.opts.limits)
            except http.HeadError as e:
                self._send_quietly(conn, _error_response(e.status, e.reason))
                _close(conn, reader, True)
                return CLOSE
            except (http.ClientGone, OSError):
                return CLOSE
            if self.drain.is_set and not self.worker.keepalive_master:
                # Ending: the last answer says Connection: close. With keepalive = "master"
                # the connection is parked instead, and its next request goes to another worker.
                req.keep_alive = False
            try:
                keep, body_left = self._serve_request(conn, reader, req, conn_vars)
            except (http.ClientGone, OSError):
                return CLOSE
            except http.HeadError as e:  # a malformed chunked body the app did not read
                self._send_quietly(conn, _error_response(e.status, e.reason))
                _close(conn, reader, True)
                return CLOSE
            if not keep:
                _close(conn, reader, body_left)
                return CLOSE

    def _send_quietly(self, conn, data):
        try:
            conn.sendall(data)
        except OSError:
            pass

    def _wait_next_request(self, conn):
        """Waits for the next request's first bytes on an idle keep-alive connection held
        by this worker (keepalive = "worker"): up to keepalive_timeout, or DRAIN_GRACE
        once the work ends. True when bytes (or EOF) arrived."""
        poller = select.poll()
        poller.register(conn, select.POLLIN | select.POLLRDHUP)
        poller.register(self.drain, select.POLLIN)
        poller.register(self.worker, select.POLLRDHUP)  # the master ended our work
        deadline = time.monotonic() + self.opts.keepalive_timeout
        while True:
            if self.drain.is_set:
                deadline = min(deadline, self.drain.since + DRAIN_GRACE)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for fd, events in poller.poll(left * 1000):
                if fd == conn.fileno():
                    return True
                if fd == self.worker.fileno():
                    poller.unregister(self.worker)
                    self.drain.set()
            if self.drain.is_set:
                poller.modify(self.drain, 0)  # stays readable; the deadline covers it now

    def _serve_request(self, conn, reader, req, conn_vars):
        """Runs the app for one request. Returns (keep, body_left): whether the connection
        stays open, and whether the client may still be sending this request's body."""
        continue_sent = []

        def send_continue():
            if not continue_sent:
                continue_sent.append(True)
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        on_first = send_continue if req.expect_continue else None
        if req.chunked:
            body = http.ChunkedBody(reader, on_first)
        else:
            body = http.LengthBody(reader, req.content_length, on_first)
        env = build_environ(req, conn_vars)
        handler = Handler(conn, req, env, body, self.multithread, req.method == "HEAD", self.opts.read_timeout)
        handler.run(self.app)
        if not handler.completed:
            # The client went away, or the app failed after its response had begun.
            return False, body.has_unread()
        if self.access is not None:
            self.access.log(env, handler.status_code, handler.body_sent)
        keep = handler.keep_alive and not handler.failed_late
        if keep and body.has_unread() and not body.awaits_continue():
            try:
                keep = body.discard(BODY_DRAIN_LIMIT)
            except (http.ClientGone, http.HeadError, OSError):
                keep = False
        elif body.has_unread():
            keep = False
        return keep, body.has_unread()

    # --- the worker's loop ---

    def finish(self, conn, step):
        if step == PARK:
            self.worker.park(conn)
        else:
            self.worker.done(conn)

    def run(self):
        self.worker.ready()
        if self.opts.threads > 1:
            return self._run_threads()
        poller = select.poll()
        poller.register(self.worker, select.POLLIN)
        poller.register(self.drain, select.POLLIN)
        while True:
            conn = self._next_conn(poller)
            if conn is None:
                self.drain.set()
                return
            try:
                step = self.serve_connection(conn)
            except Exception:  # a bug here must not take the worker down
                traceback.print_exc(file=sys.stderr)
                step = CLOSE
            self.finish(conn, step)

    def _next_conn(self, poller):
        """The next connection; None at end of work. After SIGTERM, only what the master
        has already sent is served."""
        while True:
            try:
                return self.worker.next_conn(block=False)
            except BlockingIOError:
                if self.drain.is_set:
                    return None
            poller.poll()

    def _run_threads(self):
        """--threads N: the main thread owns the channel; N threads serve connections and
        hand them back through a queue (the Worker object is not thread-safe)."""
        work = queue.Queue()
        results = queue.Queue()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        def serve_loop():
            while True:
                conn = work.get()
                if conn is None:
                    return
                try:
                    step = self.serve_connection(conn)
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    step = CLOSE
                results.put((conn, step))
                os.write(wake_w, b"x")

        threads = [threading.Thread(target=serve_loop, name="wsgi-%d" % i, daemon=True)
                   for i in range(self.opts.threads)]
        for t in threads:
            t.start()
        poller = select.poll()
        poller.register(self.worker, select.POLLIN)
        poller.register(self.drain, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        held = 0
        ended = False
        while not ended or held:
            while True:
                try:
                    conn, step = results.get_nowait()
                except queue.Empty:
                    break
                held -= 1
                self.finish(conn, step)
            if not ended:
                try:
                    conn = self.worker.next_conn(block=False)
                    if conn is None:
                        ended = True
                        self.drain.set()
                    else:
                        held += 1
                        work.put(conn)
                        continue
                except BlockingIOError:
                    if self.drain.is_set:
                        ended = True
                if ended:
                    poller.unregister(self.worker)
                    poller.unregister(self.drain)
                    continue
            for fd, _ in poller.poll():
                if fd == wake_r:
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
        self.drain.set()
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join()


def load_app(spec):
    """Imports MODULE:CALLABLE (CALLABLE defaults to ``application``; ``name()`` calls a
    factory without arguments). Raises ImportError, AttributeError or TypeError."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "application"
    if not module_name:
        raise ImportError("no module in %r (expected MODULE:CALLABLE)" % spec)
    call = attr.endswith("()")
    if call:
        attr = attr[:-2]
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if call:
        obj = obj()
    if not callable(obj):
        raise TypeError("%s is not callable" % spec)
    return obj


def parse_args(argv):
    p = argparse.ArgumentParser(prog="forkpool-wsgi",
                                description="Run a WSGI application as a forkpool worker.")
    p.add_argument("app", metavar="MODULE:CALLABLE", help="the WSGI application, e.g. mysite.wsgi:application")
    p.add_argument("--threads", type=int, default=1, help="connections served at once by one worker (default 1; set the pool's max_inflight to match)")
    p.add_argument("--access-log", metavar="FILE|-", default="", help="write an access log (gunicorn's format) to FILE or stdout")
    p.add_argument("--pythonpath", action="append", default=[], metavar="DIR", help="a folder to put first on sys.path (repeatable)")
    p.add_argument("--keepalive-timeout", type=float, default=5.0, metavar="SECONDS", help="an idle keep-alive connection held by the worker is closed after this (default 5)")
    p.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS", help="a client silent this long within a request is dropped (default 30)")
    p.add_argument("--limit-request-line", type=int, default=4094, metavar="BYTES")
    p.add_argument("--limit-request-fields", type=int, default=100, metavar="N")
    p.add_argument("--limit-request-field-size", type=int, default=8190, metavar="BYTES")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def main(argv=None):
    # First of all: a stop signal during the (possibly long) import must not kill us.
    drain = Drain()
    signal.signal(signal.SIGTERM, drain.set)
    signal.signal(signal.SIGINT, drain.set)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The application is found as gunicorn finds it: from the working directory first.
    for folder in reversed([os.getcwd()] + args.pythonpath):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        worker = forkpool_worker.Worker()
    except OSError as e:
        print("forkpool-wsgi: %s" % e, file=sys.stderr)
        return EX_CONFIG
    try:
        app = load_app(args.app)
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (0, None):
            e = RuntimeError("the application exited while being imported")
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        print("forkpool-wsgi: cannot load %s: %s" % (args.app, e), file=sys.stderr)
        return EX_CONFIG
    try:
        opts = Options(args)
    except OSError as e:
        print("forkpool-wsgi: %s" % e, file=sys.stderr)
        return EX_CONFIG
    with worker:
        Server(worker, app, opts, drain).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
