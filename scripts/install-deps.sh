#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what forkpool needs to build and test on Debian 12, and nothing that is
# already there. Idempotent: a second run installs nothing and does not touch apt.
set -euo pipefail

packages=(
  # build
  cmake g++ make pkg-config
  libuv1-dev libtomlplusplus-dev libspdlog-dev libfmt-dev catch2
  nlohmann-json3-dev libcli11-dev
  scdoc groff-base man-db  # man pages (docs/man), rendered by the packaging tests
  # the Debian packages (scripts/build-deb.sh; built, installed and purged by deb_tests)
  dpkg-dev debhelper fakeroot lintian python3-yaml
  zsh  # the zsh completion of forkpoolctl is loaded by a real zsh (packaging_tests)
  # tests: real clients and real peers
  curl apache2-utils python3 tmux prometheus systemd util-linux procps iproute2
  python3-gunicorn  # a real program that forks its own workers (isolate tests, bench)
  python3-flask python3-django  # real WSGI apps for forkpool-wsgi (wsgi_test.cpp)
  # fuzzing (scripts/fuzz.sh): clang and its libFuzzer runtime
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
