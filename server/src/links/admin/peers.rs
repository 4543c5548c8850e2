//! The operator's peers (`kanald peer …`): which servers this one
//! federates with, how to reach them, the certificate each proves its
//! domain with, and where delivery to each stands.

use serde::{Deserialize, Serialize};

use super::AdminResponse;
use crate::model::PeerRecord;
use crate::node::Node;
use crate::node::writer::now_ms;

/// A peer as the admin link shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerInfo {
    /// Its domain.
    pub domain: String,
    /// Where it listens (`host:port`).
    pub address: String,
    /// SHA-256 of its certificate, lowercase hex.
    pub fingerprint: String,
    /// Transactions toward it not yet acknowledged.
    pub queued: u64,
    /// How long the oldest of them has waited, seconds (running server only).
    pub oldest_age_secs: Option<u64>,
    /// Why the last try failed, since the last success.
    pub last_error: Option<String>,
    /// Seconds until the next try, if delivery waits out a backoff.
    pub next_retry_secs: Option<u64>,
    /// Transactions it refused for good.
    pub dead_letters: u64,
    /// Everything toward it is acknowledged up to here.
    pub acked: u64,
    /// Everything from it is applied here up to here.
    pub committed: u64,
}

/// Adds or replaces peer `domain`.
pub(super) async fn add(
    node: &Node,
    domain: String,
    address: String,
    fingerprint: String,
) -> AdminResponse {
    let peer = match crate::node::directory::add_peer(node, &domain, &address, &fingerprint).await {
        Ok(peer) => peer,
        Err(e) => return error(e.to_string()),
    };
    respond(node, Some(&peer.domain)).await
}

/// Removes peer `domain` (its queued transactions stay, and are delivered
/// if it is added again).
pub(super) async fn remove(node: &Node, domain: &str) -> AdminResponse {
    match node.store.remove_peer(domain).await {
        Ok(true) => respond(node, None).await,
        Ok(false) => error(format!("no peer {domain}")),
        Err(e) => error(e.to_string()),
    }
}

/// Every peer (`only`: just that one), after reading them again.
pub(super) async fn respond(node: &Node, only: Option<&str>) -> AdminResponse {
    if let Err(e) = node.federation.peers.reload(node.store.as_ref()).await {
        return error(e.to_string());
    }
    let mut peers = Vec::new();
    for peer in node.federation.peers.all() {
        if only.is_some_and(|d| d != peer.domain) {
            continue;
        }
        match info(node, peer).await {
            Ok(info) => peers.push(info),
            Err(e) => return error(e.to_string()),
        }
    }
    if let Some(domain) = only
        && peers.is_empty()
    {
        return error(format!("no peer {domain}"));
    }
    AdminResponse::Peers { peers }
}

async fn info(node: &Node, peer: PeerRecord) -> crate::store::StoreResult<PeerInfo> {
    let acked = node.store.outbox_acked(&peer.domain).await?;
    let head = node.store.outbox_head(&peer.domain).await?;
    let committed = node.store.peer_committed(&peer.domain).await?;
    let now = now_ms();
    let status = node.federation.status(&peer.domain);
    let secs = |ms: i64| u64::try_from(ms / 1000).unwrap_or(0);
    Ok(PeerInfo {
        queued: head.saturating_sub(acked),
        oldest_age_secs: status.as_ref().map(|s| secs(s.oldest_age_ms)),
        last_error: status.as_ref().and_then(|s| s.last_error.clone()),
        next_retry_secs: status
            .as_ref()
            .and_then(|s| s.next_retry_ms)
            .map(|at| secs(at - now)),
        dead_letters: status.as_ref().map_or(0, |s| s.dead_letters as u64),
        acked,
        committed,
        domain: peer.domain,
        address: peer.address,
        fingerprint: peer.fingerprint,
    })
}

fn error(message: String) -> AdminResponse {
    AdminResponse::Error { message }
}
