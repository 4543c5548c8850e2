#!/usr/bin/env bash
# Federation between two servers on this machine, kanald and Prosody in the
# same run, for the "Federation" section of BENCHMARKS.md:
#
#   bench/federation.sh LABEL BINDIR ROUND [OUTDIR]
#
# BINDIR holds that build's `kanald` and `kanal-bench` (release). Needs root
# for Prosody (it runs as the `prosody` user; a missing Prosody or slixmpp is
# skipped with a line saying so: apt-get install -y --no-install-recommends
# prosody python3-slixmpp). Loopback only; every run is bounded by count and
# by `timeout`.
#
# kanald, each scenario with two fresh servers (SQLite, the defaults, the
# load generator's per-source and per-party limits off as in suite.sh):
#   A: domain a.test, clients 127.0.0.1:17461, federation 127.0.0.1:17463
#   B: domain b.test, clients 127.0.0.1:17471, federation 127.0.0.1:17473
# each a configured peer of the other (`kanald peer add`), one agent in B's
# `support` inbox. 16 customers on A write to support@b.test (`kanal-bench
# federation`):
#   fed-max  as fast as the window allows (32 messages per customer in flight
#            end to end), 2 s warm-up, 10 s measured;
#   fed-rate 2,000 msg/s on a fixed schedule, 2 s warm-up, 10 s measured.
# A message counts when B's agent received it; the run also waits for its
# replica to come back to the customer on A.
#
# Prosody (0.12), each scenario with two fresh instances: domains 127.0.0.2
# and 127.0.0.3 (an IP literal as the domain: Prosody connects to it on
# port 5269 without DNS, so server to server stays on loopback), s2s on
# 127.0.0.2:5269 and 127.0.0.3:5269 (dialback, plaintext), c2s on
# 127.0.0.1:15422 and 15423; 16 senders on the first, 16 receivers on the
# second (bench/peers/bench_xmpp.py --recv-server):
#   fed-max  2,500 messages per sender in a tight loop;
#   fed-rate 2,000 msg/s on a fixed schedule, 2 s warm-up, 10 s measured.
#
# Reports: OUTDIR/SYSTEM-SCENARIO-ROUND.json (SYSTEM: LABEL for kanald,
# prosody), with each server's whole-run CPU seconds from /proc in
# OUTDIR/SYSTEM-SCENARIO-ROUND.cpu, and one line per scenario on stdout
# (default OUTDIR: /tmp/kanal-federation).
set -u
label=$1; bin=$2; round=$3; out=${4:-/tmp/kanal-federation}
here=$(cd "$(dirname "$0")" && pwd)
clients=16 rate=2000 duration=10 msgs=2500
root=$(mktemp -d)
chmod 711 "$root"  # Prosody runs as its own user
mkdir -p "$out"
ulimit -n 65536 2>/dev/null || true
ticks=$(getconf CLK_TCK)
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null && wait "${pids[@]}" 2>/dev/null
  pids=()
}
trap 'cleanup; rm -rf "$root"' EXIT

# CPU seconds (user + system, all threads) process $1 used so far.
cpu_of() {
  local fields
  read -ra fields < <(sed 's/.*) //' "/proc/$1/stat") || { echo 0; return; }
  # After the name: state is field 3, utime 14, stime 15.
  echo "scale=2; (${fields[11]} + ${fields[12]}) / $ticks" | bc
}

# Waits until UDP or TCP port $2 (ss -lun / -ltn: $1) listens.
wait_port() {
  for _ in $(seq 1 100); do
    ss "$1" | grep -q ":$2 " && return 0
    sleep 0.1
  done
  echo "nothing listens on $2" >&2
  return 1
}

# Waits until nothing listens on UDP ports $@ any more (a previous server
# still shutting down); false after 10 s.
ports_free() {
  local port taken
  for _ in $(seq 1 100); do
    taken=
    for port in "$@"; do ss -lun | grep -q ":$port " && taken=1; done
    [ -z "$taken" ] && return 0
    sleep 0.1
  done
  echo "UDP ports $* still taken" >&2
  return 1
}

# kanald: two fresh servers peered both ways, then kanal-bench federation.
kanal() {
  local name=$1; shift
  ports_free 17461 17462 17463 17471 17472 17473 || return 1
  rm -rf "$root"/kanal-*
  local a=$root/kanal-a b=$root/kanal-b password="agent password 1"
  "$bin/kanald" --data-dir "$a" init --domain a.test >/dev/null
  "$bin/kanald" --data-dir "$b" init --domain b.test >/dev/null
  "$bin/kanald" --data-dir "$a" peer add b.test --address 127.0.0.1:17473 \
    --fingerprint "$("$bin/kanald" --data-dir "$b" fingerprint)" >/dev/null
  "$bin/kanald" --data-dir "$b" peer add a.test --address 127.0.0.1:17463 \
    --fingerprint "$("$bin/kanald" --data-dir "$a" fingerprint)" >/dev/null
  "$bin/kanald" --data-dir "$b" agent add agent1 --password "$password" >/dev/null
  sync
  local limits=(--registrations-per-hour-per-source 0 --sends-per-second-per-party 0
    --max-connections-per-source 0 --max-connections-per-account 0)
  "$bin/kanald" --data-dir "$a" run --listen 127.0.0.1:17461 --device-listen 127.0.0.1:17462 \
    --federation-listen 127.0.0.1:17463 "${limits[@]}" >/dev/null 2>"$out/kanald-a.err" &
  local pa=$!
  "$bin/kanald" --data-dir "$b" run --listen 127.0.0.1:17471 --device-listen 127.0.0.1:17472 \
    --federation-listen 127.0.0.1:17473 "${limits[@]}" >/dev/null 2>"$out/kanald-b.err" &
  local pb=$!
  pids=("$pa" "$pb")
  wait_port -lun 17461 && wait_port -lun 17471 && wait_port -lun 17463 && wait_port -lun 17473 \
    || { cleanup; return 1; }
  local report=$out/$label-$name-$round a0 b0
  a0=$(cpu_of "$pa"); b0=$(cpu_of "$pb")
  KANAL_SERVER=127.0.0.1:17461 KANAL_PIN=$("$bin/kanald" --data-dir "$a" fingerprint) \
    KANAL_AGENT_SERVER=127.0.0.1:17471 KANAL_AGENT_PIN=$("$bin/kanald" --data-dir "$b" fingerprint) \
    KANAL_BENCH_AGENT_PASSWORD=$password \
    timeout 180 "$bin/kanal-bench" federation --inbox support@b.test --agent agent1@b.test \
    --clients "$clients" --duration "$duration" --server-pid "$pa" --agent-server-pid "$pb" \
    --json "$@" >"$report.json" 2>"$report.err"
  echo "kanal-bench exit $?; whole run, CPU s: A $(echo "$(cpu_of "$pa") - $a0" | bc)," \
    "B $(echo "$(cpu_of "$pb") - $b0" | bc)" >"$report.cpu"
  { echo "A:"; "$bin/kanald" --data-dir "$a" peer list; echo "B:"; "$bin/kanald" --data-dir "$b" peer list; } \
    >>"$report.cpu" 2>&1
  cleanup
  python3 - "$report.json" "$label $name" <<'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit(f"{sys.argv[2]}: no report ({e})")
r = j["results"]
lat = r["end_to_end"]
cpu = lambda k: (r.get(k) or {}).get("us_per_op")
ms = lambda k: lat.get(k, float("nan")) / 1000
print(f"{sys.argv[2]}: {r['throughput']:.0f} msg/s end to end, p50 {ms('p50_us'):.2f} ms, "
      f"p99 {ms('p99_us'):.2f} ms, max {ms('max_us'):.2f} ms, "
      f"CPU µs/msg A {cpu('a_server_cpu')} B {cpu('b_server_cpu')}, "
      f"missing B {r['missing_on_b']} A {r['missing_on_a']}, ok {j.get('ok')}")
PY
}

# Prosody: two fresh instances with s2s between them, then the XMPP probe.
prosody_pair() {
  local name=$1; shift
  if ! command -v prosody >/dev/null || ! /usr/bin/python3 -c 'import slixmpp' 2>/dev/null; then
    echo "prosody $name: skipped (apt-get install -y --no-install-recommends prosody python3-slixmpp)"
    return 0
  fi
  rm -rf "$root"/prosody-*
  local started=() side ip port
  for side in a:127.0.0.2:15422 b:127.0.0.3:15423; do
    IFS=: read -r side ip port <<<"$side"
    local dir=$root/prosody-$side host=${ip//./%2e}
    mkdir -p "$dir/data/$host/accounts"
    cat >"$dir/prosody.cfg.lua" <<CFG
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
daemonize = false
log = { error = "$dir/prosody.err" }
interfaces = { "$ip" }
local_interfaces = { "$ip" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { $port }
s2s_interfaces = { "$ip" }
s2s_ports = { 5269 }
http_ports = {}; https_ports = {}; c2s_direct_tls_ports = {}; s2s_direct_tls_ports = {}
network_backend = "epoll"
modules_enabled = { "roster"; "saslauth"; "dialback"; "disco"; "ping"; "presence"; "message"; "iq"; "smacks"; "carbons"; "offline" }
modules_disabled = { "tls" }
c2s_require_encryption = false
s2s_require_encryption = false
s2s_secure_auth = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"; storage = "internal"; limits = {}
VirtualHost "$ip"
CFG
    for i in $(seq 1 $((2 * clients))); do
      printf 'return {\n\t["password"] = "pw";\n};\n' >"$dir/data/$host/accounts/u$i.dat"
    done
    chown -R prosody:prosody "$dir"
    runuser -u prosody -- prosody --config "$dir/prosody.cfg.lua" >"$dir/stdout.log" 2>&1 &
    for _ in $(seq 50); do [ -s "$dir/prosody.pid" ] && break; sleep 0.1; done
    local pid
    pid=$(cat "$dir/prosody.pid" 2>/dev/null)
    [ -n "$pid" ] || { echo "prosody $side did not start" >&2; tail "$dir"/*.log "$dir"/*.err >&2; cleanup; return 1; }
    started+=("$pid"); pids+=("$pid")
  done
  wait_port -ltn 15422 && wait_port -ltn 15423 || { cleanup; return 1; }
  local pa=${started[0]} pb=${started[1]} report=$out/prosody-$name-$round a0 b0
  a0=$(cpu_of "$pa"); b0=$(cpu_of "$pb")
  timeout 180 /usr/bin/python3 "$here/peers/bench_xmpp.py" --server 127.0.0.1:15422@127.0.0.2 \
    --recv-server 127.0.0.1:15423@127.0.0.3 --pairs "$clients" --size 64 \
    --pids "$pa,$pb" --json "$@" >"$report.json" 2>"$report.err"
  echo "bench_xmpp.py exit $?; whole run, CPU s: A $(echo "$(cpu_of "$pa") - $a0" | bc)," \
    "B $(echo "$(cpu_of "$pb") - $b0" | bc)" >"$report.cpu"
  cleanup
  python3 - "$report.json" "prosody $name" "$pa" "$pb" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    sys.exit(f"{sys.argv[2]}: no report ({e})")
lat = r["latency_ms"]
by = r["server_us_per_msg_by_pid"]
print(f"{sys.argv[2]}: {r['throughput']:.0f} msg/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
      f"max {lat['max']:.2f} ms, CPU µs/msg A {by[sys.argv[3]]:.1f} B {by[sys.argv[4]]:.1f}, "
      f"lost {r['lost']}, probe {r['probe_cores']:.2f} cores")
PY
}

kanal fed-max --window 32
kanal fed-rate --rate "$rate"
prosody_pair fed-max --msgs "$msgs"
prosody_pair fed-rate --rate "$rate" --duration "$duration" --warmup 2
