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

/// Who may create accounts with `Register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone who can reach the server (the default: customers sign up themselves).
    #[default]
    Open,
    /// Only the operator creates accounts (`kanald user add`).
    Closed,
}

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
    /// The database: a SQLite file, relative to the data directory.
    /// Default: `kanal.db`.
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], kanal_proto::DEFAULT_PORT)),
            registration: Registration::Open,
            database: "kanal.db".into(),
            tls_cert: "cert.pem".into(),
            tls_key: "key.pem".into(),
            max_connections: 20_000,
            idle_timeout_secs: 60,
        }
    }
}

impl Config {
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
        if self.database.contains("://") {
            return Err(ConfigError::Invalid {
                key: "database",
                problem: format!(
                    "`{}`: only a SQLite file path is supported in this version",
                    self.database
                ),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "max_connections",
                problem: "must be at least 1".into(),
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

# Who may create accounts: "open" (anyone) or "closed" (only `kanald user add`).
registration = "{registration}"

# SQLite database file, relative to this directory.
database = "{database}"

# TLS certificate chain and private key (PEM), relative to this directory.
# `kanald init` generated a self-signed pair; replace them with your own.
tls_cert = "{cert}"
tls_key = "{key}"

# Most simultaneous client connections.
max_connections = {max_connections}

# Seconds without traffic before a connection is dropped.
idle_timeout_secs = {idle}
"#,
            domain = self.domain,
            listen = self.listen,
            registration = match self.registration {
                Registration::Open => "open",
                Registration::Closed => "closed",
            },
            database = self.database,
            cert = self.tls_cert.display(),
            key = self.tls_key.display(),
            max_connections = self.max_connections,
            idle = self.idle_timeout_secs,
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
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = Config::parse("domian = \"x\"").expect_err("unknown key");
        assert!(unknown.to_string().contains("domian"), "{unknown}");
        let typed = Config::parse("listen = 7").expect_err("wrong type");
        assert!(typed.to_string().contains("listen"), "{typed}");
        let domain = Config::parse("domain = \"Not A Domain\"").expect_err("bad domain");
        assert!(domain.to_string().contains("`domain`"), "{domain}");
        let db = Config::parse("database = \"postgres://x\"").expect_err("unsupported");
        assert!(db.to_string().contains("`database`"), "{db}");
        let idle = Config::parse("idle_timeout_secs = 1099511627776").expect_err("too long");
        assert!(idle.to_string().contains("`idle_timeout_secs`"), "{idle}");
        assert!(idle.to_string().contains("1 to 86400"), "{idle}");
    }
}
