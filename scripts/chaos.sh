#!/usr/bin/env bash
# Runs Kestrel's slow fault scenarios on real redis-server processes on 127.0.0.1, the fuzz
# targets for a bounded time, and the module's integration suite under valgrind, then prints
#
#   scenario | IDs checked | duplicates | result
#
# and exits non-zero when any row failed. Every scenario stops its servers by itself.
#
#   scripts/chaos.sh                          # everything (about 20 minutes on 2 cores)
#   FUZZ_SECONDS=10 SOAK_IDS=10000000 scripts/chaos.sh
#   SCENARIOS="clock edges" SKIP_FUZZ=1 SKIP_VALGRIND_SUITE=1 scripts/chaos.sh
#   SKIP_SCENARIOS=1 SKIP_FUZZ=1 KEEP_LOGS=1 scripts/chaos.sh   # only the suite under valgrind
#
# Variables: SCENARIOS (default: all of kestrel-chaos's), FUZZ_SECONDS (60 per target),
# SOAK_IDS (100000000), SOAK_SECONDS (540), SOAK_CONNECTIONS (16), ARGV_COMMANDS (100000),
# LEAK_ROUNDS (200), SKIP_SCENARIOS, SKIP_FUZZ, SKIP_VALGRIND_SUITE, KEEP_LOGS (keep the work
# folder with the fuzz, suite and valgrind logs; its path is printed at the end). The scenarios
# themselves live in chaos/ (Rust); this script only builds, runs and tabulates. Known valgrind
# false positives inside redis-server are suppressed by chaos/valgrind.sup.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

fail() {
  printf 'scripts/chaos.sh: %s\n' "$*" >&2
  exit 1
}

# shellcheck source=scripts/deps.sh
KESTREL_DEPS=apt source scripts/deps.sh
if ! command -v valgrind >/dev/null 2>&1; then
  apt-get install -y valgrind >/dev/null ||
    fail "valgrind is missing and apt-get install valgrind failed; install it and rerun"
fi

target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d /tmp/kestrel-chaos.XXXXXX)
rows="$work/rows"
: >"$rows"
if [ -n "${KEEP_LOGS:-}" ]; then
  trap 'echo "scripts/chaos.sh: logs kept in $work" >&2' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

row() { printf '%-30s | %13s | %10s | %s\n' "$1" "$2" "$3" "$4" >>"$rows"; }

echo "== building the module (release, and test-clock in $target/test-clock) and kestrel-chaos"
cargo build --release -p kestrel-module ||
  fail "building the module failed: see the compiler errors above"
CARGO_TARGET_DIR="$target/test-clock" cargo build -p kestrel-module --features test-clock ||
  fail "building the test-clock module failed: see the compiler errors above"
mkdir -p "$target/kestrel-test-clock"
cp "$target/test-clock/debug/libkestrel.so" "$target/kestrel-test-clock/libkestrel.so"
cargo build --release -p kestrel-chaos ||
  fail "building kestrel-chaos failed: see the compiler errors above"
export KESTREL_MODULE="$target/release/libkestrel.so"
export KESTREL_MODULE_TEST_CLOCK="$target/kestrel-test-clock/libkestrel.so"
chaos="$target/release/kestrel-chaos"

if [ -z "${SKIP_SCENARIOS:-}" ]; then
  echo "== scenarios (details on stderr as each one ends)"
  # shellcheck disable=SC2086 # SCENARIOS is a list of words
  if "$chaos" ${SCENARIOS:-} >>"$rows"; then :; else
    echo "some scenarios failed; their details are above" >&2
  fi
fi

if [ -z "${SKIP_FUZZ:-}" ]; then
  seconds=${FUZZ_SECONDS:-60}
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || fail "cargo install cargo-fuzz failed"
  fi
  for fuzz_target in generator parse; do
    echo "== fuzz $fuzz_target for ${seconds}s"
    log="$work/fuzz-$fuzz_target.log"
    # cargo fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable
    # toolchain accept them.
    if (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$fuzz_target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048) >"$log" 2>&1; then
      result=PASS
    else
      result=FAIL
      tail -40 "$log" >&2
      echo "fuzz $fuzz_target failed; the crashing input is under fuzz/artifacts/$fuzz_target" >&2
    fi
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
    grep -E '^(Done|#[0-9]+ +DONE)' "$log" >&2 || true
    row "fuzz $fuzz_target (${seconds}s, runs)" "$runs" 0 "$result"
  done
fi

if [ -z "${SKIP_VALGRIND_SUITE:-}" ]; then
  echo "== the module's integration suite with redis-server under valgrind"
  logs="$work/valgrind"
  mkdir -p "$logs"
  wrapper=$("$chaos" valgrind-wrapper "$logs")
  # --no-fail-fast: a test that fails (e.g. on valgrind's slowness) must not stop the servers
  # of the later test files from running under valgrind. PINGs take up to 2s under valgrind.
  if KESTREL_SERVER_BIN="$wrapper" KESTREL_PING_LIMIT_MS=${KESTREL_PING_LIMIT_MS:-2000} \
    cargo test -p kestrel-module --tests --no-fail-fast >"$work/suite.log" 2>&1
  then
    row "integration suite, valgrind" "-" "-" PASS
  else
    tail -60 "$work/suite.log" >&2
    echo "the integration suite failed under valgrind (see above: a valgrind error, or a" \
      "timeout from valgrind's slowness)" >&2
    row "integration suite, valgrind" "-" "-" FAIL
  fi
  grep -E '^test result' "$work/suite.log" >&2 || true
  "$chaos" valgrind-report "$logs" >>"$rows" || true
fi

echo
printf '%-30s | %13s | %10s | %s\n' scenario "IDs checked" duplicates result
printf '%s\n' "-------------------------------|---------------|------------|-------"
cat "$rows"
if grep -q '| FAIL$' "$rows"; then
  exit 1
fi
