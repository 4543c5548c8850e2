//! `device-flood`: what the gateway must refuse, at a fixed rate, and the
//! server's CPU per refused datagram.
//!
//! - `garbage`: random bytes of an initiation's length and type, so the
//!   gateway gets as far as checking mac1 (the cheapest refusal that is
//!   not a length check);
//! - `initiations`: valid-looking handshake initiations (a correct mac1)
//!   from keys the server does not know, each from a fresh key: below the
//!   cookie threshold each costs the gateway its Noise IK Diffie-Hellmans,
//!   above it a cookie reply and nothing else.
//!
//! The datagrams come from [`SOURCES`] addresses in 127.0.0.0/8 in turn;
//! the gateway's answers (cookie replies) are counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use kanal_firmware::profile::limits::MAX_DATAGRAM;
use kanal_firmware::profile::wire;
use kanal_firmware::{DeviceConfig, DeviceSession, Instant};
use rand::RngCore as _;
use rand_core::OsRng;
use tokio::net::UdpSocket;

use super::{parse_key, source};
use crate::bench::global::Global;
use crate::bench::procfs::CpuMeter;
use crate::bench::report::Summary;

/// Source addresses the flood comes from.
const SOURCES: usize = 64;

/// Sends per pacing tick.
const TICK: Duration = Duration::from_millis(10);

/// What to flood with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// Random bytes shaped as an initiation (wrong mac1)
    Garbage,
    /// Initiations with a correct mac1 from unknown keys
    Initiations,
}

/// Options of `device-flood`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// What to send
    #[arg(long, value_enum, default_value_t = Kind::Initiations)]
    pub(crate) kind: Kind,
    /// Datagrams per second
    #[arg(long, default_value_t = 400.0)]
    pub(crate) rate: f64,
    /// The gateway's UDP address
    #[arg(long, default_value = "127.0.0.1:7448")]
    pub(crate) gateway: SocketAddr,
    /// The gateway's public key, as `kanald device server-key` prints it
    #[arg(long, env = "KANAL_DEVICE_KEY")]
    pub(crate) server_key: String,
}

/// Runs the scenario.
pub(crate) async fn run(global: &Global, options: &Options) -> Result<Summary> {
    let server_key = parse_key(&options.server_key)?;
    let duration = global.duration_or(10.0);
    let rate = options.rate.max(1.0);
    let total = (rate * duration.as_secs_f64()).ceil() as usize;

    // Everything is made before the clock starts: an initiation costs the
    // bench two X25519s.
    let datagrams = make(options.kind, server_key, total)?;
    let mut sockets = Vec::with_capacity(SOURCES);
    for n in 0..SOURCES {
        let socket = UdpSocket::bind(source(4, n))
            .await
            .with_context(|| format!("binding {}", source(4, n)))?;
        sockets.push(Arc::new(socket));
    }
    let answers = Arc::new(AtomicU64::new(0));
    let mut listeners = tokio::task::JoinSet::new();
    for socket in &sockets {
        let (socket, answers) = (socket.clone(), answers.clone());
        listeners.spawn(async move {
            let mut buf = [0u8; MAX_DATAGRAM];
            while socket.recv_from(&mut buf).await.is_ok() {
                answers.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    // The server's own background (upkeep, registry reloads, live
    // sessions) over a window as long as the flood's, subtracted below.
    let idle = CpuMeter::start(global.server_pid);
    tokio::time::sleep(duration).await;
    let idle = idle.stop();

    let cpu = CpuMeter::start(global.server_pid);
    let started = tokio::time::Instant::now();
    let mut sent = 0usize;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate).ceil() as usize).min(total);
        while sent < due {
            let socket = &sockets[sent % SOURCES];
            // A full socket buffer drops it here instead of at the gateway.
            let _ = socket.send_to(&datagrams[sent], options.gateway).await;
            sent += 1;
        }
    }
    let elapsed = started.elapsed();
    // The last datagrams are handled within a tick of arriving.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = cpu.stop();
    listeners.abort_all();

    let mut summary = Summary::new("device-flood", &options.gateway.to_string(), "-");
    summary.section("setup");
    summary.field(
        "kind",
        "datagrams",
        format!("{:?}", options.kind).to_lowercase(),
        match options.kind {
            Kind::Garbage => "random bytes shaped as initiations",
            Kind::Initiations => "initiations from unknown keys (mac1 correct)",
        },
    );
    summary.rate("rate", "rate asked for", rate, "datagram/s");
    summary.count("sources", "source addresses", SOURCES as u64);
    summary.section("results");
    summary.count("sent", "datagrams sent", sent as u64);
    summary.duration("elapsed", "wall-clock time", elapsed);
    summary.count(
        "answers",
        "answers (cookie replies)",
        answers.load(Ordering::Relaxed),
    );
    cpu.report(&mut summary, sent as u64, "datagram");
    if let (Some(busy), Some(background)) = (cpu.server(), idle.server()) {
        // Scaled to the flood's window, which ran a little longer.
        let scale = cpu.wall().as_secs_f64() / idle.wall().as_secs_f64().max(f64::EPSILON);
        let net = (busy.as_secs_f64() - background.as_secs_f64() * scale).max(0.0);
        summary.duration(
            "server_idle_cpu",
            "server CPU idle, same window",
            background,
        );
        summary.field(
            "server_net_us_per_datagram",
            "server CPU per datagram, idle subtracted",
            (net * 1e7 / sent.max(1) as f64).round() / 10.0,
            format!("{:.1} µs", net * 1e6 / sent.max(1) as f64),
        );
    }
    Ok(summary)
}

/// `total` datagrams of `kind`.
fn make(kind: Kind, server_key: [u8; 32], total: usize) -> Result<Vec<Vec<u8>>> {
    let mut datagrams = Vec::with_capacity(total);
    let mut buf = [0u8; MAX_DATAGRAM];
    for _ in 0..total {
        match kind {
            Kind::Garbage => {
                // The length of an initiation carrying a 40-byte frame.
                let mut bytes = vec![0u8; wire::INITIATION_OVERHEAD + 40];
                rand::rng().fill_bytes(&mut bytes);
                bytes[0] = 1;
                bytes[1] = kanal_firmware::profile::DEVICE_PROFILE_VERSION;
                datagrams.push(bytes);
            }
            Kind::Initiations => {
                let mut secret = [0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                let mut session: DeviceSession<OsRng, 1> =
                    DeviceSession::new(DeviceConfig::new(secret, server_key), OsRng);
                session.open(Instant(0), "x", "let me in", &[])?;
                let len = session
                    .poll_transmit(Instant(0), &mut buf)?
                    .context("the session sent no initiation")?;
                datagrams.push(buf[..len].to_vec());
            }
        }
    }
    Ok(datagrams)
}
