//! The QUIC endpoint: certificate, stateless-reset key, the UDP socket, and
//! the accept loop that gives each connection its session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kanal_proto::codes::CloseCode;
use quinn_proto::HashedConnectionIdGenerator;
use tokio::task::JoinHandle;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::budget::{self, Budget};
use super::session;
use super::tls::{self, TransportLimits};
use crate::node::Node;

/// Bidirectional streams a client may have open at once: its control stream
/// and up to seven requests. Each allowed stream costs memory on every
/// connection (quinn reserves per stream), and a server holds thousands of
/// mostly idle ones: 8 keeps an idle connection near 32 KiB.
const MAX_REQUESTS_IN_FLIGHT: u32 = 8;

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What the endpoint is made of.
#[derive(Debug)]
pub(crate) struct Settings {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Drop a connection after this long without traffic.
    pub idle_timeout: Duration,
    /// The certificate chain.
    pub certs: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// The persisted stateless-reset secret (`reset.key`).
    pub reset_key: [u8; 64],
}

/// The QUIC endpoint of a server, bound and ready to accept.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The quinn endpoint.
    pub endpoint: quinn::Endpoint,
    /// The address it listens on (with the real port when 0 was asked).
    pub local_addr: SocketAddr,
}

impl Endpoint {
    /// Binds the UDP socket of `settings.listen` and serves TLS with its
    /// certificate.
    pub(crate) fn bind(settings: Settings) -> Result<Self, EndpointError> {
        let server_config = tls::server_config(
            settings.certs,
            settings.key,
            TransportLimits {
                idle_timeout: settings.idle_timeout,
                max_requests_in_flight: MAX_REQUESTS_IN_FLIGHT,
            },
        )?;
        let endpoint_config = endpoint_config(&settings.reset_key);
        let listen = settings.listen;
        let bind_err = |source| EndpointError::Bind {
            addr: listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_err)?;
        size_buffers(&socket);
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(bind_err)?;
        Ok(Self {
            endpoint,
            local_addr,
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

/// Label under which the connection-id key is derived from `reset.key`.
/// Its length differs from a connection id's (8 bytes), so the derived key
/// is never the HMAC of a connection id, which is what a stateless reset
/// reveals.
const CID_KEY_LABEL: &[u8] = b"kanal connection-id key v1";

/// The endpoint configuration that lets a restarted server reset its
/// predecessor's connections (PROTOCOL.md §2.3). Both halves must survive
/// the restart: the reset key, so the tokens match the ones clients hold,
/// and the connection-id key, because quinn drops a packet whose connection
/// id its generator does not recognise before it considers a reset.
pub(crate) fn endpoint_config(reset_key: &[u8]) -> quinn::EndpointConfig {
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    let cid_key = connection_id_key(&hmac);
    let mut config = quinn::EndpointConfig::new(Arc::new(hmac));
    config.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(cid_key)));
    config
}

/// The key of the connection-id generator: derived from the reset key
/// rather than the key itself, so the two uses share no secret.
fn connection_id_key(reset_hmac: &ring::hmac::Key) -> u64 {
    let tag = ring::hmac::sign(reset_hmac, CID_KEY_LABEL);
    let mut key = [0u8; 8];
    key.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_le_bytes(key)
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

/// Handshakes under way above which a new client must first prove its
/// address with a QUIC Retry round trip: a flood of Initials from forged
/// or silent sources then costs the server a stateless reply each, not a
/// connection. Above the concurrency of a busy login storm: at 32, a storm
/// of 64 clients at a time slowed from ≈1,600 to 655 connections/s.
const RETRY_ABOVE_HANDSHAKES: usize = 256;

/// Most handshakes under way at once; beyond them, new attempts are refused.
const MAX_HANDSHAKES: usize = 1024;

/// How long a handshake may take before it is dropped, far shorter than a
/// silent established connection's idle timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(endpoint: quinn::Endpoint, node: Arc<Node>, max_connections: usize) {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let responses = Budget::total(budget::IN_TOTAL);
    while let Some(incoming) = endpoint.accept().await {
        let under_way = handshakes.load(Ordering::Acquire);
        if endpoint.open_connections() >= max_connections || under_way >= MAX_HANDSHAKES {
            incoming.refuse();
            continue;
        }
        if under_way >= RETRY_ABOVE_HANDSHAKES && !incoming.remote_address_validated() {
            // Stateless: the client comes back with a token, or never.
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            continue;
        }
        // Accepted here, not in the task: the connection then counts as open
        // before the next attempt is checked, so a burst cannot overshoot
        // max_connections (PROTOCOL.md §2.4).
        let connecting = match incoming.accept() {
            Ok(connecting) => connecting,
            Err(e) => {
                tracing::debug!(error = %e, "handshake failed");
                continue;
            }
        };
        let handshake = Handshake::start(handshakes.clone());
        let (node, responses) = (node.clone(), responses.clone());
        tokio::spawn(async move {
            let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await;
            drop(handshake);
            match connected {
                Ok(Ok(connection)) => session::serve(node, connection, responses).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "handshake failed"),
                // Dropping the handshake closes the connection.
                Err(_) => tracing::debug!("handshake timed out"),
            }
        });
    }
}

/// One handshake under way, counted while it lives.
struct Handshake(Arc<AtomicUsize>);

impl Handshake {
    fn start(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use quinn::ConnectionIdGenerator as _;

    use super::*;

    fn generator(reset_key: &[u8; 64]) -> HashedConnectionIdGenerator {
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
        HashedConnectionIdGenerator::from_key(connection_id_key(&hmac))
    }

    #[test]
    fn connection_ids_outlive_the_process_that_issued_them() {
        let mut before = generator(&[7; 64]);
        let cid = before.generate_cid();
        assert!(generator(&[7; 64]).validate(&cid).is_ok());
        assert!(generator(&[8; 64]).validate(&cid).is_err());
    }
}
