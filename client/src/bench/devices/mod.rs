//! Devices: a fleet of the real firmware session (`kanal-firmware`) over
//! real UDP against a running gateway.
//!
//! - `device-keys` writes a fleet's registration CSV (for
//!   `kanald device add --csv`); every key comes from `--seed` and the
//!   device's number, so the fleet run needs only the seed again.
//! - `devices` ([`fleet`]) opens N sessions, each opening a conversation
//!   and then polling its mailbox, and reports first contact, the server's
//!   memory per session and its CPU per open and per poll.
//! - `device-flood` ([`flood`]) sends what the gateway must refuse and
//!   reports its CPU per refused datagram.
//! - `mqtt-idle` ([`mqtt`]) holds the same fleet as MQTT clients of a
//!   broker, for the side-by-side figures.
//!
//! ```text
//! kanal-bench device-keys --count 100000 --seed 7 --out /tmp/fleet.csv
//! kanald --data-dir /tmp/bench-data device add --csv /tmp/fleet.csv
//! kanal-bench devices --count 20000 --seed 7 \
//!   --server-key $(kanald --data-dir /tmp/bench-data device server-key) --server-pid $PID
//! kanal-bench device-flood --kind initiations --rate 400 \
//!   --server-key $(kanald --data-dir /tmp/bench-data device server-key) --server-pid $PID
//! ```
//!
//! Devices share UDP sockets, [`PER_ADDRESS`] to a socket, each socket on
//! an address of its own in 127.0.0.0/8 (as devices behind different NATs
//! would be): the gateway limits handshakes per source address.

pub(crate) mod fleet;
pub(crate) mod flood;
pub(crate) mod mqtt;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use sha2::{Digest as _, Sha256};

use crate::bench::report::Summary;

/// Devices sharing one socket (and so one source address); below the
/// gateway's burst of handshakes per address.
pub(crate) const PER_ADDRESS: usize = 32;

/// The fleet's device number `i`'s secret key: SHA-256 of the seed and the
/// number (the bench's convention, nothing the protocol knows).
pub(crate) fn secret(seed: u64, i: usize) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"kanal-bench device");
    hash.update(seed.to_le_bytes());
    hash.update((i as u64).to_le_bytes());
    hash.finalize().into()
}

/// Device `i`'s serial.
pub(crate) fn serial(i: usize) -> String {
    format!("FLEET-{i:06}")
}

/// The `n`-th source address of block `block` (1..=255) in 127.0.0.0/8,
/// port 0.
pub(crate) fn source(block: u8, n: usize) -> SocketAddr {
    // .0 and .255 of each /24 are left out.
    let hi = u8::try_from(n / 254).unwrap_or(u8::MAX);
    let lo = u8::try_from(n % 254 + 1).unwrap_or(1);
    SocketAddr::from((Ipv4Addr::new(127, block, hi, lo), 0))
}

/// The server's device key, as `kanald device server-key` prints it.
pub(crate) fn parse_key(hex_key: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_key.trim()).context("--server-key is not hex")?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .ok()
        .context("--server-key must be 32 bytes (64 hex digits)")
}

/// Options of `device-keys`.
#[derive(Debug, Args)]
pub(crate) struct KeysOptions {
    /// Devices to register
    #[arg(long, default_value_t = 100_000)]
    pub(crate) count: usize,
    /// Seed of the fleet's keys (the same for `devices`)
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// The inbox their conversations go to
    #[arg(long, default_value = "support")]
    pub(crate) inbox: String,
    /// The model every device is registered as
    #[arg(long, default_value = "KB-1")]
    pub(crate) model: String,
    /// Where to write the CSV
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// Writes the registration CSV of a fleet.
pub(crate) fn keys(options: &KeysOptions) -> Result<Summary> {
    let started = std::time::Instant::now();
    let mut csv = String::with_capacity(options.count * 110 + 40);
    csv.push_str("serial,model,public_key,inbox,owner\n");
    for i in 0..options.count {
        let public = x25519_dalek::x25519(
            secret(options.seed, i),
            x25519_dalek::X25519_BASEPOINT_BYTES,
        );
        csv.push_str(&format!(
            "{},{},{},{},\n",
            serial(i),
            options.model,
            hex::encode(public),
            options.inbox
        ));
    }
    std::fs::write(&options.out, csv)
        .with_context(|| format!("writing {}", options.out.display()))?;
    let mut summary = Summary::new("device-keys", "-", &options.out.display().to_string());
    summary.section("results");
    summary.count("devices", "devices written", options.count as u64);
    summary.field(
        "out",
        "file",
        options.out.display().to_string(),
        options.out.display().to_string(),
    );
    summary.duration("elapsed", "wall-clock time", started.elapsed());
    Ok(summary)
}
