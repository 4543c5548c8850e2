#!/usr/bin/env bash
# kanald, Prosody and ejabberd side by side: the same load on each, in the
# same run, one table. See bench/peers/README.md.
#
#   bench/peers/compare.sh [--rate R] [--pairs P] [--msgs M] [--size S]
#                          [--duration D] [--rounds N] [--modes rate,max]
#                          [--servers kanald,prosody,ejabberd] [--bin DIR] [--out DIR]
#
# For each round, and in each round for each server (the order rotates from
# round to round), for each mode: a fresh server on loopback, the load, the
# server stopped and its directory removed.
#   rate: R msg/s on a fixed schedule (open loop) from P senders to P
#         receivers, 2 s warm-up + D s measured, latency from the scheduled
#         send time to the receiver's receipt.
#   max:  as fast as possible; the XMPP probe sends M messages per sender,
#         kanald gets `kanal-bench throughput --online` for D s.
# Installs nothing: a peer whose Debian package is missing is skipped with a
# line saying so (apt-get install -y --no-install-recommends prosody ejabberd
# python3-slixmpp). Needs root (the peers run as their own users).
set -u
here=$(cd "$(dirname "$0")" && pwd)
rate=10000 pairs=20 msgs=5000 size=64 duration=10 rounds=3
modes=rate,max servers=kanald,prosody,ejabberd
bin=${KANAL_BIN:-$here/../../target/release} out=""
while [ $# -gt 0 ]; do
  case $1 in
    --rate) rate=$2 ;; --pairs) pairs=$2 ;; --msgs) msgs=$2 ;; --size) size=$2 ;;
    --duration) duration=$2 ;; --rounds) rounds=$2 ;; --modes) modes=$2 ;;
    --servers) servers=$2 ;; --bin) bin=$2 ;; --out) out=$2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)"; exit 2 ;;
  esac
  shift 2 || { echo "$1 needs a value"; exit 2; }
done
for v in "$rate" "$pairs" "$msgs" "$size" "$duration" "$rounds"; do
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] || { echo "numbers must be positive integers: $v"; exit 2; }
done
# Bounded in count and time.
[ "$pairs" -le 200 ] && [ "$rounds" -le 10 ] && [ "$duration" -le 60 ] && [ "$rate" -le 50000 ] \
  && [ $((pairs * msgs)) -le 200000 ] && [ $((rate * (duration + 2))) -le 200000 ] \
  || { echo "bounded: pairs ≤ 200, rounds ≤ 10, duration ≤ 60, rate ≤ 50000, pairs × msgs ≤ 200000, rate × (duration + 2) ≤ 200000"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (Prosody and ejabberd run as their own users)"; exit 2; }

py=/usr/bin/python3
out=${out:-$(mktemp -d /tmp/kanal-peers.XXXXXX)}
mkdir -p "$out"
work=$(mktemp -d /tmp/kanal-peers-run.XXXXXX)
chmod 755 "$work"
kport=17447 pport=15322 eport=15224 edist=15370 eepmd=15369
xdomain=127.0.0.2
ulimit -n 65536 2>/dev/null || true

# --- process helpers --------------------------------------------------------
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
stop_pid() {  # stop_pid PID SECONDS: TERM, wait up to SECONDS, then KILL
  alive "$1" || return 0
  kill "$1" 2>/dev/null
  for _ in $(seq $((10 * $2))); do alive "$1" || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null; sleep 0.2
}
kids() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; kids "$c"; done; }
listening_tcp() { [ -n "$(ss -Htln "src 127.0.0.1:$1")" ]; }
port_free() { [ -z "$(ss -Htlnu "sport = :$1")" ]; }

# The server now running: its pid (the one whose CPU is counted), the
# process started here (may be a wrapper), its directory, how to stop it.
spid="" srunner="" sdir="" skind=""
stop_server() {
  case $skind in
    ejabberd)
      if alive "$spid"; then
        timeout 30 "${ectl[@]}" stop >/dev/null 2>&1
        for _ in $(seq 100); do alive "$spid" || break; sleep 0.1; done
      fi ;;
  esac
  stop_pid "$spid" 10
  if alive "$srunner"; then
    for k in $(kids "$srunner"); do stop_pid "$k" 2; done
    stop_pid "$srunner" 5
  fi
  wait 2>/dev/null
  [ -n "$sdir" ] && rm -rf "$sdir"
  spid="" srunner="" sdir="" skind=""
}
# The load generator runs in the background and is waited for, so that a
# signal reaches the trap at once (and is passed on to it) instead of after
# the run.
loadpid=""
run_load() { "$@" & loadpid=$!; wait "$loadpid"; local rc=$?; loadpid=""; return $rc; }
cleanup() {
  trap - EXIT INT TERM
  stop_pid "$loadpid" 5
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- kanald -----------------------------------------------------------------
start_kanald() {
  skind=kanald sdir=$(mktemp -d "$work/kanald.XXXXXX")
  sync
  "$bin/kanald" --data-dir "$sdir/data" run --listen 127.0.0.1:$kport \
    --registrations-per-hour-per-source 0 --sends-per-second-per-party 0 \
    --max-connections-per-source 0 --max-connections-per-account 0 \
    >/dev/null 2>"$sdir/server.err" &
  spid=$! srunner=$!
  for _ in $(seq 100); do
    [ -f "$sdir/data/kanald.toml" ] && ss -lun | grep -q ":$kport " && return 0
    sleep 0.1
  done
  echo "kanald did not start"; tail -5 "$sdir/server.err"; return 1
}
run_kanald() {  # run_kanald MODE OUTFILE
  local args
  if [ "$1" = rate ]; then
    args=(latency --rate "$rate" --clients "$pairs" --receivers "$pairs" --size "$size"
          --warmup 2 --duration "$duration")
  else
    args=(throughput --clients "$pairs" --receivers "$pairs" --online --size "$size"
          --warmup 2 --duration "$duration")
  fi
  KANAL_PIN=$("$bin/kanald" --data-dir "$sdir/data" fingerprint) KANAL_SERVER=127.0.0.1:$kport \
    run_load timeout $((duration + 90)) "$bin/kanal-bench" "${args[@]}" --server-pid "$spid" --json \
    >"$2" 2>"$2.err"
}

# --- Prosody ----------------------------------------------------------------
start_prosody() {
  skind=prosody sdir=$(mktemp -d "$work/prosody.XXXXXX")
  cat >"$sdir/prosody.cfg.lua" <<CFG
pidfile = "$sdir/prosody.pid"
data_path = "$sdir/data"
daemonize = false
log = { error = "$sdir/prosody.err" }
interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { $pport }
s2s_ports = {}
http_ports = {}; https_ports = {}; c2s_direct_tls_ports = {}; s2s_direct_tls_ports = {}
network_backend = "epoll"
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "presence"; "message"; "iq"; "smacks"; "carbons"; "offline" }
modules_disabled = { "tls"; "s2s" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"; storage = "internal"; limits = {}
VirtualHost "$xdomain"
CFG
  local acc="$sdir/data/${xdomain//./%2e}/accounts"
  mkdir -p "$acc"
  for i in $(seq 1 $((2 * pairs))); do
    printf 'return {\n\t["password"] = "pw";\n};\n' >"$acc/u$i.dat"
  done
  chown -R prosody:prosody "$sdir"
  runuser -u prosody -- prosody --config "$sdir/prosody.cfg.lua" >"$sdir/stdout.log" 2>&1 &
  srunner=$!
  for _ in $(seq 100); do
    [ -z "$spid" ] && [ -s "$sdir/prosody.pid" ] && spid=$(cat "$sdir/prosody.pid")
    [ -n "$spid" ] && listening_tcp $pport && { sleep 0.3; return 0; }
    sleep 0.1
  done
  echo "prosody did not start"; tail -5 "$sdir"/stdout.log "$sdir"/prosody.err 2>/dev/null; return 1
}

# --- ejabberd ---------------------------------------------------------------
# Plaintext c2s, internal (Mnesia) accounts, no archive; the BEAM's scheduler
# busy-wait off (it would be counted as CPU time); epmd-less distribution on
# loopback (this machine's RabbitMQ owns the system epmd, which is left alone);
# /etc/ejabberd and /var/lib/ejabberd are never touched.
start_ejabberd() {
  skind=ejabberd sdir=$(mktemp -d "$work/ejabberd.XXXXXX")
  mkdir -p "$sdir/etc" "$sdir/spool" "$sdir/log"
  local cookie; cookie=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  cat >"$sdir/etc/ejabberdctl.cfg" <<CFG
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=$eepmd
ERL_DIST_PORT=$edist
INET_DIST_INTERFACE=127.0.0.1
ERLANG_NODE=kanalpeers@localhost
EJABBERD_PID_PATH=$sdir/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie $cookie +sbwt none +sbwtdcpu none +sbwtdio none"
CFG
  printf '{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n' >"$sdir/etc/inetrc"
  cat >"$sdir/etc/ejabberd.yml" <<CFG
hosts:
  - "$xdomain"
loglevel: warning
certfiles: []
define_macro: {}
listen:
  -
    port: $eport
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: all
    starttls_required: false
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
shaper: {}
shaper_rules: {}
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_stream_mgmt: {}
  mod_carboncopy: {}
  mod_offline: {}
CFG
  chown -R ejabberd:ejabberd "$sdir"
  ectl=(runuser -u ejabberd -- env HOME="$sdir" /usr/sbin/ejabberdctl
        --config-dir "$sdir/etc" --spool "$sdir/spool" --logs "$sdir/log")
  for p in $eport $edist $eepmd; do port_free "$p" || { echo "port $p in use"; return 1; }; done
  "${ectl[@]}" foreground >"$sdir/stdout.log" 2>&1 &
  srunner=$!
  for _ in $(seq 600); do
    [ -z "$spid" ] && [ -s "$sdir/ejabberd.pid" ] && spid=$(cat "$sdir/ejabberd.pid")
    [ -n "$spid" ] && listening_tcp $eport && break
    alive "$srunner" || break
    sleep 0.1
  done
  [ -n "$spid" ] && [ "$(cat "/proc/$spid/comm" 2>/dev/null)" = beam.smp ] && listening_tcp $eport \
    || { echo "ejabberd did not start"; tail -5 "$sdir/stdout.log" "$sdir"/log/*.log 2>/dev/null; return 1; }
  # Accounts in parallel batches (each ejabberdctl call is a short-lived BEAM).
  local i
  for i in $(seq 1 $((2 * pairs))); do
    timeout 60 "${ectl[@]}" register "u$i" "$xdomain" pw >>"$sdir/register.log" 2>&1 &
    [ $((i % 8)) = 0 ] && wait_registrations
  done
  wait_registrations
  grep -qi 'error\|fail' "$sdir/register.log" && { echo "ejabberd: registration failed"; tail -3 "$sdir/register.log"; return 1; }
  return 0
}
wait_registrations() {  # waits for the ejabberdctl calls only, not the server
  local j
  for j in $(jobs -p); do [ "$j" = "$srunner" ] || wait "$j" 2>/dev/null; done
}

# --- the XMPP probe -----------------------------------------------------------
run_xmpp() {  # run_xmpp PORT MODE OUTFILE
  local args=(--server "127.0.0.1:$1@$xdomain" --pairs "$pairs" --size "$size" --pids "$spid" --json)
  if [ "$2" = rate ]; then
    args+=(--rate "$rate" --warmup 2 --duration "$duration")
  else
    args+=(--msgs "$msgs")
  fi
  run_load timeout $((duration + 200)) "$py" "$here/bench_xmpp.py" "${args[@]}" >"$3" 2>"$3.err"
}

# --- which servers can run -------------------------------------------------
available=()
for s in ${servers//,/ }; do
  case $s in
    kanald)
      if [ -x "$bin/kanald" ] && [ -x "$bin/kanal-bench" ]; then available+=(kanald)
      else echo "skipping kanald: no kanald and kanal-bench in $bin (cargo build --release, or --bin DIR)"; fi ;;
    prosody)
      if command -v prosody >/dev/null && "$py" -c 'import slixmpp' 2>/dev/null; then available+=(prosody)
      else echo "skipping prosody: not installed (apt-get install -y --no-install-recommends prosody python3-slixmpp)"; fi ;;
    ejabberd)
      if [ -x /usr/sbin/ejabberdctl ] && "$py" -c 'import slixmpp' 2>/dev/null; then available+=(ejabberd)
      else echo "skipping ejabberd: not installed (apt-get install -y --no-install-recommends ejabberd python3-slixmpp)"; fi ;;
    *) echo "unknown server $s"; exit 2 ;;
  esac
done
[ ${#available[@]} -gt 0 ] || { echo "nothing to measure"; exit 2; }

echo "reports in $out; $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; pairs=$pairs size=$size rate=$rate duration=$duration msgs=$msgs rounds=$rounds"
for r in $(seq 1 "$rounds"); do
  n=${#available[@]}
  for j in $(seq 0 $((n - 1))); do
    s=${available[$(( (j + r - 1) % n ))]}
    for m in ${modes//,/ }; do
      f="$out/$s-$m-$r.json"
      if "start_$s" >"$out/$s-$m-$r.start" 2>&1; then
        case $s in
          kanald) run_kanald "$m" "$f" ;;
          prosody) run_xmpp $pport "$m" "$f" ;;
          ejabberd) run_xmpp $eport "$m" "$f" ;;
        esac
        echo "round $r: $s $m done (exit $?)"
      else
        echo "round $r: $s failed to start: $(tail -1 "$out/$s-$m-$r.start")"
      fi
      stop_server
    done
  done
done
"$py" "$here/table.py" "$out" --rate "$rate" --pairs "$pairs" --size "$size" --msgs "$msgs" \
  --duration "$duration" | tee "$out/table.md"
