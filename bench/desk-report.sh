#!/usr/bin/env bash
# What a service-desk report costs, for the "Service-desk reports" table of
# BENCHMARKS.md:
#
#   bench/desk-report.sh TICKETS [ROUNDS] [OUTDIR]
#
# A fresh release server (limits off) on 127.0.0.1:7447 gets an agent in
# its `support` inbox and a desk with business hours and SLA targets.
# `kanal-bench desk-report` then has 8 customers open TICKETS tickets,
# which the agent answers and resolves, and asks for the report of the
# period 5 times. Prints one line per round: the report's p50 and worst
# latency and the server's CPU per report. JSON reports go to OUTDIR
# (default /tmp/kanal-desk-report).
set -eu
tickets=$1; rounds=${2:-1}; out=${3:-/tmp/kanal-desk-report}
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
  export KANAL_PIN=$("$bin/kanald" --data-dir "$data" fingerprint)
  "$bin/kanald" --data-dir "$data" agent add ann --password 'ann bench password' >/dev/null
  "$bin/kanald" --data-dir "$data" inbox desk support --routing round-robin \
    --hours "mon-sun 00:00-24:00; zone Europe/Berlin" --first-response-mins 60 \
    --resolution-mins 480 --csat stars >/dev/null
  KANAL_BENCH_AGENT_PASSWORD='ann bench password' "$bin/kanal-bench" --server 127.0.0.1:7447 \
    --server-pid "$pid" --json desk-report --agent ann@localhost --tickets "$tickets" \
    >"$out/$tickets-$round.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$out/$tickets-$round.json" "$tickets" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))['results']
lat = r['report_latency']
print(f"{sys.argv[2]} tickets: report p50 {lat['p50_us'] / 1000:.1f} ms, "
      f"max {lat['max_us'] / 1000:.1f} ms, "
      f"server {r['server_cpu']['us_per_op'] / 1000:.1f} ms CPU/report")
PY
  rm -rf "$work"
done
