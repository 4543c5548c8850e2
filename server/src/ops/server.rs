//! A whole server: the data directory's lock, the store, the node (writer
//! and hub), and its links: QUIC for clients, the admin socket for
//! operators.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::certificate::{self, TlsError};
use super::config::{Config, ConfigError};
use super::database::OpenStore;
use super::datadir;
use crate::core::federation::outbox::Policy;
use crate::links::admin;
use crate::links::device::{self, Gateway};
use crate::links::federation::{self, Federation};
use crate::links::quic::endpoint::{self, Endpoint, EndpointError};
use crate::node::Node;
use crate::node::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::store::{Store, StoreError};

/// How long shutdown waits for connections to close and the writer to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The roots federation trusts by WebPKI (`federation_webpki`), if on.
fn federation_roots(
    data_dir: &Path,
    config: &Config,
) -> Result<Option<rustls::RootCertStore>, ConfigError> {
    if !config.federation_webpki {
        return Ok(None);
    }
    let extra = (!config.federation_ca_file.as_os_str().is_empty())
        .then(|| data_dir.join(&config.federation_ca_file));
    certificate::roots(config.federation_public_roots, extra.as_deref())
        .map(Some)
        .map_err(|e| ConfigError::Invalid {
            key: "federation_ca_file",
            problem: e.to_string(),
        })
}

/// The lock file a running server holds in its data directory: one server
/// per data directory, and operator commands know whether one runs.
pub const LOCK_FILE: &str = "kanald.lock";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error("database {database}")]
    Store {
        /// The file or URL (without its password).
        database: String,
        /// Why.
        source: StoreError,
    },
    /// The device gateway's UDP address could not be bound.
    #[error("device_listen {addr}: {source}")]
    DeviceListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The federation endpoint could not be set up.
    #[error("federation_listen: {0}")]
    Federation(EndpointError),
    /// The configuration names no usable database.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificate could not be loaded.
    #[error(transparent)]
    Certificate(#[from] TlsError),
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The other nodes could not be joined.
    #[error("{0}")]
    Cluster(String),
    /// Another server serves this data directory.
    #[error("{0}: another kanald serves this data directory")]
    Locked(PathBuf),
    /// The data directory's lock or admin socket could not be made.
    #[error("{path}: {source}")]
    DataDir {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    endpoint: Endpoint,
    fingerprint: String,
    node: Arc<Node>,
    accept: JoinHandle<()>,
    admin: JoinHandle<()>,
    /// The admin socket's path, removed at shutdown.
    admin_socket: PathBuf,
    writer: JoinHandle<()>,
    /// The other nodes, when there are.
    cluster: Option<Cluster>,
    /// Devices.
    gateway: Gateway,
    federation: Federation,
    /// The gateway's static public key.
    device_public: [u8; 32],
    _lock: File,
}

impl Server {
    /// Starts serving `config` from `data_dir` (which `kanald init` prepared).
    pub async fn start(data_dir: &Path, config: Config) -> Result<Self, StartError> {
        let lock = lock(data_dir)?;
        let store = open_store(data_dir, &config).await?;
        Self::serve(data_dir, config, store.shared(), lock).await
    }

    /// Starts serving with an already opened store.
    pub async fn start_with_store(
        data_dir: &Path,
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Self, StartError> {
        let lock = lock(data_dir)?;
        Self::serve(data_dir, config, store, lock).await
    }

    async fn serve(
        data_dir: &Path,
        config: Config,
        store: Arc<dyn Store>,
        lock: File,
    ) -> Result<Self, StartError> {
        let (certs, key) = certificate::load(
            &data_dir.join(&config.tls_cert),
            &data_dir.join(&config.tls_key),
        )?;
        let fingerprint = certificate::fingerprint(&certs[0]);
        let reset_key = datadir::reset_key(data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.join(datadir::RESET_KEY_FILE),
            source,
        })?;
        let (fed_certs, fed_key) = (certs.clone(), key.clone_key());
        let webpki = federation_roots(data_dir, &config)?;
        if webpki.is_some()
            && let Some(why) = certificate::not_valid_for(&certs, &config.domain)
        {
            tracing::warn!(
                domain = %config.domain,
                "federation: tls_cert is not valid for this server's domain ({why}): peers \
                 trusting by WebPKI will refuse this server"
            );
        }
        let endpoint = Endpoint::bind(endpoint::Settings {
            listen: config.listen,
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            certs,
            key,
            reset_key,
        })?;
        let (node, writer) = Node::start(
            config.domain.clone(),
            config.policy(),
            store,
            config.commit_window(),
        )
        .await
        .map_err(|source| StartError::Store {
            database: database_name(data_dir, &config),
            source,
        })?;
        let admin_socket = data_dir.join(admin::SOCKET_FILE);
        let socket = admin::bind(data_dir).map_err(|source| StartError::DataDir {
            path: admin_socket.clone(),
            source,
        })?;
        let tenancy = match config.nats.as_str() {
            "" => node.store.use_alone().await,
            _ => node.store.use_with_others().await,
        };
        tenancy.map_err(|source| StartError::Store {
            database: database_name(data_dir, &config),
            source,
        })?;
        let cluster = match config.nats.as_str() {
            "" => None,
            nats => {
                let mut cluster = ClusterConfig::new(nats, &config.domain);
                if !config.nats_subject_prefix.is_empty() {
                    cluster
                        .subject_prefix
                        .clone_from(&config.nats_subject_prefix);
                }
                let joined = Cluster::join(&cluster, node.clone(), endpoint.local_addr).await;
                Some(joined.map_err(|e: ClusterError| StartError::Cluster(e.to_string()))?)
            }
        };
        let (secret, device_public) =
            datadir::device_key(data_dir).map_err(|source| StartError::DataDir {
                path: data_dir.join(datadir::DEVICE_KEY_FILE),
                source,
            })?;
        let device_socket = std::net::UdpSocket::bind(config.device_listen)
            .and_then(|socket| {
                socket.set_nonblocking(true)?;
                tokio::net::UdpSocket::from_std(socket)
            })
            .map_err(|source| StartError::DeviceListen {
                addr: config.device_listen,
                source,
            })?;
        let gateway = Gateway::serve(
            device_socket,
            node.clone(),
            device::Settings {
                secret,
                public: device_public,
                requests_per_minute: config.device_requests_per_minute,
                request_burst: config.device_request_burst,
                mail_expiry: Duration::from_secs(u64::from(config.device_mail_expiry_hours) * 3600),
                cookie_threshold: config.device_cookie_threshold,
            },
        )
        .map_err(|source| StartError::DeviceListen {
            addr: config.device_listen,
            source,
        })?;
        let federation = Federation::serve(
            node.clone(),
            federation::Settings {
                listen: config.federation_listen,
                certs: fed_certs,
                key: fed_key,
                policy: Policy {
                    horizon_ms: config.federation_horizon_ms(),
                    ..Policy::default()
                },
                reset_key,
                transactions_per_second: config.federation_transactions_per_second_per_peer,
                webpki,
                dns: config.federation_dns_server()?,
                idle_peer: config.federation_idle_peer(),
            },
        )
        .map_err(StartError::Federation)?;
        let admin = tokio::spawn(admin::serve(socket, node.clone()));
        let accept = endpoint.serve(node.clone(), config.max_connections);
        tracing::info!(
            local_addr = %endpoint.local_addr,
            domain = %config.domain,
            %fingerprint,
            node = cluster.as_ref().map(|c| format!("{:016x}", c.node_id)),
            "kanald serving"
        );
        Ok(Self {
            endpoint,
            fingerprint,
            node,
            accept,
            admin,
            admin_socket,
            writer,
            cluster,
            gateway,
            federation,
            device_public,
            _lock: lock,
        })
    }

    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr
    }

    /// SHA-256 fingerprint of the certificate, lowercase hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The address other servers connect to (`kanal-fed/1`).
    pub fn federation_addr(&self) -> SocketAddr {
        self.federation
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The address the device gateway listens on.
    pub fn device_addr(&self) -> SocketAddr {
        self.gateway.local_addr
    }

    /// The device gateway's static public key, which devices are built with.
    pub fn device_public_key(&self) -> [u8; 32] {
        self.device_public
    }

    /// What the device gateway refused and did since it started.
    pub fn device_counters(&self) -> &device::Counters {
        &self.gateway.counters
    }

    /// The domain the server answers for.
    pub fn domain(&self) -> &str {
        &self.node.domain
    }

    /// The running node, for administration in-process (every change goes
    /// through its writer, see [`crate::admin`]).
    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// With several nodes: who this node believes holds each slot of
    /// conversations (as of its last lease round, once a second), by slot.
    pub fn slot_owners(&self) -> Option<Vec<Option<i64>>> {
        self.cluster.as_ref().map(Cluster::slot_owners)
    }

    /// The store, for reads while serving.
    pub fn store(&self) -> Arc<dyn Store> {
        self.node.store.clone()
    }

    /// Closes every connection with `ServerShutdown`, lets the writer commit
    /// what it already accepted, and returns once the UDP port is free again
    /// (so a new server can bind it at once).
    pub async fn shutdown(self) {
        let Self {
            endpoint,
            node,
            accept,
            admin,
            admin_socket,
            writer,
            cluster,
            gateway,
            federation,
            ..
        } = self;
        drop(cluster);
        drop(gateway);
        federation.close().await;
        let local_addr = endpoint.local_addr;
        endpoint.close(SHUTDOWN_GRACE).await;
        let _ = accept.await;
        admin.abort();
        let _ = admin.await;
        // Gone with the server: operator commands now open the directory.
        let _ = std::fs::remove_file(&admin_socket);
        drop(endpoint);
        let store = node.store.clone();
        drop(node);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, writer).await;
        // Committed what it accepted: another node may use the database now.
        store.stop_using().await;
        // quinn releases the socket when its driver task next runs after the
        // last handle is gone; wait for that, boundedly.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while std::net::UdpSocket::bind(local_addr).is_err()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Opens the database `config` names for `data_dir`.
async fn open_store(data_dir: &Path, config: &Config) -> Result<OpenStore, StartError> {
    let database = config.database_in(data_dir)?;
    database.open().await.map_err(|source| StartError::Store {
        database: database.to_string(),
        source,
    })
}

/// The database `config` names, as errors show it (without a password).
fn database_name(data_dir: &Path, config: &Config) -> String {
    config
        .database_in(data_dir)
        .map_or_else(|_| config.database.clone(), |database| database.to_string())
}

/// Takes the data directory's lock, or says that another server holds it.
pub(crate) fn lock(data_dir: &Path) -> Result<File, StartError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |source| StartError::DataDir {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked(path)),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// A node without links, for operator commands while no server runs: it
/// holds the data directory's lock, so no server starts on the directory
/// until it is closed.
#[derive(Debug)]
pub struct Offline {
    node: Arc<Node>,
    writer: JoinHandle<()>,
    store: OpenStore,
    _lock: File,
}

impl Offline {
    /// Opens `data_dir`'s store under `config` and starts a node on it.
    pub async fn open(data_dir: &Path, config: &Config) -> Result<Self, StartError> {
        let lock = lock(data_dir)?;
        let store = open_store(data_dir, config).await?;
        let (node, writer) = Node::start(
            config.domain.clone(),
            config.policy(),
            store.shared(),
            config.commit_window(),
        )
        .await
        .map_err(|source| StartError::Store {
            database: database_name(data_dir, config),
            source,
        })?;
        Ok(Self {
            node,
            writer,
            store,
            _lock: lock,
        })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Lets the writer finish, closes the store and releases the lock.
    pub async fn close(self) {
        drop(self.node);
        let _ = self.writer.await;
        self.store.close().await;
    }
}
