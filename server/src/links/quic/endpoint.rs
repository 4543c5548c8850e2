//! Starting and stopping a server: open the store, load the certificate,
//! start the writer, and accept QUIC connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kanal_proto::codes::CloseCode;
use tokio::task::JoinHandle;

use crate::links::quic::session::{self, Shared};
use crate::links::quic::tls::{self, TlsError, TransportLimits};
use crate::node::hub::Hub;
use crate::node::writer;
use crate::ops::config::Config;
use crate::ops::datadir;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// How long shutdown waits for connections to close and the writer to drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Bidirectional streams a client may have open at once: its control stream
/// and up to seven requests. Each allowed stream costs memory on every
/// connection (quinn reserves per stream), and a server holds thousands of
/// mostly idle ones: 8 keeps an idle connection near 32 KiB.
const MAX_REQUESTS_IN_FLIGHT: u32 = 8;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error("database {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The certificate could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The stateless-reset key could not be read or created.
    #[error("{path}: {source}")]
    ResetKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    fingerprint: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Server {
    /// Starts serving `config` from `data_dir` (which `kanald init` prepared).
    pub async fn start(data_dir: &Path, config: Config) -> Result<Self, StartError> {
        let db_path = data_dir.join(&config.database);
        let store = SqliteStore::open(&db_path)
            .await
            .map_err(|source| StartError::Store {
                path: db_path.clone(),
                source,
            })?;
        Self::start_with_store(data_dir, config, Arc::new(store)).await
    }

    /// Starts serving with an already opened store.
    pub async fn start_with_store(
        data_dir: &Path,
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Self, StartError> {
        let (certs, key) = tls::load(
            &data_dir.join(&config.tls_cert),
            &data_dir.join(&config.tls_key),
        )?;
        let fingerprint = tls::fingerprint(&certs[0]);
        let server_config = tls::server_config(
            certs,
            key,
            TransportLimits {
                idle_timeout: Duration::from_secs(config.idle_timeout_secs),
                max_requests_in_flight: MAX_REQUESTS_IN_FLIGHT,
            },
        )?;
        let reset_key = datadir::reset_key(data_dir).map_err(|source| StartError::ResetKey {
            path: data_dir.join(datadir::RESET_KEY_FILE),
            source,
        })?;
        let endpoint_config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &reset_key,
        )));
        let bind_err = |source| StartError::Bind {
            addr: config.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_err)?;
        size_buffers(&socket);
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let hub = Arc::new(Hub::default());
        let (writer, writer_task) =
            writer::spawn(store.clone(), hub.clone(), config.domain.clone())
                .await
                .map_err(|source| StartError::Store {
                    path: data_dir.join(&config.database),
                    source,
                })?;
        let shared = Arc::new(Shared {
            store,
            writer,
            hub,
            config,
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), shared.clone()));
        tracing::info!(%local_addr, domain = %shared.config.domain, %fingerprint, "kanald serving");
        Ok(Self {
            endpoint,
            local_addr,
            fingerprint,
            shared,
            accept,
            writer: writer_task,
        })
    }

    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// SHA-256 fingerprint of the certificate, lowercase hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The domain the server answers for.
    pub fn domain(&self) -> &str {
        &self.shared.config.domain
    }

    /// The store, for administration while serving.
    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.store.clone()
    }

    /// Closes every connection with `ServerShutdown`, lets the writer commit
    /// what it already accepted, and returns once the UDP port is free again
    /// (so a new server can bind it at once).
    pub async fn shutdown(self) {
        let Self {
            endpoint,
            local_addr,
            shared,
            accept,
            writer,
            ..
        } = self;
        endpoint.close(
            CloseCode::ServerShutdown.value().into(),
            b"server shutting down",
        );
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, endpoint.wait_idle()).await;
        let _ = accept.await;
        drop(endpoint);
        drop(shared);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, writer).await;
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

/// Bytes of kernel buffer asked for on the UDP socket in each direction.
/// Linux's defaults (≈200 KiB) drop bursts from thousands of clients; the
/// kernel caps the request at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

fn size_buffers(socket: &std::net::UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::warn!(error = %e, "could not enlarge the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::warn!(error = %e, "could not enlarge the UDP send buffer");
    }
    let (recv, send) = (socket.recv_buffer_size(), socket.send_buffer_size());
    tracing::info!(recv = ?recv, send = ?send, "UDP socket buffers");
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        if endpoint.open_connections() >= shared.config.max_connections {
            incoming.refuse();
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => session::serve(shared, connection).await,
                Err(e) => tracing::debug!(error = %e, "handshake failed"),
            }
        });
    }
}
