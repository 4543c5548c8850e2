#!/usr/bin/python3
"""Reads compare.sh's reports (SERVER-MODE-ROUND.json) and prints one table:
medians over the rounds, with the range (min–max) when there is more than one."""
import argparse
import glob
import json
import os
import statistics

ORDER = ["kanald", "prosody", "ejabberd"]


def load(path):
    try:
        with open(path) as f:
            text = f.read().strip().splitlines()
        return json.loads(text[-1]) if text else None
    except (OSError, ValueError):
        return None


def kanald_row(mode, j, a):
    r = j["results"]
    cpu = (r.get("server_cpu") or {}).get("us_per_op")
    if mode == "rate":
        lat = r.get("end_to_end") or {}
        scheduled = round(a.rate * a.duration)
        lost = max(0, scheduled - r.get("received", 0))
        return {
            "msgs": r.get("offered"), "cpu": cpu,
            "p50": lat.get("p50_us", 0) / 1000 if lat.get("count") else None,
            "p99": lat.get("p99_us", 0) / 1000 if lat.get("count") else None,
            "lost": lost,
            "lag99": ((r.get("issue_lag") or {}).get("p99_us") or 0) / 1000,
            "ok": j.get("ok"),
        }
    lat = r.get("send_latency") or {}
    return {
        "msgs": r.get("throughput"), "cpu": cpu,
        # Send → Sent (the durable ack), not end to end: marked in the table.
        "p50": lat.get("p50_us", 0) / 1000 if lat.get("count") else None,
        "p99": lat.get("p99_us", 0) / 1000 if lat.get("count") else None,
        "lost": r.get("errors", 0), "ack_latency": True,
        "received": r.get("received"),
        "ok": j.get("ok"),
    }


def xmpp_row(mode, j, a):
    lat = j.get("latency_ms") or {}
    return {
        "msgs": j.get("offered") if mode == "rate" else j.get("throughput"),
        "cpu": j.get("server_us_per_msg"),
        "p50": lat.get("p50"), "p99": lat.get("p99"),
        "lost": j.get("lost"),
        "lag99": (j.get("issue_lag_ms") or {}).get("p99"),
        "probe": j.get("probe_cores"),
        "ok": j.get("lost") == 0,
    }


def fmt(values, digits=0, unit=""):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    med = statistics.median(values)
    f = lambda v: f"{v:,.{digits}f}"
    if len(values) == 1 or min(values) == max(values):
        return f(med) + unit
    return f"{f(med)}{unit} ({f(min(values))}–{f(max(values))})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--pairs", type=int, default=0)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--msgs", type=int, default=0)
    ap.add_argument("--duration", type=float, default=0)
    a = ap.parse_args()
    rows = {}
    failed = []
    for path in sorted(glob.glob(os.path.join(a.dir, "*-*-*.json"))):
        server, mode, _round = os.path.basename(path)[:-5].split("-")
        j = load(path)
        if j is None:
            failed.append(os.path.basename(path))
            continue
        row = kanald_row(mode, j, a) if server == "kanald" else xmpp_row(mode, j, a)
        rows.setdefault((mode, server), []).append(row)
    print(f"{a.pairs} sender/receiver pairs, {a.size}-byte bodies; "
          f"rate: {a.rate:,.0f} msg/s scheduled, 2 s warm-up + {a.duration:.0f} s measured; "
          f"max: kanald {a.duration:.0f} s, peers {a.msgs:,} messages per sender. "
          "Medians over the rounds (range).")
    print()
    print("| server | mode | rounds | messages/s | server CPU µs/msg | p50 ms | p99 ms "
          "| lost | probe: issue lag p99 ms / cores |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ("rate", "max"):
        for server in ORDER:
            rs = rows.get((mode, server))
            if not rs:
                continue
            label = f"{a.rate:,.0f}/s" if mode == "rate" else "as fast as possible"
            mark = " †" if any(r.get("ack_latency") for r in rs) else ""
            probe = "—"
            if server == "kanald" and mode == "rate":
                probe = fmt([r.get("lag99") for r in rs], 2) + " / —"
            elif server != "kanald":
                lag = fmt([r.get("lag99") for r in rs], 2) if mode == "rate" else "—"
                probe = f"{lag} / {fmt([r.get('probe') for r in rs], 2)}"
            print(f"| {server} | {label} | {len(rs)} | {fmt([r['msgs'] for r in rs])} "
                  f"| {fmt([r['cpu'] for r in rs], 1)} "
                  f"| {fmt([r['p50'] for r in rs], 2)}{mark} | {fmt([r['p99'] for r in rs], 2)}{mark} "
                  f"| {sum(r['lost'] or 0 for r in rs)} | {probe} |")
    print()
    print("Latency is from the scheduled (rate) or actual (max) send to the receiver's "
          "receipt, except † = kanald's Send → Sent (durable ack): `kanal-bench throughput` "
          "does not time receipts. In the max mode the peers' msg/s is the single-threaded "
          "Python probe's limit and their latency is its queue: compare CPU per message there. "
          "lost: messages sent in the measured window and never received (kanald max: failed sends).")
    unheld = sorted({s for (m, s), rs in rows.items() if m == "rate" for r in rs
                     if (r["msgs"] or 0) < 0.99 * a.rate or (r.get("lag99") or 0) > 5})
    if unheld:
        print(f"\nSchedule NOT held (achieved < 99% of the rate, or issue lag p99 > 5 ms) for: "
              f"{', '.join(unheld)}: that row measures the load generator, not the server.")
    bad = [f"{s} {m}" for (m, s), rs in rows.items() for r in rs if not r.get("ok")]
    if bad:
        print(f"\nNot clean (losses or failures): {', '.join(sorted(set(bad)))}")
    if failed:
        print(f"\nNo report (failed run): {', '.join(failed)}")


if __name__ == "__main__":
    main()
