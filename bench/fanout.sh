#!/usr/bin/env bash
# What one message to an inbox with many agents costs on disk, for the
# "Fan-out to an inbox" table of BENCHMARKS.md:
#
#   bench/fanout.sh LABEL BINDIR [AGENTS] [OUTDIR]
#
# BINDIR holds that build's `kanald`; the load comes from this tree's
# release `kanal-bench` (target/release). A fresh server (limits off) on
# 127.0.0.1:7447 gets AGENTS agents (default 200) in its `support` inbox;
# 4 customers then write to the inbox for 10 s (`kanal-bench throughput
# --to support@localhost`). Prints one line: messages acked, messages/s,
# server CPU, event rows, and the database's growth in bytes per message
# (after the server's clean stop, which checkpoints the WAL into the
# database). Needs the sqlite3 command. The JSON report goes to
# OUTDIR/LABEL-fanout.json (default OUTDIR: /tmp/kanal-fanout).
set -eu
label=$1; bin=$2; agents=${3:-200}; out=${4:-/tmp/kanal-fanout}
bench=$(dirname "$0")/../target/release/kanal-bench
mkdir -p "$out"
data=$(mktemp -d)/data
"$bin/kanald" --data-dir "$data" run --listen 127.0.0.1:7447 \
  --registrations-per-hour-per-source 0 --sends-per-second-per-party 0 \
  --max-connections-per-source 0 --max-connections-per-account 0 \
  >/dev/null 2>"$out/server.err" &
pid=$!
for _ in $(seq 1 100); do
  [ -f "$data/kanald.toml" ] && ss -lun | grep -q ':7447 ' && break
  sleep 0.1
done
for i in $(seq 1 "$agents"); do
  "$bin/kanald" --data-dir "$data" agent add "agent$i" --password "agent password $i" >/dev/null
done
sqlite3 "$data/kanal.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
before=$(stat -c %s "$data/kanal.db")
KANAL_PIN=$("$bin/kanald" --data-dir "$data" fingerprint) KANAL_SERVER=127.0.0.1:7447 \
  "$bench" throughput --to support@localhost --clients 4 --duration 10 --warmup 0 \
  --server-pid "$pid" --json >"$out/$label-fanout.json"
kill "$pid"; wait "$pid" 2>/dev/null || true
after=$(stat -c %s "$data/kanal.db")
rows() { sqlite3 "$data/kanal.db" "SELECT COUNT(*) FROM $1" 2>/dev/null || echo 0; }
messages=$(rows messages)
python3 - "$out/$label-fanout.json" "$label" "$agents" "$messages" "$before" "$after" \
  "$(rows events)" "$(rows inbox_events)" "$(rows event_spans)" <<'PY'
import json, sys
report, label, agents, messages, before, after, own, inbox, spans = sys.argv[1:]
r = json.load(open(report))['results']
messages, before, after = int(messages), int(before), int(after)
rows = int(own) + int(inbox) + int(spans)
print(f"{label}: {agents} agents, {messages} messages, {r['throughput']:.0f} msg/s, "
      f"server {r['server_cpu']['us_per_op']:.0f} µs CPU/msg, "
      f"event rows {own} own + {inbox} inbox + {spans} spans = {rows / messages:.1f}/msg, "
      f"database +{(after - before) / messages:.0f} B/msg")
PY
rm -rf "$(dirname "$data")"
