#!/usr/bin/env bash
# Builds the module (release) and runs redis-server with it in the foreground on 127.0.0.1,
# with the configuration from redis.conf.
#
#   scripts/run.sh                      # port 6379
#   PORT=7001 scripts/run.sh            # another port
#   PORT=7001 scripts/run.sh --requirepass secret   # extra arguments go to redis-server
#
# The module is copied to target/kestrel-run/libkestrel.so and the effective config is written
# to target/kestrel-run/redis.conf; data goes to target/kestrel-run/data/. Stop with Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
port=${PORT:-6379}

fail() {
  printf 'scripts/run.sh: %s\n' "$*" >&2
  exit 1
}

case "$port" in
'' | *[!0-9]*) fail "PORT=$port is not a port number: set PORT to a number such as 7001" ;;
esac

# shellcheck source=scripts/deps.sh
KESTREL_DEPS=apt source scripts/deps.sh

cargo build --release -p kestrel-module ||
  fail "building the module failed: see the compiler errors above"

target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in
/*) ;;
*) target=$root/$target ;;
esac
run_dir=$target/kestrel-run
mkdir -p "$run_dir/data"
# Copy, then rename: a server still running from an earlier run keeps its mapped file intact.
cp "$target/release/libkestrel.so" "$run_dir/libkestrel.so.new"
mv -f "$run_dir/libkestrel.so.new" "$run_dir/libkestrel.so"

escape() {
  printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'
}
sed -e "s|@KESTREL_MODULE@|$(escape "$run_dir/libkestrel.so")|" \
  -e "s|@KESTREL_DATA_DIR@|$(escape "$run_dir/data")|" \
  redis.conf >"$run_dir/redis.conf"

if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
  fail "port $port is in use on this machine: stop what listens there, or pick another port" \
    "with PORT=<port> scripts/run.sh"
fi

cat <<EOF
Kestrel: redis-server on 127.0.0.1:$port with $run_dir/libkestrel.so (shard-id 1)
config: $run_dir/redis.conf, data: $run_dir/data

Try, from another terminal:
  redis-cli -p $port KESTREL.ID
  redis-cli -p $port KESTREL.IDS 5
  redis-cli -p $port KESTREL.DECODE \$(redis-cli -p $port KESTREL.ID)
  redis-cli -p $port INFO kestrel

Stop with Ctrl-C.

EOF
exec redis-server "$run_dir/redis.conf" --port "$port" "$@"
