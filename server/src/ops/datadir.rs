//! The data directory: `kanald.toml`, the certificate pair, and the database.
//! `kanald init` (or the first `kanald run`) creates it with working defaults.

use std::path::{Path, PathBuf};

use crate::node::directory::{self, AdminError};
use crate::ops::certificate::{self as tls, TlsError};
use crate::ops::config::{CONFIG_FILE, Config};
use crate::ops::server::{Offline, StartError};

/// The inbox every new server has, so customers can write to `support@DOMAIN`.
pub const DEFAULT_INBOX: &str = "support";

/// Why initialisation failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory already holds a configuration.
    #[error("{0} is already initialised")]
    AlreadyInitialised(PathBuf),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate could not be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The database could not be created.
    #[error(transparent)]
    Start(#[from] Box<StartError>),
    /// The default inbox could not be created.
    #[error("default inbox: {0}")]
    Admin(#[from] AdminError),
}

/// File holding the QUIC stateless-reset key.
pub const RESET_KEY_FILE: &str = "reset.key";

/// The server's stateless-reset secret, created on first use. Keeping it
/// across restarts lets a restarted server reset its predecessor's
/// connections at once, so clients reconnect immediately instead of waiting
/// for their idle timeout. The key that authenticates connection ids is
/// derived from it too (`links/quic/endpoint.rs`): without that, the restarted server
/// would drop the old connections' packets before considering a reset.
pub fn reset_key(data_dir: &Path) -> std::io::Result<[u8; 64]> {
    secret_file(&data_dir.join(RESET_KEY_FILE), || {
        let mut key = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        key
    })
}

/// The file holding the device gateway's static key pair.
pub const DEVICE_KEY_FILE: &str = "device.key";

/// The device gateway's static X25519 key pair `(secret, public)`, created
/// on first use: every device is built knowing the public half
/// (`kanald device server-key` prints it), so it must survive restarts.
pub fn device_key(data_dir: &Path) -> std::io::Result<([u8; 32], [u8; 32])> {
    let pair = secret_file(&data_dir.join(DEVICE_KEY_FILE), || {
        let keys = snow::Builder::new(
            kanal_proto::device::NOISE_PATTERN
                .parse()
                .expect("a valid pattern"),
        )
        .generate_keypair()
        .expect("X25519 keys generate");
        let mut pair = [0u8; 64];
        pair[..32].copy_from_slice(&keys.private);
        pair[32..].copy_from_slice(&keys.public);
        pair
    })?;
    let (secret, public) = pair.split_at(32);
    Ok((
        secret.try_into().expect("32 bytes"),
        public.try_into().expect("32 bytes"),
    ))
}

/// The `N` bytes of the secret file at `path`, made by `generate` and
/// written (mode 0600) if it does not exist.
fn secret_file<const N: usize>(
    path: &Path,
    generate: impl FnOnce() -> [u8; N],
) -> std::io::Result<[u8; N]> {
    match std::fs::read(path) {
        Ok(bytes) => {
            return bytes.try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} must hold exactly {N} bytes", path.display()),
                )
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, &key)?;
    Ok(key)
}

/// Whether `data_dir` has a configuration file.
pub fn is_initialised(data_dir: &Path) -> bool {
    data_dir.join(CONFIG_FILE).exists()
}

/// Creates the data directory: configuration, self-signed certificate,
/// database, and the `support` inbox. Returns the certificate fingerprint.
pub async fn init(data_dir: &Path, config: &Config) -> Result<String, InitError> {
    let config_path = data_dir.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(InitError::AlreadyInitialised(data_dir.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let cert_path = data_dir.join(&config.tls_cert);
    let key_path = data_dir.join(&config.tls_key);
    if !cert_path.exists() {
        let (cert, key) = tls::self_signed(&config.domain)?;
        tls::write_pair(&cert_path, &key_path, &cert, &key)?;
    }
    let offline = Offline::open(data_dir, config).await.map_err(Box::new)?;
    let inbox = kanal_proto::address::Address::new(DEFAULT_INBOX, &config.domain)
        .map_err(AdminError::from)?;
    let node = offline.node();
    let created = match node.store.party_by_address(&inbox).await {
        Ok(Some(_)) => {
            tracing::info!(%inbox, "default inbox exists");
            Ok(())
        }
        Ok(None) => directory::add_inbox(node, DEFAULT_INBOX, "Support")
            .await
            .map(drop),
        Err(e) => Err(AdminError::from(e)),
    };
    offline.close().await;
    created?;
    // Written last: its presence means the directory is complete.
    std::fs::write(&config_path, config.render()).map_err(io(&config_path))?;
    let (certs, _) = tls::load(&cert_path, &key_path)?;
    Ok(tls::fingerprint(&certs[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn init_creates_a_complete_directory_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let fingerprint = init(&data, &Config::default()).await.expect("init");
        assert_eq!(fingerprint.len(), 64);
        assert!(is_initialised(&data));
        let config = Config::load(&data).expect("config");
        assert_eq!(config.domain, "localhost");
        assert!(matches!(
            init(&data, &Config::default()).await,
            Err(InitError::AlreadyInitialised(_))
        ));
    }
}
