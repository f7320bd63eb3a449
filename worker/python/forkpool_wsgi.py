# SPDX-License-Identifier: Apache-2.0
"""forkpool-wsgi: runs a Python WSGI application as a forkpool master-dispatch worker.

    [pools.app]
    command = ["forkpool-wsgi", "myproject.wsgi:application"]
    listen = ["tcp://127.0.0.1:8000"]

Standard library only. The WSGI semantics are wsgiref's (``wsgiref.handlers.BaseHandler``:
start_response, write, exc_info, wsgi.file_wrapper, close() on the iterable, the 500
answer; forkpool_wsgi_handler.py), the request head and bodies forkpool_http.py's; this
module serves connections with them: keep-alive, chunked responses when no length
is given, chunked and Content-Length request bodies, Expect: 100-continue, HEAD, and the
hand-back of idle keep-alive connections to the master (PARK) when the pool has
keepalive = "master". See docs/wsgi.md.
"""

import argparse
import gc
import importlib
import math
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import traceback

import forkpool_http as http
import forkpool_worker
from forkpool_wsgi_handler import BODY_DRAIN_LIMIT, AccessLog, Handler, Listener, build_environ
from forkpool_wsgi_handler import connection_vars, error_response

__all__ = ["main", "load_app", "after_response", "CLOSE", "SERVE", "PARK", "WAIT"]

EX_CONFIG = 78  # sysexits.h: the pool is marked failed instead of restarted
DRAIN_GRACE = 1.0  # seconds an idle keep-alive connection waits for its next request at end of work
LINGER = 2.0  # seconds a closing connection keeps reading what the client still sends
GIVE_WAY_AFTER = 0.2  # shared dispatch: an idle keep-alive connection gives way to a waiting one after this
MAX_DEFER_ACCEPT = 3600  # seconds: TCP_DEFER_ACCEPT for a --read-timeout beyond it
GIVE_WAY_LOOK = 0.01  # ... when no idle worker has taken that one within this
LINGER_QUIET = 0.2  # ... but no longer than this after the client stopped sending

# What to do with a connection once a response is complete (after_response).
CLOSE, SERVE, PARK, WAIT = "close", "serve", "park", "wait"
GIVE_WAY = "give way"


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


def _always():
    return True


class Drain:
    """End of work: set once (the channel's end, SIGTERM/SIGINT), seen by every poll.

    A pipe whose read end stays readable once a byte is written, so a thread waiting
    in poll() on a keep-alive connection wakes up too. It is also the signal wakeup fd:
    Python runs signal handlers in the main thread only, and a stop signal the kernel
    delivers to another thread would otherwise leave the main thread asleep in poll()."""

    def __init__(self):
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.is_set = False
        self.since = 0.0

    def fileno(self):
        return self._r

    def install(self):
        """SIGTERM and SIGINT set it (call from the main thread)."""
        signal.signal(signal.SIGTERM, self.set)
        signal.signal(signal.SIGINT, self.set)
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

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


def _close(conn, reader, lingering, quiet=LINGER_QUIET):
    """Ends the connection. With ``lingering``, the client may still be sending: the write
    side is shut first and input read for a moment (until ``quiet`` seconds of silence), so
    the last response is not destroyed by a reset (closing with unread input sends RST)."""
    if lingering or reader.buffered():
        try:
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                conn.settimeout(min(left, quiet))
                if not conn.recv(65536):
                    break
        except OSError:  # socket.timeout included: the client has gone quiet
            pass


class Server:
    """Serves the connections the master sends, one at a time per thread."""

    def __init__(self, worker, app, opts, drain, sockets=()):
        self.worker = worker
        self.app = app
        self.opts = opts
        self.drain = drain
        self.access = AccessLog(opts.access_log) if opts.access_log else None
        self.multithread = opts.threads > 1
        self._listeners = {}
        # dispatch = "shared" (LISTEN_FDS): this worker accepts, and keeps its keep-alive
        # connections (a connection is parked only in master dispatch).
        self.sockets = list(sockets)  # worker.listen_sockets()
        self.park_idle = worker.keepalive_master and not self.sockets
        for _, _, sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # Set once on the listener, inherited by every connection accepted from it
                # (as gunicorn does, and the master in master dispatch): small responses
                # are not held back by Nagle's algorithm.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # A client that connects and sends nothing (a browser's preconnect) waits
                # in the kernel, not in a worker: the connection is accepted once its first
                # bytes come, or after about --read-timeout (as the master does for
                # keepalive = "master").
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT,
                                min(max(1, int(opts.read_timeout)), MAX_DEFER_ACCEPT))
        # A response's headers say Connection: close once the work ends (looked at when
        # they are written); with keepalive = "master" the connection is parked instead,
        # and its next request goes to another worker.
        self._ending = None if self.park_idle else self.ending
        # Shared dispatch: a keep-alive connection ends after its response when another
        # client waits on a listener for this worker (that response says so), so
        # keep-alive clients cannot keep others waiting while this worker serves them.
        self._held = 0  # --threads: connections the threads hold (the main thread counts)
        self._handoff = threading.local()  # a client accepted by a thread that gave way
        self._next_listener = 0  # where the next round of accepts starts
        if self.sockets:
            self._ending = self.ending_or_others_wait
        self._channel_poll = None
        self._accept_error_logged = -10.0

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
        conn_vars = connection_vars(conn, self._listener(conn))
        http.set_io_timeout(conn, self.opts.read_timeout)
        first = True
        while True:
            if not first:
                # An empty line after a body (old clients send one) is not a pipelined
                # request: the connection is parked or waited on as if it were not there.
                reader.skip_empty_lines()
                step = after_response(True, reader.buffered(), self.park_idle)
                if step == PARK:
                    return PARK
                if step == WAIT:
                    waited = self._wait_next_request(conn)
                    if waited is GIVE_WAY:
                        # A client waits, accepted already: this one gets our FIN (it
                        # opens a new connection for its next request). The waiting one
                        # is served next, so the linger is short.
                        _close(conn, reader, True, GIVE_WAY_LOOK)
                        return CLOSE
                    if waited is not True:
                        _close(conn, reader, False)
                        return CLOSE
            first = False
            try:
                head = reader.read_head(self.opts.limits, self.opts.read_timeout)
                if head is None:
                    return CLOSE
                req = http.parse_request_head(head, self.opts.limits)
            except http.HeadError as e:
                self._send_quietly(conn, error_response(e.status, e.reason))
                _close(conn, reader, True)
                return CLOSE
            except (http.ClientGone, OSError):
                return CLOSE
            try:
                keep, body_left = self._serve_request(conn, reader, req, conn_vars)
            except (http.ClientGone, OSError):
                return CLOSE
            except http.HeadError as e:  # a malformed chunked body the app did not read
                self._send_quietly(conn, error_response(e.status, e.reason))
                _close(conn, reader, True)
                return CLOSE
            if not keep:
                _close(conn, reader, body_left)
                return CLOSE

    def ending(self):
        """True once the work ends. With one thread nothing reads the channel during a
        request, and the master's stop signal comes up to 1 s after its end of work: the
        channel is looked at here (with --threads the main thread watches it)."""
        if not self.drain.is_set and not self.multithread and self.worker.has_channel:
            if self._channel_poll is None:
                self._channel_poll = select.poll()
                self._channel_poll.register(self.worker, select.POLLRDHUP)
            if self._channel_poll.poll(0):
                self.drain.set()
        return self.drain.is_set

    def ending_or_others_wait(self):
        """ending(), or a connection waits on a listener that only this worker's end of a
        connection would let it accept (shared dispatch)."""
        return self.ending() or (self._all_held() and self._others_wait())

    def _all_held(self):
        """Whether this worker accepts nothing more until a connection ends (with
        --threads, the main thread accepts while a thread is free)."""
        return not self.multithread or self._held >= self.opts.threads

    def _others_wait(self):
        poller = select.poll()  # one each time: a poll object is not for two threads
        for _, _, sock in self.sockets:
            poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))

    def _send_quietly(self, conn, data):
        try:
            conn.sendall(data)
        except OSError:
            pass

    def _wait_next_request(self, conn):
        """Waits for the next request's first bytes on an idle keep-alive connection held
        by this worker (keepalive = "worker"): up to keepalive_timeout, or DRAIN_GRACE
        once the work ends. True when bytes (or EOF) arrived, False when it is to be closed.

        In shared dispatch a connection idle for GIVE_WAY_AFTER also gives way to a client
        that waits on a listener, when this worker accepts nothing else until then (one
        thread, or every thread holding a connection) and no idle worker has taken the
        client within GIVE_WAY_LOOK: this thread accepts it itself (so of the workers
        that might give way, one does, and only for a client that is really there),
        leaves it in self._handoff for the loop to serve next, and returns GIVE_WAY."""
        poller = select.poll()
        poller.register(conn, select.POLLIN | select.POLLRDHUP)
        poller.register(self.drain, select.POLLIN)
        if self.worker.has_channel:
            poller.register(self.worker, select.POLLRDHUP)  # the master ended our work
        give_way = {}
        now = time.monotonic()
        deadline = now + self.opts.keepalive_timeout
        look_at = now + GIVE_WAY_AFTER if self.sockets else None  # when to watch the listeners
        while True:
            now = time.monotonic()
            if self.drain.is_set:
                deadline = min(deadline, self.drain.since + DRAIN_GRACE)
                look_at = None
            if now >= deadline:
                return False
            if look_at is not None and now >= look_at:
                look_at = None
                if give_way:  # a client waited GIVE_WAY_LOOK: take it, unless another did
                    if self._all_held() and self._take_waiting(give_way):
                        return GIVE_WAY
                    give_way.clear()
                    look_at = now + GIVE_WAY_LOOK  # then watch the listeners again
                else:
                    for _, _, sock in self.sockets:
                        poller.register(sock, select.POLLIN)
                        give_way[sock.fileno()] = sock
            until = deadline if look_at is None else min(deadline, look_at)
            ready = [fd for fd, _ in poller.poll(max(until - now, 0) * 1000)]
            if conn.fileno() in ready:
                return True
            if give_way and look_at is None and any(fd in give_way for fd in ready):
                # Leave an idle worker (woken for it, exclusively) the time to take it;
                # the listeners are not watched meanwhile (they would stay readable).
                for fd in give_way:
                    poller.unregister(fd)
                look_at = time.monotonic() + GIVE_WAY_LOOK
            if self.worker.fileno() in ready:
                poller.unregister(self.worker)
                self.drain.set()
            if self.drain.is_set:
                poller.modify(self.drain, 0)  # stays readable; the deadline covers it now

    def _take_waiting(self, listeners):
        """Accepts a client still waiting on one of ``listeners`` (fd -> socket), for
        this thread to serve once it closed its idle connection; False when none is."""
        for fd, sock in list(listeners.items()):
            try:
                accepted, _ = sock._accept()
            except OSError:  # EAGAIN: taken by another worker; EMFILE: keep ours
                continue
            entry = next(e for e in self.sockets if e[2] is sock)
            self._handoff.value = (accepted, entry)
            return True
        return False

    def take_handoff(self):
        """The client this thread accepted when it gave way, as (fd, (index, address,
        listener)), or None. Thread-local."""
        value = getattr(self._handoff, "value", None)
        self._handoff.value = None
        return value

    def _serve_request(self, conn, reader, req, conn_vars):
        """Runs the app for one request. Returns (keep, body_left): whether the connection
        stays open, and whether the client may still be sending this request's body."""
        continue_sent = []
        handler = None

        def send_continue():
            # Not once the response has begun (RFC 9110 section 15.2): an app that
            # writes before it reads gets the body without it (the client sends it after
            # its own wait, or sees the answer and stops).
            if not continue_sent and not (handler is not None and handler.headers_sent):
                continue_sent.append(True)
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        on_first = send_continue if req.expect_continue else None
        if req.chunked:
            body = http.ChunkedBody(reader, on_first)
        else:
            body = http.LengthBody(reader, req.content_length, on_first)
        env = build_environ(req, conn_vars)
        # A connection the master will not hold again (FP_FD_LAST) ends after this response.
        ending = _always if getattr(conn, "forkpool_last", False) else self._ending
        handler = Handler(conn, req, env, body, self.multithread, req.method == "HEAD", self.opts.read_timeout,
                          ending)
        handler.run(self.app)
        if body.gone is not None:
            # wsgi.input raised BodyCut at the cut (the app may have caught it): this line
            # says why the request ended so.
            print("forkpool-wsgi[%d]: client gone in the body of %s %s: %s"
                  % (os.getpid(), req.method, req.target, body.gone), file=sys.stderr)
        if body.broken is not None:
            print("forkpool-wsgi[%d]: bad request body of %s %s: %s"
                  % (os.getpid(), req.method, req.target, body.broken), file=sys.stderr)
        if not handler.completed:
            # The client went away, or the app failed after its response had begun. Once
            # the status line went out the access log says what was sent (as gunicorn's
            # does): the status and the bytes of the body that reached the socket.
            if self.access is not None and handler.headers_sent:
                self.access.log(env, handler.status_code, handler.body_sent)
            return False, body.has_unread()
        if self.access is not None:
            self.access.log(env, handler.status_code, handler.body_sent)
        keep = handler.keep_alive and not handler.failed_late and body.broken is None
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
        if self.sockets:
            return self._run_shared()
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
        has already sent is served: the channel refuses the rest (refuse_more), which
        the master then gives to other workers. The channel is polled first: with
        max_inflight = 1 the master sends the next connection only after our DONE, so a
        receive right away would find nothing."""
        while True:
            if self.drain.is_set:
                # Before the next read, even with records queued (a master that refills
                # the channel after each DONE would otherwise keep this worker busy).
                # Once refused, the channel reads to its end without waiting.
                self.worker.refuse_more()
            poller.poll()
            try:
                return self.worker.next_conn(block=False)
            except BlockingIOError:
                # The signal came during the poll: refuse now and read on, or stop reading
                # if the channel could not be refused.
                if self.drain.is_set and not self.worker.refuse_more():
                    return None

    def _run_threads(self):
        """--threads N: the main thread owns the channel; N threads serve connections and
        hand them back through a queue (the Worker object is not thread-safe)."""
        work, results, wake_r, threads = self._start_threads()
        poller = select.poll()
        poller.register(self.worker, select.POLLIN)
        poller.register(self.drain, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        held = 0
        ended = False
        while True:
            held -= self._finish_results(results, work)
            if ended and not held:
                break
            if not ended:
                if self.drain.is_set:
                    self.worker.refuse_more()  # before the next read, as in _next_conn
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
                    if self.drain.is_set and not self.worker.refuse_more():
                        ended = True
                if ended:
                    poller.unregister(self.worker)
                    poller.unregister(self.drain)
                    continue
            for fd, _ in poller.poll():
                if fd == wake_r:
                    _empty_pipe(wake_r)
        self._stop_threads(work, threads)

    def _finish_results(self, results, work):
        """Ends the connections the threads are done with; how many fewer they hold (a
        thread that gave way hands back the client it accepted, which goes to ``work``)."""
        count = 0
        while True:
            try:
                conn, step, handoff = results.get_nowait()
            except queue.Empty:
                return count
            self.finish(conn, step)
            taken = self._adopt(handoff)
            if taken is not None:
                work.put(taken)
            else:
                count += 1

    def _stop_threads(self, work, threads):
        self.drain.set()
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join()

    def _start_threads(self):
        """The --threads N serving threads: connections go in through ``work``, and come
        back with their last step through ``results``, a byte on ``wake_r`` each."""
        work = queue.Queue()
        results = queue.Queue()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        def serve_loop():
            # Stop signals go to the main thread, which owns the channel.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
            while True:
                conn = work.get()
                if conn is None:
                    return
                try:
                    step = self.serve_connection(conn)
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    step = CLOSE
                results.put((conn, step, self.take_handoff()))
                os.write(wake_w, b"x")

        threads = [threading.Thread(target=serve_loop, name="wsgi-%d" % i, daemon=True)
                   for i in range(self.opts.threads)]
        for t in threads:
            t.start()
        return work, results, wake_r, threads

    # --- dispatch = "shared": the worker accepts ---

    def _run_shared(self):
        """Accepts on the inherited listeners until the work ends (the master closes the
        channel, or SIGTERM/SIGINT), one connection at a time per thread. A connection
        whose wake-up this worker took is always served, even if the work ended at that
        moment: with EPOLLEXCLUSIVE no other worker was woken for it."""
        accepting = _SharedPoller(self)
        if self.opts.threads > 1:
            return self._run_shared_threads(accepting)
        while not self.drain.is_set:
            for entry in accepting.wait():
                self._serve_own(self._accept(entry))
            # A worker done with a connection takes the next one waiting without polling
            # first, from each listener in turn, as long as there is one.
            while not self.drain.is_set:
                conn = self._accept_next()
                if conn is None:
                    break
                self._serve_own(conn)
        accepting.close()

    def _serve_own(self, conn):
        """Serves a connection this worker accepted, then the client it accepted when that
        connection gave way (and so on)."""
        while conn is not None:
            try:
                self.serve_connection(conn)
            except Exception:  # a bug here must not take the worker down
                traceback.print_exc(file=sys.stderr)
            self.worker.done(conn)
            conn = self._adopt(self.take_handoff())

    def _adopt(self, handoff):
        if handoff is None:
            return None
        fd, (index, address, sock) = handoff
        return self.worker.accepted(fd, sock, index, address)

    def _run_shared_threads(self, accepting):
        """--threads N in shared dispatch: the main thread accepts while a thread is free
        (it polls the listeners only then) and hands the connection to the threads."""
        work, results, wake_r, threads = self._start_threads()
        busy = _SharedPoller(self, listeners=False)
        busy.add(wake_r)
        accepting.add(wake_r)
        limit = self.opts.threads
        while not self.drain.is_set:
            self._held -= self._finish_results(results, work)
            ready = (accepting if self._held < limit else busy).wait()
            for entry in ready:
                if self._held < limit or self.drain.is_set:  # a wake-up taken is served
                    self._hand_over(self._accept(entry), work)
            while ready and self._held < limit and not self.drain.is_set:
                if not self._hand_over(self._accept_next(), work):
                    break
            _empty_pipe(wake_r)
        accepting.close()
        busy.close()
        while self._held:
            self._held -= self._finish_results(results, work)
            if self._held:
                select.select([wake_r], [], [])
                _empty_pipe(wake_r)
        self._stop_threads(work, threads)

    def _hand_over(self, conn, work):
        if conn is None:
            return False
        self._held += 1
        work.put(conn)
        return True

    def _accept_next(self):
        """One connection from the listeners, each asked in turn (a busy listener cannot
        starve another); None when none has one waiting."""
        count = len(self.sockets)
        for i in range(count):
            at = (self._next_listener + i) % count
            conn = self._accept(self.sockets[at])
            if conn is not None:
                self._next_listener = (at + 1) % count
                return conn
        return None

    def _accept(self, entry):
        index, address, sock = entry
        try:
            return self.worker.accept(sock, index, address)
        except OSError as e:
            # EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection waits in the backlog; retry
            # after a pause rather than spin on a listener that stays readable.
            now = time.monotonic()
            if now - self._accept_error_logged >= 10:
                self._accept_error_logged = now
                print("forkpool-wsgi[%d]: accept: %s (retrying every 0.1 s)" % (os.getpid(), e), file=sys.stderr)
            select.select([self.drain], [], [], 0.1)
            return None


def _empty_pipe(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class _SharedPoller:
    """An epoll set for shared dispatch: the listeners (EPOLLEXCLUSIVE: a new connection
    wakes one waiting worker of the pool, not all of them), the drain pipe, and the
    channel's hang-up (the master's end of work)."""

    def __init__(self, server, listeners=True):
        self.server = server
        self.ep = select.epoll()
        self.by_fd = {}
        if listeners:
            for index, address, sock in server.sockets:
                self.ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
                self.by_fd[sock.fileno()] = (index, address, sock)
        self.ep.register(server.drain.fileno(), select.EPOLLIN)
        self.channel = server.worker.fileno() if server.worker.has_channel else -1
        if self.channel >= 0:
            self.ep.register(self.channel, select.EPOLLRDHUP)  # EPOLLHUP is always reported

    def add(self, fd):
        self.ep.register(fd, select.EPOLLIN)

    def wait(self):
        """The listeners with a connection waiting; sets the drain at end of work."""
        ready = []
        for fd, _ in self.ep.poll():
            found = self.by_fd.get(fd)
            if found is not None:
                ready.append(found)
            elif fd == self.channel:
                self.ep.unregister(fd)
                self.server.drain.set()
        return ready

    def close(self):
        self.ep.close()


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


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # A wrong command line is a broken deploy like a wrong app: EX_CONFIG, not 2.
        self.print_usage(sys.stderr)
        self.exit(EX_CONFIG, "%s: error: %s\n" % (self.prog, message))


def parse_args(argv):
    p = _ArgumentParser(prog="forkpool-wsgi",
                                description="Run a WSGI application as a forkpool worker.")
    p.add_argument("--version", action="version", version="forkpool-wsgi " + forkpool_worker.__version__,
                   help="print the version and exit")
    p.add_argument("app", metavar="MODULE:CALLABLE", help="the WSGI application, e.g. mysite.wsgi:application")
    p.add_argument("--threads", type=int, default=1, help="connections served at once by one worker (default 1; set the pool's max_inflight to match)")
    p.add_argument("--access-log", metavar="FILE|-", default="", help="write an access log (gunicorn's format) to FILE or stdout")
    p.add_argument("--pythonpath", action="append", default=[], metavar="DIR", help="a folder to put first on sys.path (repeatable)")
    p.add_argument("--keepalive-timeout", type=float, default=5.0, metavar="SECONDS", help="an idle keep-alive connection held by the worker is closed after this (default 5)")
    p.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS", help="a client silent this long within a request is dropped (default 30)")
    p.add_argument("--no-gc-freeze", action="store_true", help="leave what the app's import made to the garbage collector (by default it is frozen out of its sight: gc.freeze)")
    p.add_argument("--limit-request-line", type=int, default=4094, metavar="BYTES",
                   help="longest request line (default 4094; 0: no limit); longer: 400")
    p.add_argument("--limit-request-fields", type=int, default=100, metavar="N",
                   help="most header fields (default 100; 0: 32768); more: 431")
    p.add_argument("--limit-request-field-size", type=int, default=8190, metavar="BYTES",
                   help="longest header line (default 8190; 0: no limit); longer: 431")
    args = p.parse_args(argv)
    for name in ("limit_request_line", "limit_request_fields", "limit_request_field_size"):
        if getattr(args, name) < 0:
            p.error("--%s must be 0 (no limit, as in gunicorn) or more" % name.replace("_", "-"))
    if args.threads < 1:
        p.error("--threads must be at least 1")
    if not (math.isfinite(args.read_timeout) and args.read_timeout > 0):
        p.error("--read-timeout must be a positive number of seconds")
    if not (math.isfinite(args.keepalive_timeout) and args.keepalive_timeout >= 0):
        p.error("--keepalive-timeout must be 0 or a positive number of seconds")
    return args


def main(argv=None):
    # First of all: a stop signal during the (possibly long) import must not kill us.
    drain = Drain()
    drain.install()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The application is found as gunicorn finds it: from the working directory first.
    for folder in reversed([os.getcwd()] + args.pythonpath):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        worker = forkpool_worker.Worker()
        sockets = worker.listen_sockets()  # shared dispatch, or socket activation
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
    # What the import made (modules, routes, templates) lives as long as the worker: moved
    # out of the cyclic garbage collector's sight, so its full collections stop walking it
    # again and again while requests run (docs/wsgi.md, "Garbage collection").
    if not args.no_gc_freeze:
        gc.collect()
        gc.freeze()
    try:
        opts = Options(args)
    except OSError as e:
        print("forkpool-wsgi: %s" % e, file=sys.stderr)
        return EX_CONFIG
    with worker:
        Server(worker, app, opts, drain, sockets).run()
        # The work is over and the process is on its way out: a stop signal from now on
        # (the master's TERM after its end of work) must not kill it. Python's shutdown
        # puts back the default action of the signals it handles, but leaves ignored ones.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
