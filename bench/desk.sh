#!/usr/bin/env bash
# What the service desk's bookkeeping costs, for the "Service desk on and
# off" table of BENCHMARKS.md:
#
#   bench/desk.sh on|off [ROUNDS] [OUTDIR]
#
# A fresh release server (limits off) on 127.0.0.1:7447 gets 4 agents in
# its `support` inbox, each connected and reading its events (`kanal
# listen`). With `on`, the inbox has a desk: round-robin routing, business
# hours, first-response, next-response and resolution targets with a
# warning (so every conversation gets a ticket, an owner and SLA clocks).
# 16 customers then write to the inbox for 10 s, 7 sends in flight each
# (`kanal-bench throughput --to support@localhost`). Prints one line per
# round: messages/s, the acks' p50 and p99, and server CPU per message.
# The JSON reports go to OUTDIR (default /tmp/kanal-desk).
set -eu
mode=$1; rounds=${2:-1}; out=${3:-/tmp/kanal-desk}
root=$(dirname "$0")/..
bin=$root/target/release
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  sync
  work=$(mktemp -d)
  data=$work/data
  "$bin/kanald" --data-dir "$data" run --listen 127.0.0.1:7447 \
    --registrations-per-hour-per-source 0 --sends-per-second-per-party 0 \
    --max-connections-per-source 0 --max-connections-per-account 0 \
    >/dev/null 2>"$out/server.err" &
  pid=$!
  for _ in $(seq 1 100); do
    [ -f "$data/kanald.toml" ] && ss -lun | grep -q ':7447 ' && break
    sleep 0.1
  done
  export KANAL_PIN=$("$bin/kanald" --data-dir "$data" fingerprint) KANAL_SERVER=127.0.0.1:7447
  listeners=()
  for i in 1 2 3 4; do
    "$bin/kanald" --data-dir "$data" agent add "agent$i" --password "agent password $i" >/dev/null
    KANAL_HOME=$work/agent$i "$bin/kanal" login "agent$i@localhost" --password "agent password $i" >/dev/null
    KANAL_HOME=$work/agent$i "$bin/kanal" listen >/dev/null 2>&1 &
    listeners+=($!)
  done
  if [ "$mode" = on ]; then
    "$bin/kanald" --data-dir "$data" inbox desk support --routing round-robin \
      --hours "mon-sun 00:00-24:00; zone Europe/Berlin" --first-response-mins 60 \
      --next-response-mins 30 --resolution-mins 480 --warn-before-mins 10 >/dev/null
  fi
  "$bin/kanal-bench" throughput --to support@localhost --clients 16 --duration 10 \
    --server-pid "$pid" --json >"$out/$mode-$round.json"
  kill "${listeners[@]}" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$out/$mode-$round.json" "$mode" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))['results']
lat = r['send_latency']
print(f"desk {sys.argv[2]}: {r['throughput']:.0f} msg/s, "
      f"p50 {lat['p50_us'] / 1000:.2f} ms, p99 {lat['p99_us'] / 1000:.2f} ms, "
      f"server {r['server_cpu']['us_per_op']:.0f} µs CPU/msg")
PY
  rm -rf "$work"
done
