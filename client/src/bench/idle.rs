//! Server memory per idle connection: the server's resident set (VmRSS in
//! `/proc/<pid>/status`) before and after opening N connections that each
//! said Hello (Resume) and Sync, divided by N. The connections are then held
//! for `--duration` seconds to show they stay up. `--server-pid` (a global
//! option) names the server process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::bench::global::Global;
use crate::bench::procfs::{own_rss_kib, rss_kib};
use crate::bench::report::{Progress, Summary};
use crate::bench::setup::{self, Plan, Target};

/// The design's budget per idle connection, in KiB.
const TARGET_KIB: f64 = 32.0;

/// The design's number of concurrent clients.
const TARGET_CONNECTIONS: usize = 10_000;

/// Time for the server's memory to settle before a reading.
const SETTLE: Duration = Duration::from_secs(2);

/// Options of `idle`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// Connections to open and hold
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// Connections being opened at once
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Accounts whose sessions the connections resume
    #[arg(long, default_value_t = 16)]
    pub(crate) accounts: usize,
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    global: &Global,
    options: &Options,
) -> Result<Summary> {
    let hold = global.duration_or(5.0);
    let pid = global.server_pid;
    if let Some(pid) = pid {
        rss_kib(pid).with_context(|| format!("reading the memory of server process {pid}"))?;
    }
    let accounts = target
        .register("i", options.accounts.clamp(1, setup::MAX_ACCOUNTS))
        .await?;
    tokio::time::sleep(SETTLE).await;
    let server_before = pid.and_then(rss_kib);
    let bench_before = own_rss_kib();

    let progress = Progress::new(target.bar(options.connections as u64, "connect + sync"));
    let plan = Plan::resume(options.connections, options.concurrency).with_sync();
    let opened = target.open(&accounts, plan, &progress).await?;
    progress.finish();
    let open = opened.sessions.len();

    let bar = target.bar(hold.as_secs().max(1), "holding (s)");
    let held_since = Instant::now();
    tokio::time::sleep(SETTLE).await;
    let server_after = pid.and_then(rss_kib);
    let bench_after = own_rss_kib();
    while held_since.elapsed() < hold {
        bar.set_position(held_since.elapsed().as_secs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish_and_clear();
    let still_up = opened
        .sessions
        .iter()
        .filter(|session| session.client.session_error().is_none())
        .count();

    let closing = Instant::now();
    setup::close_all(opened.sessions).await;
    let close_time = closing.elapsed();
    tokio::time::sleep(SETTLE).await;
    let server_closed = pid.and_then(rss_kib);

    let mut summary = Summary::new("idle", &target.server, &target.run);
    summary.section("setup");
    summary.count(
        "connections",
        "connections asked for",
        options.connections as u64,
    );
    summary.count("concurrency", "opened at once", options.concurrency as u64);
    summary.count("accounts", "accounts", accounts.len() as u64);
    summary.count("endpoints", "UDP endpoints", target.endpoint_count() as u64);
    summary.section("results");
    summary.count("open", "connections open (Hello + Sync)", open as u64);
    summary.count("still_up", "still up after holding", still_up as u64);
    summary.rate(
        "open_rate",
        "opening rate",
        open as f64 / opened.elapsed.as_secs_f64().max(f64::EPSILON),
        "conn/s",
    );
    summary.latency("connect", "handshake + Welcome", &opened.connect);
    summary.latency("sync", "Sync → SyncComplete", &opened.sync);
    summary.duration("close", "closing all", close_time);
    let mut per_connection = None;
    if let (Some(before), Some(after)) = (server_before, server_after) {
        summary.kib("server_rss_before", "server RSS before", before as f64);
        summary.kib("server_rss_after", "server RSS with all open", after as f64);
        if let Some(closed) = server_closed {
            summary.kib(
                "server_rss_closed",
                "server RSS after closing",
                closed as f64,
            );
        }
        if open > 0 {
            let per = (after as f64 - before as f64) / open as f64;
            summary.kib("server_per_connection", "server memory / connection", per);
            per_connection = Some(per);
        }
    } else {
        summary.field(
            "server_per_connection_kib",
            "server memory / connection",
            serde_json::Value::Null,
            "unknown (pass --server-pid)",
        );
    }
    if let (Some(before), Some(after), true) = (bench_before, bench_after, open > 0) {
        summary.kib(
            "bench_per_connection",
            "bench (client) memory / connection",
            (after as f64 - before as f64) / open as f64,
        );
    }
    summary.count("errors", "failed connections", opened.errors.total());
    summary.errors("error_kinds", &opened.errors);
    summary.section("targets");
    if options.connections >= TARGET_CONNECTIONS {
        summary.target(
            "connections",
            "≥ 10,000 concurrent connections",
            open >= TARGET_CONNECTIONS && still_up == open,
        );
    } else {
        summary.target_not_applicable(
            "connections",
            "≥ 10,000 concurrent connections",
            "needs --connections 10000",
        );
    }
    if let Some(per) = per_connection {
        summary.target(
            "memory",
            "≤ 32 KiB server memory / idle connection",
            per <= TARGET_KIB,
        );
    }
    if open < options.connections {
        summary.fail(format!(
            "{} of {} connections failed",
            options.connections - open,
            options.connections
        ));
    }
    if still_up < open {
        summary.fail(format!(
            "{} connections were lost while idle",
            open - still_up
        ));
    }
    Ok(summary)
}
