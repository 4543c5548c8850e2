//! `kanald.toml`: the server's configuration, read from the data directory.
//! Every key can also be given as a `kanald run` flag, which wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Name of the configuration file inside the data directory.
pub const CONFIG_FILE: &str = "kanald.toml";

/// Why the configuration was refused. Messages name the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// A key has a value Kanal cannot use.
    #[error("`{key}`: {problem}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

/// Longest idle timeout accepted, in seconds (a day): a silent
/// connection is held no longer than this.
pub const MAX_IDLE_TIMEOUT_SECS: u64 = 86_400;

/// Longest commit window, ms.
pub const MAX_COMMIT_WINDOW_MS: u32 = 100;

use super::database::Database;
use crate::node::limits::Policy;
pub use crate::node::limits::Registration;

/// The server's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The domain this server answers for; addresses are `local@domain`.
    /// Default: `localhost`.
    pub domain: String,
    /// UDP address QUIC listens on. Default: `0.0.0.0:7447`.
    pub listen: SocketAddr,
    /// Who may register. Default: `open`.
    pub registration: Registration,
    /// The database: a SQLite file, relative to the data directory, or a
    /// PostgreSQL database as a `postgres://` URL. Default: `kanal.db`.
    pub database: String,
    /// TLS certificate chain (PEM), relative to the data directory.
    /// Default: `cert.pem` (self-signed by `kanald init`).
    pub tls_cert: PathBuf,
    /// TLS private key (PEM), relative to the data directory. Default: `key.pem`.
    pub tls_key: PathBuf,
    /// Most simultaneous client connections; more are refused. Default: 20000.
    pub max_connections: usize,
    /// Seconds without traffic before a connection is dropped. Default: 60.
    pub idle_timeout_secs: u64,
    /// Milliseconds the writer lets commands gather after a commit before
    /// it starts the next: fewer, larger commits (fsyncs) under load, for
    /// at most this much more latency; 0: commit as soon as anything is
    /// queued. Nothing is acknowledged before it is durable either way.
    /// Default: 0.
    pub commit_window_ms: u32,
    /// Registrations one source address may make per hour; 0: unlimited.
    /// Default: 20.
    pub registrations_per_hour_per_source: u32,
    /// Registrations of all sources together per hour; 0: unlimited.
    /// Default: 3600.
    pub registrations_per_hour: u32,
    /// Messages (and new conversations) one party may send per second,
    /// sustained; 0: unlimited. Default: 50.
    pub sends_per_second_per_party: u32,
    /// Messages one party may send at once above that rate. Default: 200.
    pub send_burst_per_party: u32,
    /// Connections one source address may hold at once; 0: unlimited.
    /// Default: 1000.
    pub max_connections_per_source: u32,
    /// Connections one account may hold at once; 0: unlimited. Default: 32.
    pub max_connections_per_account: u32,
    /// The NATS server through which several nodes on one PostgreSQL
    /// database tell each other what they committed, e.g.
    /// `nats://127.0.0.1:4222`. Empty (the default): this node is alone.
    pub nats: String,
    /// The prefix of the NATS subjects the nodes use, so that several Kanal
    /// clusters can share one NATS. Empty (the default): `kanal.<domain>`.
    pub nats_subject_prefix: String,
    /// UDP address the device gateway listens on. Default: `0.0.0.0:7448`.
    pub device_listen: SocketAddr,
    /// Requests (open, append, poll) one device may make per minute,
    /// sustained; 0: unlimited. Default: 30.
    pub device_requests_per_minute: u32,
    /// Requests one device may make at once above that rate. Default: 10.
    pub device_request_burst: u32,
    /// Hours an agent's message waits in a device's mailbox. Default: 168.
    pub device_mail_expiry_hours: u32,
    /// Device handshakes per second above which the gateway first asks
    /// every sender to prove its address (a cookie). Default: 500.
    pub device_cookie_threshold: u32,
    /// UDP address other servers connect to (`kanal-fed/1`, FEDERATION.md).
    /// Default: `0.0.0.0:7449`.
    pub federation_listen: SocketAddr,
    /// Hours a transaction toward a peer is retried before its sender is
    /// told it failed; fractions allowed (0.5: half an hour). Default: 120
    /// (5 days).
    pub federation_horizon_hours: f64,
    /// Transactions a second one peer may have this server apply, in
    /// bursts of as many; past it, this server reads the peer's stream
    /// more slowly (the peer waits, nothing is lost). 0: no limit.
    /// Default: 20,000.
    pub federation_transactions_per_second_per_peer: u32,
    /// Trust a server that is not a configured peer when its certificate
    /// chains to a trusted root and is valid for its domain (WebPKI), and
    /// find it by DNS SRV. Configured peers keep their pinned
    /// fingerprint. Default: false (configured peers only).
    pub federation_webpki: bool,
    /// Extra roots WebPKI trusts (PEM certificates), relative to the data
    /// directory, e.g. a company's own authority. Empty (the default):
    /// none.
    pub federation_ca_file: PathBuf,
    /// Whether WebPKI trusts the usual public roots (Mozilla's, as the
    /// `webpki-roots` crate ships them) besides `federation_ca_file`.
    /// Default: true.
    pub federation_public_roots: bool,
    /// The DNS server that finds peers (`_kanal._udp.DOMAIN` SRV, then the
    /// target's A/AAAA), as `IP` or `IP:PORT`. Empty (the default): the
    /// system's (`/etc/resolv.conf`).
    pub federation_dns: String,
    /// Minutes a delivery toward a server that is not a configured peer
    /// (found by DNS) stays up with nothing to deliver; then its
    /// connection is closed and its state forgotten, until this server
    /// has something for it again. A delivery left with only given-up
    /// transactions that failed this long rests too, until that server
    /// connects. Fractions allowed. Default: 10.
    pub federation_idle_peer_minutes: f64,
}

impl Default for Config {
    fn default() -> Self {
        let policy = Policy::default();
        Self {
            domain: "localhost".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], kanal_proto::DEFAULT_PORT)),
            registration: Registration::Open,
            database: "kanal.db".into(),
            tls_cert: "cert.pem".into(),
            tls_key: "key.pem".into(),
            max_connections: 20_000,
            idle_timeout_secs: 60,
            commit_window_ms: 0,
            registrations_per_hour_per_source: policy.registrations_per_hour_per_source,
            registrations_per_hour: policy.registrations_per_hour,
            sends_per_second_per_party: policy.sends_per_second_per_party,
            send_burst_per_party: policy.send_burst_per_party,
            max_connections_per_source: policy.max_connections_per_source,
            max_connections_per_account: policy.max_connections_per_account,
            nats: String::new(),
            nats_subject_prefix: String::new(),
            device_listen: SocketAddr::from(([0, 0, 0, 0], kanal_proto::DEFAULT_DEVICE_PORT)),
            device_requests_per_minute: 30,
            device_request_burst: 10,
            device_mail_expiry_hours: 168,
            device_cookie_threshold: 500,
            federation_listen: SocketAddr::from((
                [0, 0, 0, 0],
                kanal_proto::DEFAULT_FEDERATION_PORT,
            )),
            federation_horizon_hours: 120.0,
            federation_transactions_per_second_per_peer: 20_000,
            federation_webpki: false,
            federation_ca_file: PathBuf::new(),
            federation_public_roots: true,
            federation_dns: String::new(),
            federation_idle_peer_minutes: 10.0,
        }
    }
}

impl Config {
    /// The database `database` names, for a server of `data_dir`.
    pub fn database_in(&self, data_dir: &Path) -> Result<Database, ConfigError> {
        Database::parse(&self.database, data_dir).ok_or_else(|| ConfigError::Invalid {
            key: "database",
            problem: format!(
                "`{}`: neither a SQLite file path nor a postgres:// URL",
                self.database
            ),
        })
    }

    /// The writer's commit window (`commit_window_ms`).
    pub fn commit_window(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.commit_window_ms))
    }

    /// How long a transaction toward a peer is retried, ms.
    pub fn federation_horizon_ms(&self) -> i64 {
        // Validated: above 0, at most a year.
        (self.federation_horizon_hours * 3_600_000.0) as i64
    }

    /// How long a delivery toward a peer that is not configured idles
    /// before it is dropped (`federation_idle_peer_minutes`).
    pub fn federation_idle_peer(&self) -> std::time::Duration {
        // Validated: above 0, at most a day.
        std::time::Duration::from_secs_f64(self.federation_idle_peer_minutes * 60.0)
    }

    /// The DNS server `federation_dns` names (`None`: the system's).
    pub fn federation_dns_server(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.federation_dns.is_empty() {
            return Ok(None);
        }
        let text = self.federation_dns.as_str();
        text.parse::<SocketAddr>()
            .or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "federation_dns",
                problem: format!(
                    "`{text}`: not an IP address with an optional port (e.g. \"127.0.0.1:5353\", \
                     or \"::1\" for port 53); leave it empty for the system's resolver"
                ),
            })
    }

    /// What the node lets clients do, from these keys.
    pub fn policy(&self) -> Policy {
        Policy {
            registration: self.registration,
            registrations_per_hour_per_source: self.registrations_per_hour_per_source,
            registrations_per_hour: self.registrations_per_hour,
            sends_per_second_per_party: self.sends_per_second_per_party,
            send_burst_per_party: self.send_burst_per_party,
            max_connections_per_source: self.max_connections_per_source,
            max_connections_per_account: self.max_connections_per_account,
        }
    }

    /// Reads `kanald.toml` from `data_dir`; defaults when the file is absent.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path, message },
            other => other,
        })
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from(CONFIG_FILE),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        kanal_proto::address::validate_domain(&self.domain).map_err(|e| ConfigError::Invalid {
            key: "domain",
            problem: e.to_string(),
        })?;
        let database = self.database_in(Path::new(""))?;
        if !self.nats.is_empty() {
            if !matches!(database, Database::Postgres(_)) {
                return Err(ConfigError::Invalid {
                    key: "nats",
                    problem: "several nodes share a PostgreSQL database: set `database` to a \
                              postgres:// URL, or leave `nats` empty for one node"
                        .into(),
                });
            }
            if self
                .nats_subject_prefix
                .split('.')
                .any(|token| token.is_empty() || token.contains(['*', '>', ' ']))
                && !self.nats_subject_prefix.is_empty()
            {
                return Err(ConfigError::Invalid {
                    key: "nats_subject_prefix",
                    problem: format!(
                        "`{}`: not a NATS subject (dot-separated tokens without spaces or \
                         wildcards)",
                        self.nats_subject_prefix
                    ),
                });
            }
            if !self.nats.starts_with("nats://") && !self.nats.starts_with("tls://") {
                return Err(ConfigError::Invalid {
                    key: "nats",
                    problem: format!("`{}`: not a nats:// or tls:// URL", self.nats),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "max_connections",
                problem: "must be at least 1".into(),
            });
        }
        if self.commit_window_ms > MAX_COMMIT_WINDOW_MS {
            return Err(ConfigError::Invalid {
                key: "commit_window_ms",
                problem: format!(
                    "{} is out of range: 0 to {MAX_COMMIT_WINDOW_MS}",
                    self.commit_window_ms
                ),
            });
        }
        if !(1..=MAX_IDLE_TIMEOUT_SECS).contains(&self.idle_timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "idle_timeout_secs",
                problem: format!(
                    "{} is out of range: 1 to {MAX_IDLE_TIMEOUT_SECS} (a day)",
                    self.idle_timeout_secs
                ),
            });
        }
        if self.device_requests_per_minute > 0 && self.device_request_burst == 0 {
            return Err(ConfigError::Invalid {
                key: "device_request_burst",
                problem: "must be at least 1 while device_requests_per_minute limits requests"
                    .into(),
            });
        }
        if self.device_mail_expiry_hours == 0 {
            return Err(ConfigError::Invalid {
                key: "device_mail_expiry_hours",
                problem: "must be at least 1".into(),
            });
        }
        if self.device_listen == self.listen && self.listen.port() != 0 {
            return Err(ConfigError::Invalid {
                key: "device_listen",
                problem: format!(
                    "{} is `listen` already: give devices a port of their own",
                    self.device_listen
                ),
            });
        }
        if self.federation_listen.port() != 0
            && (self.federation_listen == self.listen
                || self.federation_listen == self.device_listen)
        {
            return Err(ConfigError::Invalid {
                key: "federation_listen",
                problem: format!(
                    "{} is taken by `listen` or `device_listen`: give servers a port of their own",
                    self.federation_listen
                ),
            });
        }
        let horizon = self.federation_horizon_hours;
        if !(horizon.is_finite() && horizon > 0.0 && horizon <= 24.0 * 365.0) {
            return Err(ConfigError::Invalid {
                key: "federation_horizon_hours",
                problem: format!("{horizon} is not a number of hours above 0 and at most a year"),
            });
        }
        let idle = self.federation_idle_peer_minutes;
        if !(idle.is_finite() && idle > 0.0 && idle <= 24.0 * 60.0) {
            return Err(ConfigError::Invalid {
                key: "federation_idle_peer_minutes",
                problem: format!("{idle} is not a number of minutes above 0 and at most a day"),
            });
        }
        self.federation_dns_server()?;
        if !self.federation_webpki && !self.federation_ca_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "federation_ca_file",
                problem: "roots are trusted only with `federation_webpki = true`: set it, or \
                          leave `federation_ca_file` empty"
                    .into(),
            });
        }
        if self.federation_webpki
            && !self.federation_public_roots
            && self.federation_ca_file.as_os_str().is_empty()
        {
            return Err(ConfigError::Invalid {
                key: "federation_public_roots",
                problem: "with it false and no `federation_ca_file`, WebPKI trusts no root: \
                          name your roots in `federation_ca_file`, or set \
                          `federation_webpki = false`"
                    .into(),
            });
        }
        if self.sends_per_second_per_party > 0 && self.send_burst_per_party == 0 {
            return Err(ConfigError::Invalid {
                key: "send_burst_per_party",
                problem: "must be at least 1 while sends_per_second_per_party limits sends".into(),
            });
        }
        Ok(())
    }

    /// The configuration file `kanald init` writes: every key, documented.
    pub fn render(&self) -> String {
        format!(
            r#"# kanald configuration. Every key is optional; shown with its value.
# Each key can also be passed to `kanald run` as a flag (--domain, --listen, ...).

# The domain this server answers for. Addresses are local@domain.
domain = "{domain}"

# UDP address QUIC listens on.
listen = "{listen}"

# Who may create accounts: "open" (anyone), "invite" (whoever has a code
# from `kanald invite add`) or "closed" (only `kanald user add`).
registration = "{registration}"

# Registrations one source address (IPv6: its /64) may make per hour, and
# all sources together; 0 means unlimited. Refused with RATE_LIMITED.
registrations_per_hour_per_source = {per_source}
registrations_per_hour = {per_hour}

# Messages and new conversations one party may send per second, sustained,
# and at once above that; 0 means unlimited. Refused with RATE_LIMITED.
sends_per_second_per_party = {send_rate}
send_burst_per_party = {send_burst}

# The database: a SQLite file, relative to this directory, or a PostgreSQL
# database, e.g. "postgres://kanal:PASSWORD@db.example:5432/kanal".
database = "{database}"

# TLS certificate chain and private key (PEM), relative to this directory.
# `kanald init` generated a self-signed pair; replace them with your own.
tls_cert = "{cert}"
tls_key = "{key}"

# Most simultaneous client connections, in all, from one source address
# (IPv6: its /64), and of one account; 0 means unlimited for the last two.
max_connections = {max_connections}
max_connections_per_source = {per_source_connections}
max_connections_per_account = {per_account_connections}

# Seconds without traffic before a connection is dropped.
idle_timeout_secs = {idle}

# Milliseconds the writer lets commands gather after a commit before it
# starts the next (0 to 100): fewer fsyncs under load, for at most this
# much more latency. 0: commit as soon as anything is queued.
commit_window_ms = {commit_window}

# Several nodes on one PostgreSQL database tell each other what they
# committed through NATS, e.g. "nats://127.0.0.1:4222". Empty: one node.
nats = "{nats}"
# The prefix of their NATS subjects; empty: "kanal.<domain>".
nats_subject_prefix = "{nats_subject_prefix}"

# Devices (proto/DEVICES.md): the UDP address of the device gateway, how
# many requests one device may make per minute (0: unlimited) and at once,
# how many hours an agent's reply waits in a device's mailbox, and the
# handshakes per second above which senders must first prove their address.
device_listen = "{device_listen}"
device_requests_per_minute = {device_rate}
device_request_burst = {device_burst}
device_mail_expiry_hours = {device_expiry}
device_cookie_threshold = {device_cookies}

# Federation (proto/FEDERATION.md): the UDP address other servers connect
# to, and how many hours a transaction toward an unreachable peer is
# retried before its sender is told it failed.
federation_listen = "{federation_listen}"
federation_horizon_hours = {federation_horizon}
# Transactions a second one peer may have applied here (0: no limit); past
# it the peer is read more slowly.
federation_transactions_per_second_per_peer = {federation_rate}
# Trust by WebPKI: a server that is not a configured peer (`kanald peer
# add`) is trusted when its certificate chains to a trusted root and is
# valid for its domain; it is found by DNS SRV (_kanal._udp.DOMAIN). This
# server's own tls_cert must then be valid for its domain. The roots: the
# usual public ones (federation_public_roots) and those in
# federation_ca_file (PEM, relative to this directory; empty: none).
federation_webpki = {federation_webpki}
federation_ca_file = "{federation_ca_file}"
federation_public_roots = {federation_public_roots}
# The DNS server that finds peers, "IP" or "IP:PORT"; empty: the system's.
federation_dns = "{federation_dns}"
# Minutes a delivery toward a server that is not a configured peer stays up
# with nothing to deliver; then its connection is closed and its state
# forgotten until there is something for it again. One left with only
# given-up transactions rests after failing this long, until that server
# connects.
federation_idle_peer_minutes = {federation_idle_peer}
"#,
            domain = self.domain,
            listen = self.listen,
            registration = self.registration.name(),
            per_source = self.registrations_per_hour_per_source,
            per_hour = self.registrations_per_hour,
            send_rate = self.sends_per_second_per_party,
            send_burst = self.send_burst_per_party,
            database = self.database,
            cert = self.tls_cert.display(),
            key = self.tls_key.display(),
            max_connections = self.max_connections,
            per_source_connections = self.max_connections_per_source,
            per_account_connections = self.max_connections_per_account,
            idle = self.idle_timeout_secs,
            commit_window = self.commit_window_ms,
            nats = self.nats,
            nats_subject_prefix = self.nats_subject_prefix,
            device_listen = self.device_listen,
            device_rate = self.device_requests_per_minute,
            device_burst = self.device_request_burst,
            device_expiry = self.device_mail_expiry_hours,
            device_cookies = self.device_cookie_threshold,
            federation_listen = self.federation_listen,
            federation_horizon = self.federation_horizon_hours,
            federation_rate = self.federation_transactions_per_second_per_peer,
            federation_webpki = self.federation_webpki,
            federation_ca_file = self.federation_ca_file.display(),
            federation_public_roots = self.federation_public_roots,
            federation_dns = self.federation_dns,
            federation_idle_peer = self.federation_idle_peer_minutes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_defaults_parse_back() {
        let config = Config::parse(&Config::default().render()).expect("valid");
        assert_eq!(config.domain, "localhost");
        assert_eq!(config.listen.port(), 7447);
        assert_eq!(config.policy(), Policy::default());
        let invite = Config::parse("registration = \"invite\"").expect("invite mode");
        assert_eq!(invite.registration, Registration::Invite);
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = Config::parse("domian = \"x\"").expect_err("unknown key");
        assert!(unknown.to_string().contains("domian"), "{unknown}");
        let typed = Config::parse("listen = 7").expect_err("wrong type");
        assert!(typed.to_string().contains("listen"), "{typed}");
        let domain = Config::parse("domain = \"Not A Domain\"").expect_err("bad domain");
        assert!(domain.to_string().contains("`domain`"), "{domain}");
        let db = Config::parse("database = \"mysql://x\"").expect_err("unsupported");
        assert!(db.to_string().contains("`database`"), "{db}");
        assert!(db.to_string().contains("postgres://"), "{db}");
        Config::parse("database = \"postgres://127.0.0.1/kanal\"").expect("postgres");
        let idle = Config::parse("idle_timeout_secs = 1099511627776").expect_err("too long");
        assert!(idle.to_string().contains("`idle_timeout_secs`"), "{idle}");
        assert!(idle.to_string().contains("1 to 86400"), "{idle}");
        let window = Config::parse("commit_window_ms = 101").expect_err("too long");
        assert!(
            window.to_string().contains("`commit_window_ms`"),
            "{window}"
        );
        assert!(window.to_string().contains("0 to 100"), "{window}");
        let window = Config::parse("commit_window_ms = 2").expect("a window");
        assert_eq!(window.commit_window(), std::time::Duration::from_millis(2));
        let burst = Config::parse("send_burst_per_party = 0").expect_err("no burst");
        assert!(
            burst.to_string().contains("`send_burst_per_party`"),
            "{burst}"
        );
        let mode = Config::parse("registration = \"maybe\"").expect_err("unknown mode");
        assert!(mode.to_string().contains("registration"), "{mode}");
        let alone = Config::parse("nats = \"nats://127.0.0.1:4222\"").expect_err("on SQLite");
        assert!(alone.to_string().contains("`nats`"), "{alone}");
        assert!(alone.to_string().contains("PostgreSQL"), "{alone}");
        let pg = "database = \"postgres://127.0.0.1/kanal\"\n";
        Config::parse(&format!("{pg}nats = \"nats://127.0.0.1:4222\"")).expect("a cluster");
        let scheme = Config::parse(&format!("{pg}nats = \"http://x\"")).expect_err("scheme");
        assert!(scheme.to_string().contains("`nats`"), "{scheme}");
        let prefix = Config::parse(&format!(
            "{pg}nats = \"nats://x:4222\"\nnats_subject_prefix = \"kanal.*\""
        ))
        .expect_err("wildcard prefix");
        assert!(
            prefix.to_string().contains("`nats_subject_prefix`"),
            "{prefix}"
        );
    }

    #[test]
    fn every_key_survives_being_written_and_read_back() {
        // `kanald init` writes the configuration it is given: a key the
        // template forgot would fall back to its default unseen.
        let config = Config {
            commit_window_ms: 3,
            federation_horizon_hours: 0.5,
            federation_webpki: true,
            federation_ca_file: "roots.pem".into(),
            federation_public_roots: false,
            federation_dns: "127.0.0.1:5353".into(),
            federation_idle_peer_minutes: 0.25,
            ..Config::default()
        };
        let read = Config::parse(&config.render()).expect("valid");
        assert_eq!(format!("{read:?}"), format!("{config:?}"));
    }

    #[test]
    fn the_idle_time_of_peers_found_by_dns_is_checked() {
        let defaults = Config::parse("").expect("defaults");
        assert_eq!(
            defaults.federation_idle_peer(),
            std::time::Duration::from_secs(600)
        );
        for bad in ["0", "-1", "1441", "nan"] {
            let refused =
                Config::parse(&format!("federation_idle_peer_minutes = {bad}")).expect_err(bad);
            assert!(
                refused
                    .to_string()
                    .contains("`federation_idle_peer_minutes`"),
                "{refused}"
            );
        }
    }

    #[test]
    fn federation_trust_and_discovery_keys_are_checked() {
        let defaults = Config::parse("").expect("defaults");
        assert!(!defaults.federation_webpki);
        assert!(defaults.federation_public_roots);
        assert_eq!(defaults.federation_dns_server().expect("valid"), None);
        let dns = Config::parse("federation_dns = \"127.0.0.1:5353\"").expect("ip:port");
        assert_eq!(
            dns.federation_dns_server().expect("valid"),
            Some(SocketAddr::from(([127, 0, 0, 1], 5353)))
        );
        let bare = Config::parse("federation_dns = \"::1\"").expect("bare ip");
        assert_eq!(
            bare.federation_dns_server().expect("valid"),
            Some("[::1]:53".parse().expect("address"))
        );
        let name = Config::parse("federation_dns = \"dns.example\"").expect_err("a name");
        assert!(name.to_string().contains("`federation_dns`"), "{name}");
        assert!(name.to_string().contains("dns.example"), "{name}");
        let port = Config::parse("federation_dns = \"127.0.0.1:99999\"").expect_err("port");
        assert!(port.to_string().contains("`federation_dns`"), "{port}");
        let unused = Config::parse("federation_ca_file = \"ca.pem\"").expect_err("webpki off");
        assert!(
            unused.to_string().contains("`federation_ca_file`"),
            "{unused}"
        );
        assert!(unused.to_string().contains("federation_webpki"), "{unused}");
        Config::parse("federation_webpki = true\nfederation_ca_file = \"ca.pem\"")
            .expect("roots with webpki");
        let none = Config::parse("federation_webpki = true\nfederation_public_roots = false")
            .expect_err("no root");
        assert!(
            none.to_string().contains("`federation_public_roots`"),
            "{none}"
        );
        Config::parse(
            "federation_webpki = true\nfederation_public_roots = false\n\
             federation_ca_file = \"ca.pem\"",
        )
        .expect("private roots only");
        let typed = Config::parse("federation_webpki = \"yes\"").expect_err("not a bool");
        assert!(typed.to_string().contains("federation_webpki"), "{typed}");
        let rendered = Config::parse(
            &Config {
                federation_webpki: true,
                federation_ca_file: "roots.pem".into(),
                federation_dns: "127.0.0.1:53".into(),
                ..Config::default()
            }
            .render(),
        )
        .expect("rendered keys parse back");
        assert!(rendered.federation_webpki);
        assert_eq!(rendered.federation_ca_file, PathBuf::from("roots.pem"));
        assert_eq!(rendered.federation_dns, "127.0.0.1:53");
    }
}
