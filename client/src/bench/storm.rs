//! Connect/login storm: N connections, C at a time, each a QUIC handshake
//! plus a Hello that resumes a session (or, with `--password-login`, logs in
//! with a password), as after a server restart when every client comes back.
//! Reports connections per second and the time from dialing to the Welcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use crate::bench::global::Global;
use crate::bench::procfs::CpuMeter;
use crate::bench::report::{Progress, Summary};
use crate::bench::setup::{self, Plan, Target};

/// Options of `storm`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// Connections to open
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: usize,
    /// Handshakes in progress at once
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Accounts whose sessions the connections resume
    #[arg(long, default_value_t = 16)]
    pub(crate) accounts: usize,
    /// Log in with address and password (an Argon2id hash on the server per
    /// connection) instead of resuming
    #[arg(long)]
    pub(crate) password_login: bool,
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    global: &Global,
    options: &Options,
) -> Result<Summary> {
    let hold = global.duration_or(0.0);
    let accounts = target
        .register("c", options.accounts.clamp(1, setup::MAX_ACCOUNTS))
        .await?;

    let progress = Progress::new(target.bar(options.connections as u64, "connecting"));
    let plan = Plan {
        password_login: options.password_login,
        ..Plan::resume(options.connections, options.concurrency)
    };
    let cpu = CpuMeter::start(global.server_pid);
    let opened = target.open(&accounts, plan, &progress).await?;
    let cpu = cpu.stop();
    progress.finish();
    let open = opened.sessions.len();

    let held = Instant::now();
    while held.elapsed() < hold {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let still_up = opened
        .sessions
        .iter()
        .filter(|session| session.client.session_error().is_none())
        .count();
    setup::close_all(opened.sessions).await;

    let mut summary = Summary::new("storm", &target.server, &target.run);
    summary.section("setup");
    summary.count(
        "connections",
        "connections asked for",
        options.connections as u64,
    );
    summary.count(
        "concurrency",
        "handshakes at once",
        options.concurrency as u64,
    );
    summary.count("accounts", "accounts", accounts.len() as u64);
    summary.field(
        "login",
        "login",
        if options.password_login {
            "password"
        } else {
            "resume"
        },
        if options.password_login {
            "PasswordLogin (Argon2id)"
        } else {
            "Resume"
        },
    );
    summary.count("endpoints", "UDP endpoints", target.endpoint_count() as u64);
    summary.section("results");
    summary.count("open", "connections opened", open as u64);
    summary.duration("elapsed", "wall-clock time", opened.elapsed);
    summary.rate(
        "rate",
        "connections / s",
        open as f64 / opened.elapsed.as_secs_f64().max(f64::EPSILON),
        "conn/s",
    );
    summary.latency("connect", "handshake + Hello → Welcome", &opened.connect);
    cpu.report(&mut summary, open as u64, "connection");
    if hold > Duration::ZERO {
        summary.count("still_up", "still up after holding", still_up as u64);
    }
    summary.count("errors", "failed connections", opened.errors.total());
    summary.errors("error_kinds", &opened.errors);
    if open < options.connections {
        summary.fail(format!(
            "{} of {} connections failed",
            options.connections - open,
            options.connections
        ));
    }
    Ok(summary)
}
