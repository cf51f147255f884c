#!/usr/bin/env bash
# Kestrel's whole check, as CI runs it (.ci/run):
#
#   1. dependencies (scripts/deps.sh: Redis, libclang, rustfmt/clippy, valkey-server)
#   2. cargo fmt --check
#   3. cargo clippy on every target, warnings as errors
#   4. the module, built twice: with --features test-clock (copied to
#      target/kestrel-test-clock/) and plain (copied to target/kestrel-module/); the copies are
#      exported as KESTREL_MODULE_TEST_CLOCK and KESTREL_MODULE for the tests
#   5. cargo test --workspace against redis-server
#   6. the module's tests again, against valkey-server (KESTREL_SERVER_BIN)
#
# Exits non-zero at the first failure, saying which pass failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

pass() {
  printf '\n==================== %s ====================\n' "$*"
}

fail() {
  printf '\nscripts/test.sh: FAILED: %s\n' "$*" >&2
  exit 1
}

pass "1/6 dependencies"
# shellcheck source=scripts/deps.sh
KESTREL_DEPS="apt rust valkey" source scripts/deps.sh

pass "2/6 cargo fmt --all -- --check"
cargo fmt --all -- --check ||
  fail "formatting differs from rustfmt: run 'cargo fmt --all' and commit the result"

pass "3/6 cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings ||
  fail "clippy reported the problems above: fix them (warnings count as errors)"

pass "4/6 build the module (test-clock and plain)"
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in
/*) ;;
*) target=$root/$target ;;
esac
# Copies a freshly built module to a folder of its own, by rename, so a server that has the
# old copy mapped keeps a valid file.
keep_module() {
  local folder=$target/$1
  mkdir -p "$folder"
  cp "$target/debug/libkestrel.so" "$folder/libkestrel.so.new"
  mv -f "$folder/libkestrel.so.new" "$folder/libkestrel.so"
  echo "$folder/libkestrel.so"
}
cargo build -p kestrel-module --features test-clock ||
  fail "building the module with --features test-clock failed: see the compiler errors above"
KESTREL_MODULE_TEST_CLOCK=$(keep_module kestrel-test-clock)
cargo build -p kestrel-module ||
  fail "building the module failed: see the compiler errors above"
KESTREL_MODULE=$(keep_module kestrel-module)
export KESTREL_MODULE KESTREL_MODULE_TEST_CLOCK
echo "KESTREL_MODULE=$KESTREL_MODULE"
echo "KESTREL_MODULE_TEST_CLOCK=$KESTREL_MODULE_TEST_CLOCK"

redis_version=$(redis-server --version | cut -d' ' -f1-3)
pass "5/6 cargo test --workspace against $redis_version"
unset KESTREL_SERVER_BIN
cargo test --workspace --no-fail-fast ||
  fail "a test failed against redis-server (pass 5/6): see the failures above"

valkey_version=$("$KESTREL_VALKEY_SERVER" --version | cut -d' ' -f1-3)
pass "6/6 module tests against $valkey_version"
# No line of ours after this pass: cargo's summary closes the output.
KESTREL_SERVER_BIN=$KESTREL_VALKEY_SERVER cargo test -p kestrel-module --tests --no-fail-fast ||
  fail "a module test failed against valkey-server (pass 6/6): see the failures above;" \
    "rerun with KESTREL_SERVER_BIN=$KESTREL_VALKEY_SERVER"
