#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is missing, builds, and runs the example pool in the foreground:
# four forkpool-hello workers behind 127.0.0.1:8080. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake --preset default
cmake --build --preset default -j"$(nproc)"
cat <<'MSG'

forkpool is starting the example pool (examples/hello.toml). In another terminal:
  curl -i http://127.0.0.1:8080/            # the X-Worker header names the worker that answered
  curl -i 'http://127.0.0.1:8080/sleep?ms=500'
  ab -n 20000 -c 32 http://127.0.0.1:8080/  # apache2-utils
Ctrl-C (SIGINT) stops it gracefully.

MSG
exec ./build/default/supervisor/forkpool -c examples/hello.toml
