//! The QUIC server configuration: TLS 1.3 with the client ALPN, and
//! transport settings for many mostly idle clients. The certificate comes
//! from the data directory (`ops::certificate`).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Unacknowledged bytes in flight toward one client (see `server_config`).
const SEND_WINDOW: u64 = 4 * 1024 * 1024;

/// QUIC transport limits for a server holding many mostly idle clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransportLimits {
    /// Drop a connection after this long without traffic.
    pub idle_timeout: Duration,
    /// Requests a client may have in flight at once (bidi streams).
    pub max_requests_in_flight: u32,
}

/// The QUIC server configuration: TLS 1.3 with the client ALPN, and
/// transport settings for many mostly idle clients.
pub(crate) fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    limits: TransportLimits,
) -> Result<quinn::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![kanal_proto::ALPN_CLIENT.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_requests_in_flight.into())
        // Clients never open unidirectional streams: only the server's event stream exists.
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.idle_timeout)
                .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::from_u32(60_000))),
        ))
        // Bytes sent and not yet acknowledged per connection, which is also
        // what QUIC buffers for a client that stops reading: 4 MiB instead
        // of quinn's 10 MB keeps thousands of stuck clients affordable and
        // is ample for one client's events and responses.
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(Some(64 * 1024))
        .datagram_send_buffer_size(64 * 1024);
    config.transport_config(Arc::new(transport));
    Ok(config)
}
