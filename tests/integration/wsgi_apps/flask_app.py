# SPDX-License-Identifier: Apache-2.0
"""A real Flask application for tests/integration/wsgi_test.cpp and bench/wsgi_vs_gunicorn."""

import gc
import hashlib
import os
import time

from flask import Flask, Response, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask\n"


@app.get("/pid")
def pid():
    return "%d\n" % os.getpid()


@app.post("/echo")
def echo():
    """The request body back, with its length and SHA-256 in headers."""
    data = request.get_data()
    return Response(data, mimetype="application/octet-stream",
                    headers={"X-Length": str(len(data)), "X-Sha256": hashlib.sha256(data).hexdigest()})


@app.get("/stream")
def stream():
    count = request.args.get("n", default=5, type=int)

    def generate():
        for i in range(count):
            yield "part %d\n" % i

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/sleep")
def sleep():
    time.sleep(request.args.get("ms", default=100, type=int) / 1000.0)
    return "slept\n"


@app.get("/gc")
def gc_state():
    # What the server left to the garbage collector: frozen objects are out of its sight.
    return {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}


@app.get("/fail")
def fail():
    raise RuntimeError("deliberate failure in /fail")


@app.get("/environ")
def environ():
    keys = ("REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "PATH_INFO", "QUERY_STRING")
    return {k: request.environ.get(k) for k in keys}
