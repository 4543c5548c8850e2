#!/usr/bin/python3
"""Bounded loopback XMPP probe for side-by-side comparisons with kanald.

P sender clients each write to a paired receiver: on the same server (c2s
routing), or with --recv-server on a second server, so that every message
crosses server to server (s2s). Two modes:

  --rate R   open loop: message k is due at t0 + k/R, on sender k mod P, and
             is sent when due whether or not earlier ones arrived; latency is
             measured from the scheduled time (so the probe's own lateness
             counts against it, as in `kanal-bench latency`). The first
             --warmup seconds are not measured.
  (no rate)  as fast as possible: every sender writes --msgs messages in a
             tight loop (the probe, single-threaded Python, is the bottleneck).

Server CPU is read from /proc/PID/stat (utime + stime, all threads) of the
--pids processes over the measured interval (their sum, and each process
on its own): for --rate from the end of the
warm-up to the last scheduled send, divided by the messages sent in it (as
kanal-bench does); as fast as possible from the first send to the last
receipt, divided by the messages received.

Messages are written as raw stanzas (no per-send stanza objects) to keep the
probe's own cost down; bodies are padded to --size bytes. Bounded: at most
200,000 messages, 120 s of schedule, loopback addresses only. Prints one JSON
object on stdout with --json, else a few lines.
"""
import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time

import slixmpp

MAX_MESSAGES = 200_000
MAX_SECONDS = 120.0


def parse_ep(s):
    hp, domain = s.split("@")
    host, port = hp.rsplit(":", 1)
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit("loopback only")
    return host, int(port), domain


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, pw, on_msg=None):
        super().__init__(jid, pw)
        self.ready = asyncio.get_event_loop().create_future()
        self.on_msg = on_msg
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("failed_auth", self._fail)
        if on_msg:
            self.add_event_handler("message", self._msg)
        self["feature_mechanisms"].unencrypted_plain = True

    async def _start(self, _):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def _fail(self, _):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("auth failed " + str(self.boundjid)))

    def _msg(self, msg):
        if msg["type"] in ("chat", "normal"):
            body = msg["body"]
            if body:
                self.on_msg(body)


def cpu_seconds(pids):
    """CPU seconds (utime + stime) of each of `pids`, in order."""
    tck = os.sysconf("SC_CLK_TCK")
    used = []
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        used.append((int(fields[11]) + int(fields[12])) / tck)
    return used


def own_cpu():
    t = os.times()
    return t.user + t.system


def quantile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def body(seq, sched_ns, size):
    head = f"{seq}:{sched_ns}:"
    return head + "x" * max(0, size - len(head))


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="host:port@domain (loopback)")
    ap.add_argument("--recv-server", default=None,
                    help="host:port@domain (loopback) of the receivers' server "
                         "(default: --server); another domain makes every message s2s")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--recv-offset", type=int, default=None,
                    help="receiver user index offset (default: --pairs): senders are "
                         "u1..uP, receivers u(P+1)..u(2P)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="messages per second, all senders together, on a fixed schedule")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds (--rate)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (--rate)")
    ap.add_argument("--msgs", type=int, default=2000,
                    help="messages per sender (as fast as possible)")
    ap.add_argument("--size", type=int, default=64, help="body bytes (at least the header)")
    ap.add_argument("--drain", type=float, default=10.0,
                    help="longest wait for the last messages after the last send")
    ap.add_argument("--password", default="pw")
    ap.add_argument("--pids", default="", help="comma-separated server PIDs to read CPU time of")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    host, port, domain = parse_ep(a.server)
    rhost, rport, rdomain = parse_ep(a.recv_server or a.server)
    off = a.pairs if a.recv_offset is None else a.recv_offset
    pids = [int(x) for x in a.pids.split(",") if x]
    if a.rate > 0:
        if a.warmup + a.duration > MAX_SECONDS:
            raise SystemExit(f"bounded: at most {MAX_SECONDS:.0f} s of schedule")
        total = int(round((a.warmup + a.duration) * a.rate))
        first_measured = int(round(a.warmup * a.rate))
    else:
        total = a.pairs * a.msgs
        first_measured = 0
    if total > MAX_MESSAGES:
        raise SystemExit(f"bounded: at most {MAX_MESSAGES} messages per run")

    loop = asyncio.get_event_loop()
    lat = []          # ms, measured messages only
    got_measured = 0
    got_all = 0
    last_recv = [0.0]
    done = loop.create_future()
    measured_sent = [0]
    sending_done = [False]

    def on_msg(text):
        nonlocal got_measured, got_all
        seq_s, sched_s, _ = text.split(":", 2)
        now = time.monotonic_ns()
        got_all += 1
        if int(seq_s) >= first_measured:
            got_measured += 1
            lat.append((now - int(sched_s)) / 1e6)
            last_recv[0] = time.perf_counter()
        if sending_done[0] and got_measured >= measured_sent[0] and not done.done():
            done.set_result(True)

    receivers, senders = [], []
    for i in range(1, a.pairs + 1):
        r = Client(f"u{i + off}@{rdomain}/bench", a.password, on_msg)
        s = Client(f"u{i}@{domain}/bench", a.password)
        r.connect((rhost, rport), use_ssl=False, force_starttls=False, disable_starttls=True)
        s.connect((host, port), use_ssl=False, force_starttls=False, disable_starttls=True)
        receivers.append(r)
        senders.append(s)
    t_conn = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in receivers + senders)), 60)
    connect_s = time.perf_counter() - t_conn
    await asyncio.sleep(1.0)
    prefix = [f"<message to='u{i + 1 + off}@{rdomain}/bench' type='chat'><body>"
              for i in range(a.pairs)]
    tail = "</body></message>"

    lag = []          # ms, schedule -> issue, measured messages only
    c0 = p0 = t0 = None
    if a.rate > 0:
        period = 1e9 / a.rate
        start_ns = time.monotonic_ns() + 100_000_000
        k = 0
        while k < total:
            now = time.monotonic_ns()
            due = min(total, int((now - start_ns) / period) + 1) if now >= start_ns else 0
            while k < due:
                if k == first_measured:
                    c0, p0, t0 = cpu_seconds(pids), own_cpu(), time.perf_counter()
                sched = start_ns + int(k * period)
                i = k % a.pairs
                senders[i].send_raw(prefix[i] + body(k, sched, a.size) + tail)
                if k >= first_measured:
                    lag.append((time.monotonic_ns() - sched) / 1e6)
                k += 1
            nxt = start_ns + int(k * period)
            await asyncio.sleep(max(0.0, (nxt - time.monotonic_ns()) / 1e9))
        t_sched_end = time.perf_counter()
        c1, p1 = cpu_seconds(pids), own_cpu()
        measured_sent[0] = total - first_measured
    else:
        c0, p0, t0 = cpu_seconds(pids), own_cpu(), time.perf_counter()
        k = 0
        for m in range(a.msgs):
            for i, s in enumerate(senders):
                s.send_raw(prefix[i] + body(k, time.monotonic_ns(), a.size) + tail)
                k += 1
            if m % 20 == 0:
                await asyncio.sleep(0)  # let the loop flush sockets and read
        measured_sent[0] = total
    sending_done[0] = True
    if got_measured >= measured_sent[0] and not done.done():
        done.set_result(True)
    try:
        await asyncio.wait_for(done, a.drain + (0 if a.rate > 0 else MAX_SECONDS))
    except asyncio.TimeoutError:
        pass
    if a.rate <= 0:
        t_sched_end = last_recv[0] or time.perf_counter()
        c1, p1 = cpu_seconds(pids), own_cpu()
    wall = max(t_sched_end - t0, 1e-9)
    lat.sort()
    lag.sort()
    sent = measured_sent[0]
    by_pid = [after - before for before, after in zip(c0, c1)]
    server_cpu = sum(by_pid) if pids else None
    per_msg_basis = sent if a.rate > 0 else max(got_measured, 1)
    result = {
        "mode": "rate" if a.rate > 0 else "max",
        "pairs": a.pairs,
        "size": a.size,
        "rate": a.rate or None,
        "connect_s": round(connect_s, 2),
        "measured_s": round(wall, 3),
        "sent": sent,
        "received": got_measured,
        "lost": sent - got_measured,
        # Rate mode: what the schedule achieved; max mode: receipts per second.
        "offered": round(sent / wall, 1) if a.rate > 0 else None,
        "throughput": round(got_measured / wall, 1),
        "latency_ms": {
            "p50": quantile(lat, 0.50), "p90": quantile(lat, 0.90),
            "p99": quantile(lat, 0.99), "max": lat[-1] if lat else None,
            "mean": statistics.fmean(lat) if lat else None,
        },
        "issue_lag_ms": {"p50": quantile(lag, 0.50), "p99": quantile(lag, 0.99),
                         "max": lag[-1] if lag else None} if a.rate > 0 else None,
        "server_cpu_s": server_cpu,
        "server_us_per_msg": (1e6 * server_cpu / per_msg_basis) if pids else None,
        "server_cores": (server_cpu / wall) if pids else None,
        "server_us_per_msg_by_pid": {str(pid): 1e6 * used / per_msg_basis
                                     for pid, used in zip(pids, by_pid)},
        "probe_cores": (p1 - p0) / wall,
    }
    for c in receivers + senders:
        c.disconnect()
    await asyncio.sleep(0.5)
    if a.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    sys.exit(asyncio.run(main()))
