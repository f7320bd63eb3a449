#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/wsgi_gc_pauses.py 0|1: the Flask app of the tests called 40,000 times in this
process, without a server, as forkpool-wsgi leaves it after loading it (1: what the import
made frozen out of the garbage collector's sight, gc.freeze, the default; 0: as
--no-gc-freeze leaves it). Prints the latency of a call (mean, p99, p99.9, max) and the
full collections that ran. By hand (docs/wsgi.md, "Garbage collection"):

    cd tests/integration/wsgi_apps && taskset -c 0 python3 ../../../bench/wsgi_gc_pauses.py 1
"""
import gc
import io
import sys
import time

sys.path.insert(0, ".")
freeze = len(sys.argv) < 2 or sys.argv[1] == "1"
from flask_app import app
if freeze:
    gc.collect(); gc.freeze()
env0 = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "x", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False}
def sr(s, h, e=None): pass
lat = []
gen2 = [0]
def cb(phase, info):
    if phase == "start" and info["generation"] == 2: gen2[0] += 1
gc.callbacks.append(cb)
for i in range(40000):
    t = time.perf_counter_ns()
    for chunk in app(dict(env0), sr): pass
    lat.append(time.perf_counter_ns() - t)
lat.sort()
print("freeze" if freeze else "plain ", "mean %.1f us  p99 %.1f  p999 %.1f  max %.1f  gen2 %d" % (sum(lat)/len(lat)/1000, lat[int(len(lat)*.99)]/1000, lat[int(len(lat)*.999)]/1000, lat[-1]/1000, gen2[0]))
