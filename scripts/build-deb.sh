#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian packages of forkpool from this tree with Debian's own tools
# (dpkg-buildpackage, debhelper compat 13, dh --buildsystem=cmake) and checks them:
# lintian without errors or unexplained warnings, the expected contents, the packaged
# config passes --check, the man pages render, the systemd units verify.
#
#   scripts/build-deb.sh            # -> dist/forkpool_<version>_<arch>.deb and the library packages
#   DIST_DIR=/tmp/x scripts/build-deb.sh   # the packages go to /tmp/x instead of dist/
#   JOBS=4 ...                      # parallel compile jobs (default 2)
#
# The version is project(VERSION) of CMakeLists.txt; debian/changelog is written from it.
# Installs what it needs (devscripts debhelper lintian scdoc ...) like install-deps.sh.
# Slow (a full release build): in ctest only as deb_tests (label deb, default preset),
# which runs this with DIST_DIR in a temporary folder, then installs and purges the
# packages; see packaging/README.md.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# Where the packages go (a relative DIST_DIR is taken from the caller's folder).
dist="$(realpath -m "${DIST_DIR:-$root/dist}")"
cd "$root"

# --- what the build needs -----------------------------------------------------------
packages=(dpkg-dev debhelper fakeroot lintian scdoc groff-base man-db systemd python3-yaml curl
          cmake g++ pkg-config libuv1-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
          nlohmann-json3-dev libcli11-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-deb: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

version="$(sed -n 's/^project(forkpool VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
[ -n "$version" ] || { echo "build-deb: no project(forkpool VERSION x.y.z) in CMakeLists.txt" >&2; exit 1; }
arch="$(dpkg-architecture -qDEB_HOST_ARCH)"
echo "build-deb: forkpool $version for $arch"

# --- a source tree with debian/ at its root -----------------------------------------
work="$(mktemp -d /tmp/forkpool-deb.XXXXXX)"
if [ -z "${KEEP_WORK:-}" ]; then trap 'rm -rf "$work"' EXIT; else echo "build-deb: work folder $work (kept)"; fi
src="$work/forkpool-$version"
mkdir -p "$src"
# The committed and uncommitted files of the tree, without build output.
git ls-files -z --cached --others --exclude-standard | grep -zv '^packaging/debian/' |
  xargs -0 cp --parents -t "$src"
cp -r packaging/debian "$src/debian"
# One copy of each unit, logrotate snippet: packaging/ (also used by hand installs).
cp packaging/forkpool.service packaging/forkpool.socket packaging/forkpool@.service "$src/debian/"
cp packaging/forkpool.logrotate "$src/debian/forkpool.logrotate"
cp packaging/forkpool.tmpfiles "$src/debian/forkpool.tmpfiles"
cp packaging/README.md "$src/debian/README.Debian"
maintainer="$(sed -n 's/^Maintainer: //p' packaging/debian/control)"
cat >"$src/debian/changelog" <<CHANGELOG
forkpool ($version) unstable; urgency=medium

  * Release $version, built from the source tree by scripts/build-deb.sh.

 -- $maintainer  $(date -R)
CHANGELOG

# --- build --------------------------------------------------------------------------
(cd "$src" && DEB_BUILD_OPTIONS="parallel=${JOBS:-2} nocheck" dpkg-buildpackage -b -us -uc)
mkdir -p "$dist"
debs=("$work"/*.deb)
cp "${debs[@]}" "$dist/"
deb="$dist/forkpool_${version}_${arch}.deb"
[ -f "$deb" ] || { echo "build-deb: $deb was not built" >&2; exit 1; }

# --- lintian: no errors, no warning without an override -----------------------------
changes=("$work"/*.changes)
echo "build-deb: lintian"
lintian --fail-on error,warning --info --display-info "${changes[@]}"

# --- contents -----------------------------------------------------------------------
contents="$(for d in "$dist"/*_"${version}"_"${arch}".deb; do dpkg-deb -c "$d"; done)"
expect=(
  ./usr/bin/forkpool ./usr/bin/forkpoolctl ./usr/bin/forkpool-hello
  ./usr/lib/python3/dist-packages/forkpool_worker.py
  "./usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/libforkpool-worker.so.1"
  "./usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/libforkpool-worker.so"
  "./usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/pkgconfig/forkpool-worker.pc"
  ./usr/include/forkpool/worker.h
  ./etc/forkpool/forkpool.toml
  ./lib/systemd/system/forkpool.service ./lib/systemd/system/forkpool.socket
  ./lib/systemd/system/forkpool@.service
  ./etc/logrotate.d/forkpool ./usr/lib/tmpfiles.d/forkpool.conf ./etc/forkpool/conf.d/
  ./usr/share/man/man8/forkpool.8.gz ./usr/share/man/man8/forkpoolctl.8.gz
  ./usr/share/man/man5/forkpool.toml.5.gz ./usr/share/man/man7/forkpool-protocol.7.gz
  ./usr/share/man/man1/forkpool-hello.1.gz
  ./usr/share/bash-completion/completions/forkpoolctl ./usr/share/zsh/vendor-completions/_forkpoolctl
  ./usr/share/doc/forkpool/copyright ./usr/share/doc/forkpool/configuration.md.gz
  ./usr/share/doc/forkpool/examples/hello.toml
)
if [ -f worker/python/forkpool_wsgi.py ]; then expect+=(./usr/bin/forkpool-wsgi); fi
for path in "${expect[@]}"; do
  grep -qE " ${path//./\\.}( -> .*)?\$" <<<"$contents" || { echo "build-deb: $path is not in the packages" >&2; exit 1; }
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/forkpool/forkpool.toml ||
  { echo "build-deb: /etc/forkpool/forkpool.toml is not a conffile" >&2; exit 1; }

# --- the unpacked packages work from a scratch root ---------------------------------
scratch="$work/root"
for d in "$dist"/*_"${version}"_"${arch}".deb; do dpkg-deb -x "$d" "$scratch"; done
multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
export LD_LIBRARY_PATH="$scratch/usr/lib/$multiarch"
"$scratch/usr/bin/forkpool" --version | grep -qx "forkpool $version (worker protocol 1)"
"$scratch/usr/bin/forkpoolctl" --version | grep -qx "forkpoolctl $version"
# The packaged config with the scratch root's worker: must pass --check.
# (and its control socket in a folder that exists here: /run/forkpool is made by
# tmpfiles.d and systemd on the installed system)
sed -e "s|/usr/bin/forkpool-hello|$scratch/usr/bin/forkpool-hello|" \
    -e "s|/run/forkpool/forkpool.sock|$work/check.sock|" "$scratch/etc/forkpool/forkpool.toml" >"$work/check.toml"
"$scratch/usr/bin/forkpool" --check -c "$work/check.toml" >/dev/null
for page in "$scratch"/usr/share/man/man*/*.gz; do
  warnings="$(zcat "$page" | groff -ww -man -Tutf8 2>&1 >/dev/null)"
  [ -z "$warnings" ] || { echo "build-deb: $page: $warnings" >&2; exit 1; }
done
unset LD_LIBRARY_PATH
# systemd-analyze verify with the scratch root: its units, the host's targets, /bin/kill,
# and the man pages of the package for Documentation=.
mkdir -p "$scratch/bin"
cp /bin/kill "$scratch/bin/kill"
cp -n /lib/systemd/system/*.target "$scratch/lib/systemd/system/" 2>/dev/null || true
(cd "$scratch/lib/systemd/system" &&
  MANPATH="$scratch/usr/share/man" systemd-analyze verify --root="$scratch" \
    forkpool.service forkpool.socket forkpool@example.service)

# --- the container's entry command, as PID 1 with the container config --------------
# No image can be built here; what can be checked offline: the Containerfile's programs
# are in the packages, and its entry command runs as PID 1 of a PID namespace with the
# container config (workers as nobody) and answers /healthz.
for path in $(grep -ho '/usr/bin/[a-z-]*' packaging/container/Containerfile packaging/container/forkpool.toml | sort -u); do
  grep -q " \.${path}\$" <<<"$contents" || { echo "build-deb: the container needs $path, not in the packages" >&2; exit 1; }
done
# The Kubernetes example parses and keeps its promises: probes on /healthz, scrape
# annotations, a grace period above the container config's shutdown_timeout.
python3 - packaging/kubernetes/forkpool.yaml packaging/container/forkpool.toml <<'PY'
import re, sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1]))}
pod = docs["Deployment"]["spec"]["template"]
container = pod["spec"]["containers"][0]
assert container["readinessProbe"]["httpGet"]["path"] == "/healthz", "readinessProbe is not /healthz"
assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", "livenessProbe is not /healthz"
assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true", "no Prometheus scrape annotation"
shutdown = int(re.search(r'shutdown_timeout = "(\d+)s"', open(sys.argv[2]).read()).group(1))
assert pod["spec"]["terminationGracePeriodSeconds"] > shutdown, "terminationGracePeriodSeconds <= shutdown_timeout"
assert "Service" in docs, "no Service"
PY
echo "build-deb: packaging/kubernetes/forkpool.yaml parses and probes /healthz"

if [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$work"  # the workers run as nobody and exec from the scratch root
  sed -e "s|/usr/bin/forkpool-hello|$scratch/usr/bin/forkpool-hello|" -e "s|0.0.0.0:8080|127.0.0.1:0|" \
      -e "s|0.0.0.0:9464|127.0.0.1:0|" -e "s|/run/forkpool/forkpool.sock|$work/container.sock|" \
      packaging/container/forkpool.toml >"$work/container.toml"
  entry="$(sed -n 's/^ENTRYPOINT \["\([^"]*\)".*/\1/p' packaging/container/Containerfile)"
  LD_LIBRARY_PATH="$scratch/usr/lib/$multiarch" unshare --pid --fork --mount-proc --kill-child=SIGTERM \
    "$scratch$entry" -c "$work/container.toml" >"$work/container.log" 2>&1 &
  pid1=$!
  healthy=""
  for _ in $(seq 1 100); do
    port="$(sed -n 's|.*metrics on http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$work/container.log")"
    if [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then healthy=yes; break; fi
    sleep 0.1
  done
  # unshare --fork ignores TERM itself: stop the master (the namespace's PID 1) directly,
  # as `docker stop` would.
  pkill -TERM -P "$pid1" || true
  wait "$pid1" || true
  grep -q "forkpool master pid 1 starting" "$work/container.log" || healthy=""
  [ -n "$healthy" ] || { echo "build-deb: the container entry command did not answer /healthz as PID 1:" >&2; cat "$work/container.log" >&2; exit 1; }
  echo "build-deb: container entry command answered /healthz as PID 1"
else
  echo "build-deb: not root: the container entry command was not run (needs unshare --pid)"
fi

echo "build-deb: ok: $(cd "$dist" && ls "$PWD"/*_"${version}"_"${arch}".deb | tr '\n' ' ')"
