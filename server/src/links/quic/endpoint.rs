//! The QUIC endpoint: certificate, stateless-reset key, the UDP socket, and
//! the accept loop that gives each connection its session.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kanal_proto::codes::CloseCode;
use tokio::task::JoinHandle;

use super::session;
use super::tls::{self, TlsError, TransportLimits};
use crate::node::Node;
use crate::ops::config::Config;
use crate::ops::datadir;

/// Bidirectional streams a client may have open at once: its control stream
/// and up to seven requests. Each allowed stream costs memory on every
/// connection (quinn reserves per stream), and a server holds thousands of
/// mostly idle ones: 8 keeps an idle connection near 32 KiB.
const MAX_REQUESTS_IN_FLIGHT: u32 = 8;

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
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

/// The QUIC endpoint of a server, bound and ready to accept.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The quinn endpoint.
    pub endpoint: quinn::Endpoint,
    /// The address it listens on (with the real port when 0 was asked).
    pub local_addr: SocketAddr,
    /// SHA-256 fingerprint of the certificate, lowercase hex.
    pub fingerprint: String,
}

impl Endpoint {
    /// Loads the certificate and the stateless-reset key from `data_dir`
    /// and binds the UDP socket of `config.listen`.
    pub(crate) fn bind(data_dir: &Path, config: &Config) -> Result<Self, EndpointError> {
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
        let reset_key = datadir::reset_key(data_dir).map_err(|source| EndpointError::ResetKey {
            path: data_dir.join(datadir::RESET_KEY_FILE),
            source,
        })?;
        let endpoint_config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &reset_key,
        )));
        let bind_err = |source| EndpointError::Bind {
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
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| EndpointError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(Self {
            endpoint,
            local_addr,
            fingerprint,
        })
    }

    /// Accepts client connections for `node` until the endpoint closes;
    /// beyond `max_connections` open ones, new connections are refused.
    pub(crate) fn serve(&self, node: Arc<Node>, max_connections: usize) -> JoinHandle<()> {
        tokio::spawn(accept_loop(self.endpoint.clone(), node, max_connections))
    }

    /// Closes every connection with `ServerShutdown` and waits, boundedly,
    /// until they are gone.
    pub(crate) async fn close(&self, grace: Duration) {
        self.endpoint.close(
            CloseCode::ServerShutdown.value().into(),
            b"server shutting down",
        );
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
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

async fn accept_loop(endpoint: quinn::Endpoint, node: Arc<Node>, max_connections: usize) {
    while let Some(incoming) = endpoint.accept().await {
        if endpoint.open_connections() >= max_connections {
            incoming.refuse();
            continue;
        }
        let node = node.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(connection) => session::serve(node, connection).await,
                Err(e) => tracing::debug!(error = %e, "handshake failed"),
            }
        });
    }
}
