# SPDX-License-Identifier: Apache-2.0
"""A WSGI application with no dependencies, for examples/wsgi.toml and docs/wsgi.md.

Any WSGI callable runs the same way: a Flask app (`app:app`), a Django project
(`mysite.wsgi:application`).
"""

import os
import time


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        # /sleep?ms=N: a slow request, to see the master hand fast ones to other workers.
        ms = environ.get("QUERY_STRING", "").partition("ms=")[2].split("&")[0]
        time.sleep(int(ms) / 1000.0 if ms.isdigit() else 0.1)
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])  # no length: chunked
        return (b"line %d\n" % i for i in range(5))
    elif path != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    body = b"Hello from WSGI, worker pid %d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
