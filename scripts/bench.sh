#!/usr/bin/env bash
# Measures KESTREL.ID and KESTREL.IDS against Redis's own PING and INCR and against the Lua
# script, all with redis-benchmark on one redis-server with the module loaded, so every ratio
# compares runs made by the same process on the same machine minutes apart.
#
#   scripts/bench.sh                 # 3 rounds, writes docs/benchmarks.md
#   ROUNDS=5 REQUESTS=2000000 scripts/bench.sh
#
# Each test runs ROUNDS times, round-robin with the others, and the median counts.
# One generator makes at most 4096 IDs per millisecond of clock; flat-out batches run far
# faster than that and would soon be refused with KESTREL_LEAD. So the batch tests spread
# their calls over GENERATORS generators (redis-benchmark's __rand_int__), as a service with
# many shards would; KESTREL.ID uses the default generator, the script one of its own. The
# script checks that no call was refused.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/deps.sh
source scripts/deps.sh

rounds=${ROUNDS:-3}
requests=${REQUESTS:-1000000}
clients=${CLIENTS:-50}
generators=${GENERATORS:-1000}
if [ "$generators" -lt 1 ] || [ "$generators" -gt 1021 ]; then
  echo "GENERATORS=$generators: pick 1 to 1021 (each needs a shard id of its own)" >&2
  exit 1
fi

cargo build --release -p kestrel-module
work=$(mktemp -d /tmp/kestrel-bench.XXXXXX)
cp target/release/libkestrel.so "$work/kestrel.so"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
  --logfile "$work/redis.log" --loadmodule "$work/kestrel.so" shard-id 1 &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cli() { redis-cli -p "$port" "$@"; }
for _ in $(seq 50); do
  cli PING >/dev/null 2>&1 && break
  sleep 0.1
done
cli PING >/dev/null || { echo "redis-server did not start; see $work/redis.log" >&2; exit 1; }

sha=$(cli SCRIPT LOAD "$(cat core/src/kestrel.lua)")
# The script runs on a generator of its own: one the module serves is shared with the script
# for a few seconds after each script call, and then stores exact places (see README, Design).
keys=(3 "{script}-generator-lock" "{script}-generator-sequence" "{script}-shard-id")
cli SET "{script}-shard-id" 1023 >/dev/null
# Every generator needs a shard id of its own; redis-benchmark names them with 12 digits.
for ((i = 0; i < generators; i++)); do
  printf 'SET {bench:%012d}-shard-id %d\n' "$i" $((i + 2))
done | cli --pipe >/dev/null

# name | IDs per call | command
tests=(
  "PING|0|PING"
  "INCR|0|INCR bench:counter"
  "KESTREL.ID|1|KESTREL.ID"
  "KESTREL.ID FORMAT STRING|1|KESTREL.ID FORMAT STRING"
  "KESTREL.IDS 100|100|KESTREL.IDS 100 GENERATOR bench:__rand_int__"
  "KESTREL.IDS 100 FORMAT STRING|100|KESTREL.IDS 100 GENERATOR bench:__rand_int__ FORMAT STRING"
  "KESTREL.IDS 100 FORMAT RANGES|100|KESTREL.IDS 100 GENERATOR bench:__rand_int__ FORMAT RANGES"
  "KESTREL.IDS 1000|1000|KESTREL.IDS 1000 GENERATOR bench:__rand_int__"
  "KESTREL.IDS 1000 FORMAT STRING|1000|KESTREL.IDS 1000 GENERATOR bench:__rand_int__ FORMAT STRING"
  "KESTREL.IDS 1000 FORMAT RANGES|1000|KESTREL.IDS 1000 GENERATOR bench:__rand_int__ FORMAT RANGES"
  "script, 1 ID (EVALSHA)|1|EVALSHA $sha ${keys[*]} 4095 1 1023 1"
  "script, 100 IDs (EVALSHA)|100|EVALSHA $sha ${keys[*]} 4095 1 1023 100"
  "script, 1000 IDs (EVALSHA)|1000|EVALSHA $sha ${keys[*]} 4095 1 1023 1000"
)

declare -A samples
run_one() {
  local pipeline=$1 command=$2 n=$3 output
  # shellcheck disable=SC2086
  if ! output=$(redis-benchmark -p "$port" -c "$clients" -P "$pipeline" -n "$n" \
    -r "$generators" --csv $command 2>&1); then
    printf '\nredis-benchmark failed on: %s\n%s\n' "$command" "$(tail -n 3 <<<"$output")" >&2
    printf 'the server log is %s/redis.log\n' "$work" >&2
    return 1
  fi
  awk -F'","' '/^"/ && NR > 1 { print $2; exit }' <<<"$output"
}

for pipeline in 1 16; do
  for round in $(seq "$rounds"); do
    for entry in "${tests[@]}"; do
      IFS='|' read -r name per_call command <<<"$entry"
      n=$requests
      [ "$pipeline" = 1 ] && n=$((requests / 5))
      [ "$per_call" -ge 1000 ] && n=$((n / 10))
      rps=$(run_one "$pipeline" "$command" "$n")
      samples["$pipeline|$name"]+="$rps "
      printf '\r-P %-2s round %s/%s %-40s %12s ops/s' "$pipeline" "$round" "$rounds" "$name" "$rps" >&2
    done
  done
done
printf '\n' >&2

errors=$(cli INFO kestrel | awk -F: '/^kestrel_errors:/ { print $2 }' | tr -d '\r')
if [ "$errors" != 0 ]; then
  echo "the module answered $errors calls with an error; the figures are void (see INFO kestrel)" >&2
  exit 1
fi

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

table=$(mktemp)
{
  echo "| pipeline | command | ops/s | IDs/s | x INCR (ops) | x script (IDs/s, same batch) |"
  echo "|---|---|---:|---:|---:|---:|"
  for pipeline in 1 16; do
    incr=$(echo "${samples[$pipeline|INCR]}" | median)
    for entry in "${tests[@]}"; do
      IFS='|' read -r name per_call _ <<<"$entry"
      ops=$(echo "${samples[$pipeline|$name]}" | median)
      case $per_call in
        1) script_name="script, 1 ID (EVALSHA)" ;;
        100) script_name="script, 100 IDs (EVALSHA)" ;;
        1000) script_name="script, 1000 IDs (EVALSHA)" ;;
        *) script_name="" ;;
      esac
      script_ops=""
      [ -n "$script_name" ] && script_ops=$(echo "${samples[$pipeline|$script_name]}" | median)
      awk -v p="$pipeline" -v name="$name" -v ops="$ops" -v per="$per_call" -v incr="$incr" \
        -v script="$script_ops" 'BEGIN {
          ids = per > 0 ? sprintf("%.0f", ops * per) : "-";
          vs_script = (script != "" && per > 0) ? sprintf("%.2f", ops / script) : "-";
          printf "| -P %s | %s | %.0f | %s | %.2f | %s |\n", p, name, ops, ids, ops / incr, vs_script
        }'
    done
  done
} >"$table"

cat "$table"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores,"
  echo "$(redis-server --version | cut -d' ' -f1-3), $clients clients, median of $rounds rounds."
  echo "Ratios compare runs against the same server in the same script run; absolute figures"
  echo "depend on the machine and its other load. Batch tests spread their calls over"
  echo "$generators generators (see the script's header); no call was refused."
  echo
  cat "$table"
} >docs/benchmarks.md
rm -f "$table"
echo "wrote docs/benchmarks.md" >&2
