#!/usr/bin/env bash
# Runs every `kanal-bench abuse` attack once against one build, for the
# "Under attack" table of BENCHMARKS.md:
#
#   bench/abuse.sh LABEL BINDIR ROUND [OUTDIR]
#
# BINDIR holds that build's `kanald`; the attacks come from this tree's
# release `kanal-bench` (target/release). Each attack gets a fresh server
# on its default limits (the attacks are what they are for) on
# 127.0.0.1:7447 and a fresh data directory. Reports (JSON) go to
# OUTDIR/LABEL-ROUND-ATTACK.json (default OUTDIR: /tmp/kanal-abuse).
# Alternate builds round by round, e.g.
#   for r in 1 2; do bench/abuse.sh before /tmp/old $r; bench/abuse.sh after target/release $r; done
set -u
label=$1; bin=$2; round=$3; out=${4:-/tmp/kanal-abuse}
bench=$(dirname "$0")/../target/release/kanal-bench
mkdir -p "$out"
for attack in none typing unread sync-unread wrong-password register half-frames sends initials; do
  data=$(mktemp -d)/data
  sync
  "$bin/kanald" --data-dir "$data" run --listen 127.0.0.1:7447 >/dev/null 2>"$out/server.err" &
  pid=$!
  for _ in $(seq 1 100); do
    [ -f "$data/kanald.toml" ] && ss -lun | grep -q ':7447 ' && break
    sleep 0.1
  done
  KANAL_PIN=$("$bin/kanald" --data-dir "$data" fingerprint) KANAL_SERVER=127.0.0.1:7447 \
    timeout 180 "$bench" abuse "$attack" --duration 10 --server-pid "$pid" --json \
    >"$out/$label-$round-$attack.json" 2>/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null
  rm -rf "$(dirname "$data")"
done
