#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A tiny HTTP/1.1 worker in Python for forkpool's master dispatch.

Every connection gets one answer, "Hello from Python", and is closed
(Connection: close), so one blocking process handles one connection at a time;
run as many workers as you want connections served at once. See
examples/python.toml and docs/protocol.md.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "worker", "python"))

import forkpool_worker  # noqa: E402

BODY = b"Hello from Python\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n"
            b"\r\n" % len(BODY)) + BODY
BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\n"
               b"Content-Length: 0\r\n"
               b"Connection: close\r\n\r\n")
HEAD_LIMIT = 16384
READ_TIMEOUT = 10.0  # seconds a client may take to send its request head


def serve(conn):
    conn.settimeout(READ_TIMEOUT)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            return  # the client went away before asking anything
        head += chunk
        if len(head) > HEAD_LIMIT:
            conn.sendall(BAD_REQUEST)
            return
    method = head.split(b" ", 1)[0]
    conn.sendall(RESPONSE if method != b"HEAD" else RESPONSE[: -len(BODY)])


def main():
    try:
        worker = forkpool_worker.Worker()
    except OSError as e:
        print("hello_worker.py: %s" % e, file=sys.stderr)
        return 78  # EX_CONFIG: not started by forkpool; do not respawn
    with worker:
        for conn in worker:  # sends READY on the first iteration
            try:
                serve(conn)
            except OSError:
                pass  # a reset or a timeout ends this connection, not the worker
            finally:
                worker.done(conn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
