//! The `kanal-bench` command line: the scenarios, and how a run ends. Each
//! scenario lives in its own file; `global` holds the options they all
//! take, `setup` what they share (the server, UDP endpoints, accounts,
//! opening connections), `report` the histograms, error tallies, the
//! progress bar and the summary, and `procfs` the memory and CPU figures
//! read from `/proc`.
//!
//! Against a local release server (same host, so `--server-pid` works):
//!
//! ```text
//! kanald --data-dir /tmp/bench-data run --listen 127.0.0.1:7447 \
//!   --registrations-per-hour-per-source 0 --sends-per-second-per-party 0 \
//!   --max-connections-per-source 0 --max-connections-per-account 0 &
//! export KANAL_PIN=$(kanald --data-dir /tmp/bench-data fingerprint)
//! kanal-bench throughput --clients 16 --duration 10 --server-pid $!
//! kanal-bench latency --rate 10000 --duration 10 --server-pid $!
//! kanal-bench idle --connections 10000 --server-pid $!
//! kanal-bench storm --connections 10000 --concurrency 64 --server-pid $!
//! kanal-bench sync --events 10000
//! ```
//!
//! `federation` needs two servers that are each other's peers, customers
//! on one and the agents of an inbox on the other: see [`federation`] and
//! `bench/federation.sh`.
//!
//! Devices go to the gateway's UDP port instead: see [`devices`].
//!
//! `abuse` runs against a server on its default limits instead: the
//! attacks are what those limits are for.
//!
//! Every run registers a few accounts under a fresh random prefix (Register
//! costs the server an Argon2id hash) and opens its many connections by
//! resuming their sessions. Connections share a few UDP endpoints
//! (`--per-endpoint`, 1000 by default) through [`kanal_client::ClientConfig::endpoint`].
//! A missed performance target is reported, not fatal; a correctness
//! failure (lost or misordered messages, failed connections) makes the run
//! exit with status 1.

mod abuse;
mod desk_report;
mod devices;
mod federation;
mod global;
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

use clap::{Parser, Subcommand};

use crate::bench::global::Global;
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
    /// One attack while a well-behaved pair converses: the pair's latency
    /// and losses, the server's peak memory and CPU
    Abuse(abuse::Options),
    /// Federation end to end: customers on server A write to an inbox of
    /// server B; throughput and latency to B's agents, with every message
    /// replicated back to A
    Federation(federation::Options),
    /// What a service-desk report costs: customers open tickets that an
    /// agent answers and resolves, then the agent asks for the report
    DeskReport(desk_report::Options),
    /// Writes a device fleet's registration CSV, for `kanald device add --csv`
    DeviceKeys(devices::KeysOptions),
    /// A fleet of device sessions (the real firmware session over UDP):
    /// each opens a conversation, then polls; first contact, server memory
    /// per session, CPU per open and per poll
    Devices(devices::fleet::Options),
    /// What the device gateway must refuse, at a fixed rate: its CPU per
    /// refused datagram
    DeviceFlood(devices::flood::Options),
    /// The same fleet as idle MQTT clients of a broker (Mosquitto): the
    /// broker's memory per client and the bytes of one report
    MqttIdle(devices::mqtt::Options),
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
        Scenario::Abuse(options) => abuse::run(&target, &cli.global, options).await,
        Scenario::DeskReport(options) => desk_report::run(&target, &cli.global, options).await,
        Scenario::Federation(options) => federation::run(&target, &cli.global, options).await,
        Scenario::DeviceKeys(options) => devices::keys(options),
        Scenario::Devices(options) => devices::fleet::run(&cli.global, options).await,
        Scenario::DeviceFlood(options) => devices::flood::run(&cli.global, options).await,
        Scenario::MqttIdle(options) => devices::mqtt::run(&cli.global, options).await,
    };
    target.shutdown().await;
    outcome
}
