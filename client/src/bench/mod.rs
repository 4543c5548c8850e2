//! The `kanal-bench` command line: global options, the scenarios, and how a
//! run ends. Each scenario lives in its own file; `setup` holds what they
//! share (the server, UDP endpoints, accounts, opening connections),
//! `report` the histograms, error tallies, the progress bar and the
//! summary, and `procfs` the memory and CPU figures read from `/proc`.
//!
//! Against a local release server (same host, so `--server-pid` works):
//!
//! ```text
//! kanald --data-dir /tmp/bench-data run --listen 127.0.0.1:7447 &
//! export KANAL_PIN=$(kanald --data-dir /tmp/bench-data fingerprint)
//! kanal-bench throughput --clients 16 --duration 10 --server-pid $!
//! kanal-bench latency --rate 10000 --duration 10 --server-pid $!
//! kanal-bench idle --connections 10000 --server-pid $!
//! kanal-bench storm --connections 10000 --concurrency 64 --server-pid $!
//! kanal-bench sync --events 10000
//! ```
//!
//! Every run registers a few accounts under a fresh random prefix (Register
//! costs the server an Argon2id hash) and opens its many connections by
//! resuming their sessions. Connections share a few UDP endpoints
//! (`--per-endpoint`, 1000 by default) through [`kanal_client::ClientConfig::endpoint`].
//! A missed performance target is reported, not fatal; a correctness
//! failure (lost or misordered messages, failed connections) makes the run
//! exit with status 1.

mod idle;
mod latency;
mod procfs;
mod report;
mod setup;
mod storm;
mod sync;
mod throughput;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kanal_client::Fingerprint;

use crate::bench::report::Summary;
use crate::bench::setup::Target;

/// Load generator for a running kanald: throughput, latency, idle memory,
/// connection storms and resynchronisation, over real QUIC.
#[derive(Debug, Parser)]
#[command(name = "kanal-bench", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Options every scenario takes.
    #[command(flatten)]
    pub(crate) global: Global,
    /// The scenario to run.
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

/// Options every scenario takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The server under test, `host:port`
    #[arg(
        long,
        env = "KANAL_SERVER",
        global = true,
        default_value = "127.0.0.1:7447"
    )]
    pub(crate) server: String,
    /// SHA-256 of the server's certificate, as `kanald fingerprint` prints it.
    /// Without it, the certificate must chain to a public CA.
    #[arg(long, env = "KANAL_PIN", global = true)]
    pub(crate) pin: Option<Fingerprint>,
    /// TLS server name to expect [default: the host part of --server]
    #[arg(long, global = true)]
    pub(crate) server_name: Option<String>,
    /// Print one JSON object with the results on stdout instead of a table
    /// (and no progress bar)
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Seconds of measured load (throughput, latency) or of holding the
    /// connections open (idle, storm) [default: per scenario]
    #[arg(long, global = true)]
    pub(crate) duration: Option<f64>,
    /// Sending connections (throughput, latency) [default: 16]
    #[arg(long, global = true)]
    pub(crate) clients: Option<usize>,
    /// The server's process id (same host): its memory (idle) and CPU time
    /// are read from /proc/PID
    #[arg(long, global = true)]
    pub(crate) server_pid: Option<u32>,
    /// Connections that share one UDP socket (QUIC endpoint)
    #[arg(long, global = true, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) per_endpoint: u32,
}

impl Global {
    /// `--duration`, or `default` seconds.
    pub(crate) fn duration_or(&self, default: f64) -> Duration {
        Duration::from_secs_f64(self.duration.unwrap_or(default).max(0.0))
    }
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// Maximum durable throughput: many senders with many requests in
    /// flight; counts `Sent` acks (each one fsync'd)
    Throughput(throughput::Options),
    /// End-to-end latency at a fixed (open-loop) send rate: from the
    /// scheduled send time to the receiver's event
    Latency(latency::Options),
    /// Server memory per idle connection: opens N connections that each say
    /// Hello and Sync, and reads the server's RSS before and after
    Idle(idle::Options),
    /// Connect/login storm: N QUIC handshakes + Resume Hellos, C at a time
    Storm(storm::Options),
    /// Reconnect and resynchronise a client that missed N events
    Sync(sync::Options),
}

/// Runs `kanal-bench` with the process's arguments; returns its exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KANAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&cli));
    // Connections still open are closed with the endpoints; do not wait for
    // stray tasks (reconnect timers) of clients being dropped.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(summary) => {
            summary.print(cli.global.json);
            if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<Summary> {
    let target = Target::new(&cli.global).await?;
    let outcome = match &cli.scenario {
        Scenario::Throughput(options) => throughput::run(&target, &cli.global, options).await,
        Scenario::Latency(options) => latency::run(&target, &cli.global, options).await,
        Scenario::Idle(options) => idle::run(&target, &cli.global, options).await,
        Scenario::Storm(options) => storm::run(&target, &cli.global, options).await,
        Scenario::Sync(options) => sync::run(&target, &cli.global, options).await,
    };
    target.shutdown().await;
    outcome
}
