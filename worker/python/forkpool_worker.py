# SPDX-License-Identifier: Apache-2.0
"""forkpool worker protocol, version 1, for Python workers (standard library only).

A worker started by forkpool with ``dispatch = "master"`` receives its connections
from the master over a Unix socket (FORKPOOL_CHANNEL_FD). This module is the Python
counterpart of libforkpool-worker (docs/protocol.md)::

    import forkpool_worker

    with forkpool_worker.Worker() as worker:
        for conn in worker:             # ready() is sent on the first iteration
            serve(conn)                 # conn is a socket.socket (blocking)
            worker.done(conn)           # closes it and tells the master

The iteration ends when the master closes the channel ("finish what you hold and
exit"). In shared dispatch (``LISTEN_FDS``) the worker accepts by itself:
``listen_sockets()`` gives the listeners, ``accept()`` one connection counted on the
scoreboard, ``done()`` ends it; the channel then only tells the end of work (EOF). Each connection carries ``forkpool_id`` (the master's connection id) and
``forkpool_listener`` (index into ``Worker.listeners``).

Not thread-safe: one Worker is used by one thread at a time. Blocking and
non-blocking use are both possible: ``fileno()`` is the channel, to register with
selectors, and ``next_conn(block=False)`` raises BlockingIOError when nothing is
pending.

Scoreboard: the worker's slot page (FORKPOOL_SCOREBOARD_FD) is written with the same
seqlock protocol as shm/slot_writer.c, but only on x86-64, where the hardware keeps
stores in program order and CPython writes an aligned 8-byte item with one store.
Elsewhere the Python worker does not write its page; the master still shows it idle
once ready, without its busy time and connection count.
"""

import array
import mmap
import os
import platform
import select
import socket
import struct
import time

__all__ = ["Worker", "Connection", "ProtocolError", "PROTOCOL_VERSION"]

PROTOCOL_VERSION = 1
# forkpool's version, the same as project(VERSION) in CMakeLists.txt (configuring the build
# checks that they agree): the modules also run without the build, as python3 -m forkpool_wsgi.
__version__ = "0.1.0"

MSG_CONN = 1  # master -> worker: one connection, its fd by SCM_RIGHTS
MSG_READY = 16  # worker -> master: ready for work
MSG_DONE = 17  # worker -> master: connection `id` finished and closed
MSG_PARK = 18  # worker -> master: connection `id` idle between requests, its fd handed back
FD_LAST = 0x4  # CONN's reserved: the master will not hold the connection again (FP_FD_LAST)

# u16 type, u16 arg, u32 reserved (READY, CONN, PARK: FP_FD_NONBLOCK, bit 0;
# FP_FD_NODELAY, bit 1; CONN: FP_FD_LAST, bit 2), u64 id; host byte order, no padding: 16 bytes. A Connection is
# blocking: READY does not ask for non-blocking ones, its mode is still set on receipt (a
# parked connection comes back as its last worker left it), and a PARK leaves both flags
# clear ("unknown": this module does not track what the program did to the socket).
_MSG = struct.Struct("=HHIQ")
# socket.MSG_* are IntFlag members: `|` and `&` on them go through the enum module (about
# 0.4 µs each), so the flags used per message are plain ints, combined once.
_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_RECV_WAIT = int(socket.MSG_CMSG_CLOEXEC)
_RECV_NOWAIT = int(socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
_LISTEN_FDS_START = 3  # sd_listen_fds(3)
_MAX_FDS = 8  # room to receive (and close) more fds than a message may carry

# Scoreboard slot page (shm/slot_layout.h).
_SLOT_STATE_STARTING = 1
_SLOT_STATE_IDLE = 2
_SLOT_STATE_BUSY = 3


class ProtocolError(OSError):
    """The environment does not describe a usable forkpool channel."""


class Connection(socket.socket):
    """A socket.socket passed by the master, with its forkpool id and listener."""

    __slots__ = ("forkpool_id", "forkpool_listener", "forkpool_address", "forkpool_last", "_forkpool_live")


class _SlotWriter:
    """Writes the worker's scoreboard slot exactly as shm/slot_writer.c does."""

    def __init__(self, fd):
        page = mmap.PAGESIZE
        if os.fstat(fd).st_size < page:
            raise OSError("scoreboard fd %d is smaller than a page" % fd)
        self._map = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        view = memoryview(self._map)
        self._views = [
            view[0:8].cast("Q"),  # seq
            view[8:16].cast("I"),  # state, in_flight
            view[16:24].cast("Q"),  # connections handled
            view[24:32].cast("q"),  # busy since (CLOCK_MONOTONIC ns)
        ]
        self._base = view
        # Continue from the counter in place so readers never see it go backwards.
        self.seq = self._views[0][0] & ~1
        self.state = _SLOT_STATE_STARTING
        self.in_flight = 0
        self.handled = 0
        self.busy_since = 0

    def _publish(self):
        seq, words, handled, busy = self._views
        self.seq |= 1
        seq[0] = self.seq
        words[0] = self.state
        words[1] = self.in_flight
        handled[0] = self.handled
        busy[0] = self.busy_since
        self.seq += 1
        seq[0] = self.seq

    def set_ready(self):
        self.state = _SLOT_STATE_BUSY if self.in_flight > 0 else _SLOT_STATE_IDLE
        self._publish()

    def mark_busy(self):
        if self.in_flight == 0:
            self.busy_since = time.monotonic_ns()
        self.in_flight += 1
        self.state = _SLOT_STATE_BUSY
        self._publish()

    def mark_idle(self):
        if self.in_flight > 0:
            self.in_flight -= 1
        self.handled += 1
        if self.in_flight == 0:
            self.state = _SLOT_STATE_IDLE
            self.busy_since = 0
        self._publish()

    def close(self):
        for v in self._views:
            v.release()
        self._base.release()
        self._map.close()


class _NoSlot:
    def set_ready(self):
        pass

    def mark_busy(self):
        pass

    def mark_idle(self):
        pass

    def close(self):
        pass


def _env_int(environ, name):
    text = environ.get(name, "")
    if not text.isdigit() or not text.isascii():
        return None
    return int(text)


def _listen_fds(environ):
    """The descriptors passed by socket activation (sd_listen_fds(3)): LISTEN_FDS of them
    from fd 3, when LISTEN_PID is this process; [] otherwise."""
    count = _env_int(environ, "LISTEN_FDS")
    if not count or _env_int(environ, "LISTEN_PID") != os.getpid():
        return []
    return list(range(_LISTEN_FDS_START, _LISTEN_FDS_START + count))


def _scoreboard_supported():
    return platform.machine().lower() in ("x86_64", "amd64")


class Worker:
    """The worker's end of the protocol. See the module docstring."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        proto = env.get("FORKPOOL_PROTOCOL", "")
        if proto and proto != str(PROTOCOL_VERSION):
            raise ProtocolError("FORKPOOL_PROTOCOL=%s is not supported (this module speaks %d)"
                                % (proto, PROTOCOL_VERSION))
        self._environ = env
        self._listen_fds = _listen_fds(env)
        if _env_int(env, "LISTEN_FDS") and not self._listen_fds:
            # Passed to another process: a wrapper that runs this program as its child
            # instead of exec'ing it. Without its listeners the worker would wait for
            # ever on a channel that never brings a connection.
            raise ProtocolError("LISTEN_FDS=%s is for pid %s, not this process (pid %d): a wrapper must "
                                "exec this program (exec forkpool-wsgi ...), not run it as a child"
                                % (env.get("LISTEN_FDS"), env.get("LISTEN_PID", "?"), os.getpid()))
        sock = None
        if env.get("FORKPOOL_CHANNEL_FD"):
            fd = _env_int(env, "FORKPOOL_CHANNEL_FD")
            if fd is None:
                raise ProtocolError("FORKPOOL_CHANNEL_FD=%r is not a descriptor number"
                                    % env["FORKPOOL_CHANNEL_FD"])
            sock = socket.socket(fileno=fd)  # raises OSError (EBADF, ENOTSOCK) on a bad fd
            if sock.type != socket.SOCK_SEQPACKET:
                sock.detach()
                raise ProtocolError("FORKPOOL_CHANNEL_FD=%d is not a SOCK_SEQPACKET socket" % fd)
            sock.set_inheritable(False)
        elif not self._listen_fds:
            raise ProtocolError("FORKPOOL_CHANNEL_FD is not set: not running under forkpool")
        self._sock = sock
        # Shared dispatch (or socket activation without forkpool): listeners were passed
        # (listen_sockets()). Without forkpool there is no channel either.
        self.has_channel = sock is not None
        self.pool = env.get("FORKPOOL_POOL", "")
        self.worker = _env_int(env, "FORKPOOL_WORKER")
        self.generation = _env_int(env, "FORKPOOL_GENERATION") or 0
        self.listeners = env.get("FORKPOOL_LISTENERS", "").split()
        # keepalive = "master": idle keep-alive connections go back to the master (park()).
        self.keepalive_master = env.get("FORKPOOL_KEEPALIVE", "") == "master"
        self._notify_address = env.get("NOTIFY_SOCKET") or None
        self._notify_sock = None
        self._ready = False
        self._end = False  # the master closed the channel
        self._refusing = False  # refuse_more() shut down our reading side
        self._master_gone = False  # a send failed with EPIPE/ECONNRESET
        self.in_flight = 0
        self.rejected = 0  # malformed messages dropped (their fds closed)
        self._cmsg_space = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)
        # (family, type, proto) of each listener's connections, learnt from its first one:
        # socket(fileno=fd) without them asks the kernel with three system calls each time.
        self._conn_kind = {}
        self._slot = _NoSlot()
        slot_fd = _env_int(env, "FORKPOOL_SCOREBOARD_FD")
        if slot_fd is not None and _scoreboard_supported():
            try:
                self._slot = _SlotWriter(slot_fd)
                os.set_inheritable(slot_fd, False)
            except (OSError, ValueError):
                self._slot = _NoSlot()  # optional, as in the C library

    # --- context manager and iteration ---

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __iter__(self):
        if not self._ready:
            self.ready()
        while True:
            conn = self.next_conn()
            if conn is None:
                return
            yield conn

    def fileno(self):
        """The channel fd, for select/poll/selectors (-1 without a channel)."""
        return -1 if self._sock is None else self._sock.fileno()

    # --- shared dispatch: the worker accepts ---

    def listen_sockets(self):
        """The listening sockets passed to this process (``dispatch = "shared"``, or
        systemd's socket activation), as (index, address, socket) in ``listen`` order;
        [] in master dispatch. ``address`` is the listener as ``Worker.listeners`` has it
        (None without forkpool). Call it once: LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES
        are then removed from the environment, so a program the app runs does not take
        the sockets for its own, and the sockets are not inherited across exec. They are
        made non-blocking, for accept()."""
        found = []
        try:
            for index, fd in enumerate(self._listen_fds):
                try:
                    sock = socket.socket(fileno=fd)
                except OSError as e:  # EBADF, ENOTSOCK
                    raise ProtocolError("LISTEN_FDS: fd %d: %s" % (fd, e.strerror or e)) from None
                found.append(sock)
                if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    raise ProtocolError("LISTEN_FDS: fd %d is not a listening stream socket" % fd)
                sock.set_inheritable(False)
                # accept() must not block when another worker took the connection. The
                # flag belongs to the open file every worker of the pool shares.
                sock.setblocking(False)
        except OSError:
            for sock in found:
                sock.detach()
            raise
        self._listen_fds = []
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            self._environ.pop(name, None)
        return [(i, self.listeners[i] if i < len(self.listeners) else None, sock) for i, sock in enumerate(found)]

    def accept(self, listener, index=0, address=None):
        """Shared dispatch: accepts one connection on ``listener`` (a socket from
        listen_sockets(), non-blocking) and counts it on the scoreboard as the master
        counts one it sends. A blocking Connection, or None when another worker took it
        (EAGAIN) or the client left first (ECONNABORTED). Other errors (EMFILE...) are
        raised. End it with done(), which sends no DONE for it."""
        try:
            fd, _ = listener._accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        return self.accepted(fd, listener, index, address)

    def accepted(self, fd, listener, index=0, address=None):
        """What accept() does with a descriptor it got from ``listener``, for one accepted
        elsewhere (by another thread: the Worker object itself is not thread-safe)."""
        try:
            conn = Connection(listener.family, listener.type, listener.proto, fileno=fd)
        except OSError:
            os.close(fd)
            return None
        conn.forkpool_id = None  # not the master's: no DONE
        conn.forkpool_listener = index
        conn.forkpool_address = address
        conn.forkpool_last = False
        conn._forkpool_live = True
        self.in_flight += 1
        self._slot.mark_busy()
        return conn

    # --- messages ---

    def _send(self, mtype, ident):
        # After end of work the master still reads DONE and PARK (docs/protocol.md section 3).
        if self._master_gone or self._sock is None:
            return
        record = _MSG.pack(mtype, 0, 0, ident)
        while True:
            try:
                self._sock.send(record, _NOSIGNAL)
                return
            except BlockingIOError:
                select.select([], [self._sock], [])
            except (BrokenPipeError, ConnectionResetError):
                self._master_gone = True  # nobody reads DONE any more
                return

    def ready(self):
        """Ready for work: READY on the channel, slot idle, READY=1 to NOTIFY_SOCKET."""
        self._ready = True
        self._send(MSG_READY, 0)
        self._slot.set_ready()
        self.notify("READY=1")

    def notify(self, message):
        """Sends one sd_notify(3) datagram ("STATUS=...", "WATCHDOG=1") if NOTIFY_SOCKET is set."""
        address = self._notify_address
        if address is None:
            return
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            raise ProtocolError("NOTIFY_SOCKET=%s: unsupported address" % self._notify_address)
        if self._notify_sock is None:
            self._notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify_sock.sendto(message.encode(), address)

    def _at_eof(self):
        p = select.poll()
        p.register(self._sock, select.POLLIN | select.POLLRDHUP)
        return any(ev & (select.POLLHUP | select.POLLRDHUP) for _, ev in p.poll(0))

    def _refuse(self, ident):
        self.rejected += 1
        self._send(MSG_DONE, ident)  # the master must not count it in flight for ever

    def _receive_one(self, block):
        """A Connection, None at end of work, or False for a message without one."""
        flags = _RECV_WAIT if block else _RECV_NOWAIT
        while True:
            try:
                data, ancdata, msg_flags, _ = self._sock.recvmsg(_MSG.size, self._cmsg_space, flags)
                break
            except ConnectionResetError:
                continue  # reported once; the master's earlier records are still queued
            except BlockingIOError:
                if not block:
                    raise
                select.select([self._sock], [], [])
        fds = array.array("i")
        bad_control = False
        for level, ctype, cdata in ancdata:
            if level != socket.SOL_SOCKET or ctype != socket.SCM_RIGHTS:
                bad_control = True
                continue
            fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
        fds = list(fds)

        if not data and not fds and not bad_control and self._at_eof():
            self._end = True
            return None
        if (len(data) != _MSG.size or bad_control
                or msg_flags & _TRUNCATED):
            for fd in fds:
                os.close(fd)
            self.rejected += 1
            return False
        mtype, arg, reserved, ident = _MSG.unpack(data)
        if mtype != MSG_CONN:
            if fds:  # READY, DONE and unknown types carry no descriptor
                for fd in fds:
                    os.close(fd)
                self.rejected += 1
            return False
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self._refuse(ident)
            return False
        try:
            kind = self._conn_kind.get(arg)
            if kind is None:
                conn = Connection(fileno=fds[0])
                self._conn_kind[arg] = (conn.family, conn.type, conn.proto)
            else:
                conn = Connection(*kind, fileno=fds[0])
            conn.setblocking(True)
        except OSError:
            os.close(fds[0])
            self._refuse(ident)
            return False
        conn.forkpool_id = ident
        conn.forkpool_listener = arg
        conn.forkpool_address = self.listeners[arg] if arg < len(self.listeners) else None
        # FP_FD_LAST: the master will not hold it again; answer, then close (not park()).
        conn.forkpool_last = bool(reserved & FD_LAST)
        conn._forkpool_live = True
        self.in_flight += 1
        self._slot.mark_busy()
        return conn

    def next_conn(self, block=True):
        """The next connection, or None at end of work (and from then on).

        With block=False, raises BlockingIOError when nothing is pending."""
        while not self._end and self._sock is not None:
            conn = self._receive_one(block)
            if conn is None:
                return None
            if conn is not False:
                return conn
        return None

    def refuse_more(self):
        """For a worker that stops on its own (a stop signal, no end of work from the
        master): shuts down the reading side of the channel. What the master sent until
        now is still read, then next_conn returns None; a CONN the master sends from now
        on fails there (EPIPE), and the master gives that connection to another worker
        instead of losing it in a channel nobody reads. DONE and park() still go out.
        True when it shut the channel down now; False if it was already, or could not."""
        if self._refusing or self._end or self._sock is None:
            return False
        try:
            self._sock.shutdown(socket.SHUT_RD)
        except OSError:
            return False
        self._refusing = True
        return True

    def done(self, conn):
        """Closes conn (if still open) and reports it finished to the master (a
        connection from accept() is the worker's own: no DONE)."""
        if not getattr(conn, "_forkpool_live", False):
            raise ValueError("done(): not a live connection from this worker")
        conn._forkpool_live = False
        # detach + close ends the connection now even if makefile() objects still exist.
        fd = conn.detach()
        if fd >= 0:
            os.close(fd)
        if self.in_flight > 0:
            self.in_flight -= 1
        self._slot.mark_idle()
        if conn.forkpool_id is not None:
            self._send(MSG_DONE, conn.forkpool_id)

    def park(self, conn):
        """Hands an idle keep-alive connection back to the master (PARK).

        Only for pools with keepalive = "master" (``keepalive_master``), and only when
        this process holds none of the connection's unread bytes: the master sends it
        again, as a new connection with the same ``forkpool_id``, once the client's
        next request arrives. Our copy is closed; no done() follows."""
        if not getattr(conn, "_forkpool_live", False):
            raise ValueError("park(): not a live connection from this worker")
        if not self.keepalive_master:
            raise ValueError('park(): the pool does not have keepalive = "master"')
        if conn.forkpool_id is None:
            raise ValueError("park(): a connection this worker accepted itself is not the master's")
        conn._forkpool_live = False
        fd = conn.detach()
        try:
            self._send_with_fd(MSG_PARK, conn.forkpool_id, fd)
        finally:
            os.close(fd)
        if self.in_flight > 0:
            self.in_flight -= 1
        self._slot.mark_idle()

    def _send_with_fd(self, mtype, ident, fd):
        if self._master_gone:
            return
        record = _MSG.pack(mtype, 0, 0, ident)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        while True:
            try:
                self._sock.sendmsg([record], rights, _NOSIGNAL)
                return
            except BlockingIOError:
                select.select([], [self._sock], [])
            except (BrokenPipeError, ConnectionResetError):
                self._master_gone = True
                return

    def close(self):
        """Closes the channel (the master sees EOF). Held connections stay open."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._notify_sock is not None:
            self._notify_sock.close()
            self._notify_sock = None
        self._slot.close()
        self._slot = _NoSlot()
