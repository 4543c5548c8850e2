#!/usr/bin/env bash
# Several kanald nodes on one PostgreSQL database and one NATS, measured as
# bench/suite.sh measures one node:
#
#   bench/cluster.sh LABEL BINDIR ROUND NODES [OUTDIR]
#
# BINDIR holds that build's `kanald` and `kanal-bench` (release). Each
# scenario gets a fresh database `kanal_bench_cluster` on the PostgreSQL
# server KANAL_BENCH_POSTGRES names (default
# postgres://postgres@127.0.0.1:5432; needs psql), NODES fresh data
# directories sharing one certificate, and nodes on 127.0.0.1:7447,
# 7448, … joined through the NATS at KANAL_BENCH_NATS (default
# nats://127.0.0.1:4222). The load generator spreads its connections over
# the nodes in turn. Once every node is up and every slot leased, the
# scenario runs; the nodes' CPU time (all of them, from /proc) is written
# beside its report, with `kanald cluster status` after it. The latency
# scenario's rate is KANAL_BENCH_RATE (default 10000 messages/s, as
# bench/suite.sh); KANAL_BENCH_ONLY=tp-pipe|tp-stream|lat runs one
# scenario. Reports go to OUTDIR/LABEL-SCENARIO-ROUND.txt (default
# OUTDIR: /tmp/kanal-bench).
set -u
label=$1; bin=$2; round=$3; count=$4; out=${5:-/tmp/kanal-bench}
postgres=${KANAL_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
nats=${KANAL_BENCH_NATS:-nats://127.0.0.1:4222}
rate=${KANAL_BENCH_RATE:-10000}
only=${KANAL_BENCH_ONLY:-}
root=$(mktemp -d)
mkdir -p "$out"
ulimit -n 65536 2>/dev/null || true
ticks=$(getconf CLK_TCK)

# CPU seconds (user + system) the processes $@ used so far.
cpu_of() {
  local total=0 pid fields
  for pid in "$@"; do
    read -ra fields < "/proc/$pid/stat" || continue
    total=$((total + fields[13] + fields[14]))
  done
  echo "scale=3; $total / $ticks" | bc
}

run() {
  local name=$1; shift
  [ -n "$only" ] && [ "$only" != "$name" ] && return 0
  rm -rf "$root"/node*
  psql -q "$postgres/postgres" -c 'DROP DATABASE IF EXISTS kanal_bench_cluster WITH (FORCE)' \
    -c 'CREATE DATABASE kanal_bench_cluster'
  local database="$postgres/kanal_bench_cluster" prefix="kanal.bench$$" pids=() servers=()
  for n in $(seq 0 $((count - 1))); do
    local data="$root/node$n"
    mkdir -p "$data"
    [ "$n" -gt 0 ] && cp "$root/node0/cert.pem" "$root/node0/key.pem" "$data/"
    "$bin/kanald" --data-dir "$data" init --database "$database" >/dev/null 2>&1
    sed -i "s/^nats_subject_prefix = .*/nats_subject_prefix = \"$prefix\"/" "$data/kanald.toml"
  done
  sync
  for n in $(seq 0 $((count - 1))); do
    local port=$((7447 + n))
    # The load generator's many accounts and connections from one address,
    # sending as fast as it can per account: those limits are off.
    "$bin/kanald" --data-dir "$root/node$n" run --listen "127.0.0.1:$port" --nats "$nats" \
      --device-listen "127.0.0.1:$((17448 + n))" --federation-listen "127.0.0.1:$((27449 + n))" \
      --registrations-per-hour-per-source 0 --sends-per-second-per-party 0 \
      --max-connections-per-source 0 --max-connections-per-account 0 \
      >/dev/null 2>"$out/server$n.err" &
    pids+=($!)
    servers+=("127.0.0.1:$port")
  done
  # Every node up, connected to NATS, and every slot leased.
  local ready=
  for _ in $(seq 1 100); do
    local status
    status=$("$bin/kanald" --data-dir "$root/node0" cluster status 2>/dev/null)
    if [[ $status == "$count of $count nodes up"* && $status == *"Slots without a lease: 0 "* ]] \
      && ! grep -q '  up  .*  no  ' <<<"$status"; then
      ready=1
      break
    fi
    sleep 0.2
  done
  if [ -z "$ready" ]; then
    echo "$name: the nodes never all came up: $status" >&2
    kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null
    return 1
  fi
  local before after list
  list=$(IFS=,; echo "${servers[*]}")
  before=$(cpu_of "${pids[@]}")
  KANAL_PIN=$("$bin/kanald" --data-dir "$root/node0" fingerprint) KANAL_SERVER=$list \
    timeout 180 "$bin/kanal-bench" "$@" >"$out/$label-$name-$round.txt" 2>/dev/null
  after=$(cpu_of "${pids[@]}")
  echo "nodes' CPU seconds during the run: $(echo "$after - $before" | bc)" \
    >>"$out/$label-$name-$round.txt"
  "$bin/kanald" --data-dir "$root/node0" cluster status >>"$out/$label-$name-$round.txt" 2>&1
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null
}
run tp-pipe throughput --clients 64 --pipelined --in-flight 64 --duration 10
run tp-stream throughput --clients 64 --duration 10
run lat latency --rate "$rate" --clients 64 --receivers 4 --duration 10
rm -rf "$root"
