#!/usr/bin/env bash
# Runs the BENCHMARKS.md suite once against one build, for before/after
# comparisons made in the same session on the same machine:
#
#   bench/suite.sh LABEL BINDIR ROUND [OUTDIR]
#
# BINDIR holds that build's `kanald` and `kanal-bench` (release). Each
# scenario gets a fresh server on 127.0.0.1:7447 and a fresh data directory,
# after a `sync`. Reports go to OUTDIR/LABEL-SCENARIO-ROUND.txt (default
# OUTDIR: /tmp/kanal-bench). Alternate builds round by round, e.g.
#   for r in 1 2 3; do bench/suite.sh before /tmp/old $r; bench/suite.sh after target/release $r; done
# With KANAL_BENCH_POSTGRES set to a PostgreSQL server's URL without a
# database (e.g. postgres://postgres@127.0.0.1:5432), each scenario's server
# keeps its data in a fresh database `kanal_bench` there instead of SQLite
# (needs psql).
set -u
label=$1; bin=$2; round=$3; out=${4:-/tmp/kanal-bench}
postgres=${KANAL_BENCH_POSTGRES:-}
data=$(mktemp -d)/data
mkdir -p "$out"
ulimit -n 65536 2>/dev/null || true
run() {
  local name=$1; shift
  rm -rf "$data"
  local database=()
  if [ -n "$postgres" ]; then
    psql -q "$postgres/postgres" -c 'DROP DATABASE IF EXISTS kanal_bench WITH (FORCE)' \
      -c 'CREATE DATABASE kanal_bench'
    database=(--database "$postgres/kanal_bench")
  fi
  sync
  # The load generator registers many accounts and opens thousands of
  # connections from one address, and sends as fast as it can per account:
  # the per-source and per-account limits are off for it.
  "$bin/kanald" --data-dir "$data" run --listen 127.0.0.1:7447 \
    --registrations-per-hour-per-source 0 --sends-per-second-per-party 0 \
    --max-connections-per-source 0 --max-connections-per-account 0 "${database[@]}" \
    >/dev/null 2>"$out/server.err" &
  local pid=$!
  for _ in $(seq 1 100); do
    [ -f "$data/kanald.toml" ] && ss -lun | grep -q ':7447 ' && break
    sleep 0.1
  done
  KANAL_PIN=$("$bin/kanald" --data-dir "$data" fingerprint) KANAL_SERVER=127.0.0.1:7447 \
    timeout 120 "$bin/kanal-bench" "$@" --server-pid "$pid" >"$out/$label-$name-$round.txt" 2>/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null
}
run tp-pipe throughput --clients 64 --pipelined --in-flight 64 --duration 10
run tp-stream throughput --clients 64 --duration 10
run lat latency --rate 10000 --clients 64 --receivers 4 --duration 10
run idle idle --connections 10000
run sync sync --events 10000 --rounds 3
rm -rf "$(dirname "$data")"
