//! `mqtt-idle`: the same fleet as `devices`, as MQTT clients of a broker
//! (Mosquitto, for the side-by-side figures in BENCHMARKS.md): N TCP
//! connections that each CONNECT, SUBSCRIBE to their mailbox topic and
//! PUBLISH one report (QoS 1, the report's text and diagnostics as the
//! payload), then stay idle.
//!
//! Reported: the broker's resident memory per connected client (with
//! `--broker-pid`) and the MQTT bytes of one report and its PUBACK, to set
//! beside a device session's. MQTT 3.1.1, plaintext: TLS would add its
//! record overhead (22 bytes per record for TLS 1.3 with an AEAD) and a
//! handshake of several kilobytes per connection.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use super::source;
use crate::bench::global::Global;
use crate::bench::procfs::rss_kib;
use crate::bench::report::{self, Summary};

/// Time for the broker's memory to settle before a reading.
const SETTLE: Duration = Duration::from_secs(2);

/// Connections set up at once.
const CONCURRENCY: usize = 64;

/// Clients per source address (well below the kernel's ephemeral ports
/// per address).
const PER_ADDRESS: usize = 5_000;

/// Options of `mqtt-idle`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// The broker, `host:port`
    #[arg(long, default_value = "127.0.0.1:1884")]
    pub(crate) broker: SocketAddr,
    /// Clients to connect and hold
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    /// The broker's process id (same host): its memory is read from /proc
    #[arg(long)]
    pub(crate) broker_pid: Option<u32>,
}

/// The report every client publishes: the same text and diagnostics a
/// simulated device opens its conversation with.
const REPORT: &[u8] = b"{\"topic\":\"filter\",\"text\":\"Filter clogged\",\"err\":\"E42\"}";

/// Runs the scenario.
pub(crate) async fn run(global: &Global, options: &Options) -> Result<Summary> {
    let hold = global.duration_or(5.0);
    let pid = options.broker_pid;
    if let Some(pid) = pid {
        rss_kib(pid).with_context(|| format!("reading the memory of broker process {pid}"))?;
    }
    tokio::time::sleep(SETTLE).await;
    let before = pid.and_then(rss_kib);

    let started = std::time::Instant::now();
    let mut clients = Vec::with_capacity(options.count);
    let mut connect = report::histogram();
    let mut exchange = None;
    // Addresses of a run of their own: the last run's ports may still be
    // in TIME_WAIT.
    let base = usize::from(rand::random::<u16>() % 60_000);
    let mut next = 0;
    while next < options.count {
        let batch: Vec<usize> = (next..options.count.min(next + CONCURRENCY)).collect();
        next += batch.len();
        let mut tasks = tokio::task::JoinSet::new();
        for i in batch {
            let broker = options.broker;
            let from = source(6, base + i / PER_ADDRESS);
            tasks.spawn(async move { client(broker, from, i).await });
        }
        while let Some(joined) = tasks.join_next().await {
            let (stream, elapsed, bytes) = joined.context("a client task failed")??;
            report::record(&mut connect, elapsed);
            exchange.get_or_insert(bytes);
            clients.push(stream);
        }
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let after = pid.and_then(rss_kib);
    tokio::time::sleep(hold).await;
    // Still connected: a read finds nothing waiting, or would block.
    let mut alive = 0u64;
    for stream in &clients {
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => alive += 1,
            _ => {}
        }
    }
    drop(clients);

    let mut summary = Summary::new("mqtt-idle", &options.broker.to_string(), "-");
    summary.section("results");
    summary.count("clients", "clients connected", options.count as u64);
    summary.count("alive", "still connected after holding", alive);
    summary.duration("elapsed", "wall-clock time", elapsed);
    summary.latency(
        "connect",
        "TCP + CONNECT + SUBSCRIBE + PUBLISH → PUBACK",
        &connect,
    );
    if let Some((publish, puback)) = exchange {
        summary.count("publish_bytes", "PUBLISH of the report, bytes", publish);
        summary.count("puback_bytes", "its PUBACK, bytes", puback);
    }
    if let (Some(before), Some(after)) = (before, after) {
        summary.kib("broker_rss_before", "broker RSS before", before as f64);
        summary.kib(
            "broker_rss_after",
            "broker RSS, all connected",
            after as f64,
        );
        summary.kib(
            "broker_per_client",
            "broker memory per client",
            after.saturating_sub(before) as f64 / options.count.max(1) as f64,
        );
    }
    if alive < options.count as u64 {
        summary.fail(format!(
            "{} of {} clients were disconnected",
            options.count as u64 - alive,
            options.count
        ));
    }
    Ok(summary)
}

/// Client `i`, from address `from`: connected, subscribed, its report acknowledged. Returns the
/// stream, how long that took, and the bytes of the PUBLISH and PUBACK.
async fn client(
    broker: SocketAddr,
    from: SocketAddr,
    i: usize,
) -> Result<(TcpStream, Duration, (u64, u64))> {
    let started = std::time::Instant::now();
    let socket = TcpSocket::new_v4()?;
    socket.bind(from)?;
    let mut stream = socket.connect(broker).await?;
    stream.set_nodelay(true)?;
    let id = format!("kb-{i:06}");

    // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 600 s.
    let mut variable = Vec::new();
    variable.extend_from_slice(&string(b"MQTT"));
    variable.extend_from_slice(&[4, 0x02, 0x02, 0x58]);
    variable.extend_from_slice(&string(id.as_bytes()));
    stream.write_all(&packet(0x10, &variable)).await?;
    expect(&mut stream, 0x20, "CONNACK").await?;

    // SUBSCRIBE to its mailbox, QoS 1.
    let mut variable = vec![0, 1];
    variable.extend_from_slice(&string(format!("devices/{id}/mail").as_bytes()));
    variable.push(1);
    stream.write_all(&packet(0x82, &variable)).await?;
    expect(&mut stream, 0x90, "SUBACK").await?;

    // PUBLISH the report, QoS 1, and wait for its PUBACK.
    let mut variable = string(format!("devices/{id}/report").as_bytes());
    variable.extend_from_slice(&[0, 2]);
    variable.extend_from_slice(REPORT);
    let publish = packet(0x32, &variable);
    stream.write_all(&publish).await?;
    let puback = expect(&mut stream, 0x40, "PUBACK").await?;
    Ok((
        stream,
        started.elapsed(),
        (publish.len() as u64, puback as u64),
    ))
}

/// An MQTT UTF-8 string: a 2-byte length, then the bytes.
fn string(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A control packet: its first byte, the remaining length (variable-length
/// integer), then `body`.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Reads one packet of type `kind` (the high nibble of `first`); returns
/// its length on the wire.
async fn expect(stream: &mut TcpStream, first: u8, what: &str) -> Result<usize> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    if head[0] & 0xf0 != first & 0xf0 {
        bail!("expected {what}, got packet type {:#x}", head[0]);
    }
    if head[1] & 0x80 != 0 {
        bail!("{what} longer than expected");
    }
    let mut body = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut body).await?;
    Ok(2 + body.len())
}
