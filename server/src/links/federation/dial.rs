//! Reaching a peer (FEDERATION.md §2): where it is, and a QUIC connection
//! to it whose certificate is the one this server trusts for its domain.

use std::sync::Arc;

use super::{HANDSHAKE_TIMEOUT, Shared, tls};

/// A connection to `peer`, its certificate checked; the handshake is done.
pub(super) async fn connect(shared: &Shared, peer: &str) -> Result<quinn::Connection, String> {
    let Some(config) = shared.node.federation.peers.get(peer) else {
        return Err(format!("{peer} is not a configured peer"));
    };
    let address = tokio::net::lookup_host(&config.address)
        .await
        .map_err(|e| format!("{}: {e}", config.address))?
        .next()
        .ok_or_else(|| format!("{} resolves to nothing", config.address))?;
    let crypto = tls::client_crypto(
        shared.certs.clone(),
        shared.key.clone_key(),
        config.fingerprint.clone(),
    )
    .map_err(|e| e.to_string())?;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|e| e.to_string())?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(super::transport()));
    let connecting = shared
        .endpoint
        .connect_with(client, address, peer)
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| "the handshake timed out".to_owned())?
        .map_err(|e| e.to_string())
}
