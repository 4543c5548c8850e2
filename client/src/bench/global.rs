//! The options every `kanal-bench` scenario takes: the server under test,
//! how to report, and the load's common knobs.

use std::time::Duration;

use clap::Args;
use kanal_client::Fingerprint;

/// Options every scenario takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The server under test, `host:port`; several nodes of one cluster as
    /// `host:port,host:port,…` (connections go to them in turn)
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
