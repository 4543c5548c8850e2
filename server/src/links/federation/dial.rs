//! Reaching a peer (FEDERATION.md §2): where it is (its configured
//! address, else DNS SRV), and a QUIC connection to it whose certificate
//! is the one this server trusts for its domain (its configured
//! fingerprint, else WebPKI).

use std::net::SocketAddr;
use std::sync::Arc;

use super::{HANDSHAKE_TIMEOUT, Shared, tls, trust};

/// A connection to `peer`, its certificate checked; the handshake is done.
/// Each address found is tried in turn until one answers.
pub(super) async fn connect(shared: &Shared, peer: &str) -> Result<quinn::Connection, String> {
    let configured = shared.node.federation.peers.get(peer);
    let verifier = trust::for_dialling(peer, configured.as_ref(), shared.webpki.as_deref())?;
    let addresses = match configured.as_ref().map(|c| c.address.as_str()) {
        Some(address) if !address.is_empty() => {
            let found: Vec<SocketAddr> = tokio::net::lookup_host(address)
                .await
                .map_err(|e| format!("{address}: {e}"))?
                .collect();
            if found.is_empty() {
                return Err(format!("{address} resolves to nothing"));
            }
            found
        }
        _ => shared.discovery.locate(peer).await?,
    };
    let crypto = tls::client_crypto(shared.certs.clone(), shared.key.clone_key(), verifier)
        .map_err(|e| e.to_string())?;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|e| e.to_string())?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(super::transport()));
    let mut failures = Vec::new();
    for address in addresses {
        match attempt(shared, &client, address, peer).await {
            Ok(connection) => {
                shared.node.federation.set_dialled(peer, address);
                return Ok(connection);
            }
            Err(why) => failures.push(format!("{address}: {why}")),
        }
    }
    Err(failures.join("; "))
}

/// One handshake with `peer` at `address`.
async fn attempt(
    shared: &Shared,
    client: &quinn::ClientConfig,
    address: SocketAddr,
    peer: &str,
) -> Result<quinn::Connection, String> {
    let connecting = shared
        .endpoint
        .connect_with(client.clone(), address, peer)
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| "the handshake timed out".to_owned())?
        .map_err(|e| e.to_string())
}
