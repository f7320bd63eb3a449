#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is missing, builds the libFuzzer targets (the fuzz preset) and runs each
# for SECONDS (default 60) over a fresh copy of its seed corpus, tests/fuzz/corpus/NAME/,
# so a run never changes the repository. Prints one line per target,
#   NAME: runs=N crashes=K
# keeps every crashing input in build/fuzz/artifacts/ and exits non-zero if any target
# crashed. libFuzzer's own output is in build/fuzz/logs/NAME.log.
#
# FUZZ_JOBS sets the build's parallelism (default: every core). To reproduce a crash:
#   build/fuzz/tests/fuzz/fuzz_NAME build/fuzz/artifacts/NAME-crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS]   (each target runs this long; default 60)" >&2
  exit 2
fi

./scripts/install-deps.sh >&2

build=build/fuzz
mkdir -p "$build/logs" "$build/artifacts"
if ! { cmake --preset fuzz && cmake --build --preset fuzz -j"${FUZZ_JOBS:-$(nproc)}"; } \
    >"$build/logs/build.log" 2>&1; then
  tail -n 40 "$build/logs/build.log" >&2
  echo "fuzz: the build failed; see $build/logs/build.log" >&2
  exit 1
fi

failed=0
notes=()
for source in tests/fuzz/*.cpp; do
  name="$(basename "$source" .cpp)"
  corpus="$build/corpus/$name"
  log="$build/logs/$name.log"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  if [ -d "tests/fuzz/corpus/$name" ]; then cp -R "tests/fuzz/corpus/$name/." "$corpus/"; fi
  args=(-max_total_time="$seconds" -timeout=25 -print_final_stats=1
        -artifact_prefix="$build/artifacts/$name-")
  if [ -f "tests/fuzz/$name.dict" ]; then args+=(-dict="tests/fuzz/$name.dict"); fi

  rc=0
  "$build/tests/fuzz/fuzz_$name" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  # Each failing input libFuzzer saved (slow-unit- files are not failures).
  new="$(sed -n 's/.*Test unit written to \(.*\/'"$name"'-\(crash\|leak\|timeout\|oom\)-.*\)$/\1/p' "$log")"
  crashes=0
  if [ -n "$new" ]; then crashes="$(echo "$new" | wc -l)"; fi

  # The executions this run made: libFuzzer's final statistics, else its last status line.
  runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  if [ -z "$runs" ]; then runs="$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')"; fi
  echo "$name: runs=${runs:-0} crashes=$crashes"

  if [ "$crashes" -gt 0 ]; then
    failed=1
    # The harness's own message ("NAME: ...") or the sanitizer's, whichever came first.
    why="$(grep -m1 -E 'ERROR|runtime error|^[a-z_]+: ' "$log" || true)"
    while read -r artifact; do notes+=("$name: ${why#"$name: "} -> $artifact"); done <<<"$new"
  elif [ "$rc" -ne 0 ]; then
    failed=1
    notes+=("$name: the fuzzer exited with $rc without a crashing input; see $log")
  fi
done

for note in "${notes[@]+"${notes[@]}"}"; do echo "fuzz: $note" >&2; done
exit "$failed"
