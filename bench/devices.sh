#!/usr/bin/env bash
# The device fleet figures of BENCHMARKS.md ("Device fleet"), each run on
# fresh processes, beside a throwaway Mosquitto (Debian's `mosquitto`) on
# another loopback port holding the same fleet as idle MQTT clients.
#
#   bench/devices.sh [RELEASE_DIR] [RUNS] [WORK_DIR]
#
# Per run: a kanald whose registry holds REGISTERED devices (100,000),
# SESSIONS of them (20,000) opening a conversation at RATE opens/s and then
# polling every 10 s (`kanal-bench devices`); the gateway's CPU per refused
# datagram on a kanald with no devices (`kanal-bench device-flood`); and
# MQTT_CLIENTS (19,000: the machine's limit of 20,000 open files per
# process binds a TCP broker, not UDP) idle clients of a fresh Mosquitto
# (`kanal-bench mqtt-idle`). Results: WORK_DIR/*.json and a table of
# medians on stdout. Needs `cargo build --release -p kanal-server
# -p kanal-client` first.
set -euo pipefail
bin=${1:-target/release}
runs=${2:-3}
work=${3:-/tmp/kanal-devices}
registered=${REGISTERED:-100000}
sessions=${SESSIONS:-20000}
mqtt_clients=${MQTT_CLIENTS:-19000}
rate=${RATE:-400}
kanald=$bin/kanald
bench=$bin/kanal-bench
mkdir -p "$work"

# Starts kanald on DATA (UDP port PORT for devices); sets $pid once the
# gateway listens.
start_kanald() {
  local data=$1 port=$2
  "$kanald" --data-dir "$data" run --listen 127.0.0.1:$((port - 1)) \
    --device-listen 127.0.0.1:"$port" >"$work/kanald.out" 2>"$work/kanald.err" &
  pid=$!
  for _ in $(seq 1 600); do
    grep -q "kanald devices on" "$work/kanald.err" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$work/kanald.err"; return 1; }
    sleep 0.1
  done
  echo "kanald did not start" >&2
  return 1
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# The fleet's registration, once: REGISTERED keys from seed 7.
if [ ! -f "$work/template.done" ]; then
  rm -rf "$work/template"
  "$kanald" --data-dir "$work/template" init >/dev/null
  "$bench" device-keys --count "$registered" --seed 7 --out "$work/fleet.csv" --json \
    >"$work/keys.json"
  start=$(date +%s.%N)
  "$kanald" --data-dir "$work/template" device add --csv "$work/fleet.csv" | tail -n 1
  echo "registering $registered devices: $(echo "$(date +%s.%N) - $start" | bc) s"
  touch "$work/template.done"
fi

cat >"$work/mosquitto.conf" <<EOF
listener 1884 127.0.0.1
allow_anonymous true
persistence false
max_keepalive 65535
EOF

for r in $(seq 1 "$runs"); do
  echo "run $r of $runs"
  rm -rf "$work/data" && cp -a "$work/template" "$work/data"
  start_kanald "$work/data" 17448
  key=$("$kanald" --data-dir "$work/data" device server-key)
  "$bench" --json --duration 20 --server-pid "$pid" devices --gateway 127.0.0.1:17448 \
    --server-key "$key" --seed 7 --count "$sessions" --rate "$rate" >"$work/devices-$r.json"
  stop "$pid"

  rm -rf "$work/empty"
  start_kanald "$work/empty" 17458
  key=$("$kanald" --data-dir "$work/empty" device server-key)
  for flood in garbage:5000 initiations:400 initiations:5000; do
    "$bench" --json --duration 10 --server-pid "$pid" device-flood --gateway 127.0.0.1:17458 \
      --server-key "$key" --kind "${flood%%:*}" --rate "${flood##*:}" \
      >"$work/flood-${flood%%:*}-${flood##*:}-$r.json"
  done
  stop "$pid"

  (ulimit -n 20000 && exec mosquitto -c "$work/mosquitto.conf") >"$work/mosquitto.log" 2>&1 &
  mpid=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/1884) 2>/dev/null && break; sleep 0.1; done
  "$bench" --json --duration 2 mqtt-idle --broker 127.0.0.1:1884 --count "$mqtt_clients" \
    --broker-pid "$mpid" >"$work/mqtt-$r.json"
  stop "$mpid"
done

python3 - "$work" "$runs" <<'EOF'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
def results(name):
    return [json.load(open(f"{work}/{name}-{r}.json"))["results"] for r in range(1, runs + 1)]
def median(rows, key, sub=None):
    values = [row[key][sub] if sub else row[key] for row in rows]
    return statistics.median(values)
d = results("devices")
print(f"kanald, {d[0]['count']} device sessions ({runs} runs, medians):")
print(f"  opened                     {median(d, 'opened'):.0f}")
print(f"  opens / s                  {median(d, 'opens_per_second'):.0f}")
print(f"  first contact p50 / p99    {median(d, 'first_contact', 'p50_us')/1000:.1f} / {median(d, 'first_contact', 'p99_us')/1000:.1f} ms")
print(f"  server CPU per open        {median(d, 'open_server_cpu', 'us_per_op'):.0f} µs")
print(f"  server memory per session  {median(d, 'server_per_session_kib'):.2f} KiB")
print(f"  polls / s                  {median(d, 'polls_per_second'):.0f}")
print(f"  server CPU per poll        {median(d, 'poll_server_cpu', 'us_per_op'):.0f} µs")
print(f"  bytes per open / per poll  {median(d, 'bytes_per_open'):.0f} / {median(d, 'bytes_per_poll'):.0f}")
for flood in ["garbage-5000", "initiations-400", "initiations-5000"]:
    f = results(f"flood-{flood}")
    print(f"device-flood {flood}: {median(f, 'server_net_us_per_datagram'):.1f} µs of server CPU per datagram, "
          f"{median(f, 'answers'):.0f} cookie replies")
m = results("mqtt")
print(f"mosquitto, {m[0]['clients']} idle MQTT clients: {median(m, 'broker_per_client_kib'):.2f} KiB per client, "
      f"PUBLISH {m[0]['publish_bytes']} B + PUBACK {m[0]['puback_bytes']} B")
EOF
