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
    /// Where it listens (`host:port`); empty: found by DNS SRV.
    pub address: String,
    /// SHA-256 of its certificate, lowercase hex; empty: trusted by WebPKI.
    pub fingerprint: String,
    /// Whether the operator configured it (`kanald peer add`), rather than
    /// it being written to and found by DNS.
    #[serde(default)]
    pub configured: bool,
    /// Whether this server may deliver to it: configured, or WebPKI on.
    #[serde(default = "reachable_by_default")]
    pub reachable: bool,
    /// Where this server last reached it (running server only).
    #[serde(default)]
    pub dialled: Option<String>,
    /// Its delivery rests: only given-up transactions are queued, and it
    /// starts again with the next transaction or a connection from the
    /// peer (running server only).
    #[serde(default)]
    pub resting: bool,
    /// Transactions toward it not yet acknowledged.
    pub queued: u64,
    /// How long the oldest of them has waited, seconds (running server only).
    pub oldest_age_secs: Option<u64>,
    /// Why the last try failed, since the last success.
    pub last_error: Option<String>,
    /// Seconds until the next try, if delivery waits out a backoff.
    pub next_retry_secs: Option<u64>,
    /// Transactions it refused for good, not delivered again since.
    pub dead_letters: u64,
    /// Transactions given up at the horizon, not delivered again since.
    pub expired: u64,
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

/// Every peer (`only`: just that one), after reading them again: the
/// configured ones, and those found by DNS that transactions are queued
/// toward or a delivery runs for.
pub(super) async fn respond(node: &Node, only: Option<&str>) -> AdminResponse {
    if let Err(e) = node.federation.peers.reload(node.store.as_ref()).await {
        return error(e.to_string());
    }
    let mut all: std::collections::BTreeMap<String, (PeerRecord, bool)> = node
        .federation
        .peers
        .all()
        .into_iter()
        .map(|p| (p.domain.clone(), (p, true)))
        .collect();
    let queued = match node.store.outbox_peers().await {
        Ok(queued) => queued,
        Err(e) => return error(e.to_string()),
    };
    for domain in queued
        .into_iter()
        .chain(node.federation.peers_with_status())
    {
        all.entry(domain.clone()).or_insert_with(|| {
            let found = PeerRecord {
                domain,
                address: String::new(),
                fingerprint: String::new(),
                added_at_ms: 0,
            };
            (found, false)
        });
    }
    let mut peers = Vec::new();
    for (domain, (peer, configured)) in all {
        if only.is_some_and(|d| d != domain) {
            continue;
        }
        match info(node, peer, configured).await {
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

async fn info(
    node: &Node,
    peer: PeerRecord,
    configured: bool,
) -> crate::store::StoreResult<PeerInfo> {
    let status = node.federation.status(&peer.domain);
    // The delivery knows of acknowledgements before the store does.
    let acked =
        (node.store.outbox_acked(&peer.domain).await?).max(status.as_ref().map_or(0, |s| s.acked));
    let head = node.store.outbox_head(&peer.domain).await?;
    let committed = node.store.peer_committed(&peer.domain).await?;
    let now = now_ms();
    let given_up = node.store.undelivered(&peer.domain).await?;
    let waiting = |refused: bool| {
        given_up
            .iter()
            .filter(|u| u.refused == refused && u.replayed_as.is_none())
            .count() as u64
    };
    let secs = |ms: i64| u64::try_from(ms / 1000).unwrap_or(0);
    Ok(PeerInfo {
        queued: head.saturating_sub(acked),
        oldest_age_secs: status.as_ref().map(|s| secs(s.oldest_age_ms)),
        last_error: status.as_ref().and_then(|s| s.last_error.clone()),
        next_retry_secs: status
            .as_ref()
            .and_then(|s| s.next_retry_ms)
            .map(|at| secs(at - now)),
        dead_letters: waiting(true),
        expired: waiting(false),
        acked,
        committed,
        configured,
        reachable: node.federation.reachable(&peer.domain),
        dialled: node.federation.dialled(&peer.domain).map(|a| a.to_string()),
        resting: node.federation.outbox.is_resting(&peer.domain),
        domain: peer.domain,
        address: peer.address,
        fingerprint: peer.fingerprint,
    })
}

fn reachable_by_default() -> bool {
    true
}

/// A transaction toward a peer given up, as the admin link shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UndeliveredInfo {
    /// Its seq toward the peer.
    pub seq: u64,
    /// The peer refused it (a dead letter), rather than: it expired.
    pub refused: bool,
    /// Why.
    pub reason: String,
    /// What it carried, for people.
    pub what: String,
    /// When it was queued, ms since the Unix epoch.
    pub enqueued_at_ms: i64,
    /// When it was given up, ms since the Unix epoch.
    pub failed_at_ms: i64,
    /// Whose sender was told (address), if one of this server's.
    pub told: Option<String>,
    /// Delivered again as this seq.
    pub replayed_as: Option<u64>,
}

/// The transactions toward `domain` given up, replayed ones included.
pub(super) async fn undelivered(node: &Node, domain: &str) -> AdminResponse {
    match node.store.undelivered(domain).await {
        Ok(rows) => {
            let mut shown = Vec::with_capacity(rows.len());
            for row in rows {
                shown.push(undelivered_info(node, row).await);
            }
            AdminResponse::Undelivered {
                peer: domain.to_owned(),
                transactions: shown,
            }
        }
        Err(e) => error(e.to_string()),
    }
}

/// Queues the transactions toward `domain` given up (`only`: that one)
/// again, in their order, unless delivered again before.
pub(super) async fn replay(node: &Node, domain: &str, only: Option<u64>) -> AdminResponse {
    let rows = match node.store.undelivered(domain).await {
        Ok(rows) => rows,
        Err(e) => return error(e.to_string()),
    };
    let transactions: Vec<(u64, Vec<u8>)> = rows
        .into_iter()
        .filter(|u| u.replayed_as.is_none() && only.is_none_or(|seq| seq == u.seq))
        .map(|u| (u.seq, u.payload.to_vec()))
        .collect();
    if transactions.is_empty() {
        return error(match only {
            Some(seq) => {
                format!("no transaction {seq} toward {domain} waits to be delivered again")
            }
            None => format!("nothing toward {domain} waits to be delivered again"),
        });
    }
    let command = crate::core::engine::Command::Replay {
        peer: domain.to_owned(),
        transactions,
    };
    if let crate::core::engine::Reply::Refused(why) = node.writer.enqueue(command).await.await {
        return error(why.message);
    }
    undelivered(node, domain).await
}

async fn undelivered_info(node: &Node, row: crate::model::Undelivered) -> UndeliveredInfo {
    let told = match &row.told {
        Some(told) => node
            .store
            .party_by_id(told.party)
            .await
            .ok()
            .flatten()
            .map(|p| p.address.to_string()),
        None => None,
    };
    UndeliveredInfo {
        seq: row.seq,
        refused: row.refused,
        what: describe(&row.payload),
        reason: row.reason,
        enqueued_at_ms: row.enqueued_at_ms,
        failed_at_ms: row.failed_at_ms,
        told,
        replayed_as: row.replayed_as,
    }
}

/// What a stored transaction carries, in a few words.
fn describe(payload: &[u8]) -> String {
    use crate::model::{Replicated, Submitted, Transaction};
    match crate::core::federation::wire::decode_stored(payload) {
        Err(why) => why.0,
        Ok(None) => "nothing (a tombstone)".into(),
        Ok(Some(Transaction::Submit {
            conversation,
            sender,
            what,
        })) => match what {
            Submitted::Create { to, .. } => format!(
                "start of {conversation} by {sender} with {}",
                to.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
            ),
            Submitted::Post { client_msg_id, .. } => {
                format!("message {client_msg_id:?} of {sender} to {conversation}")
            }
            Submitted::Watermark { kind, up_to } => {
                format!("{kind:?} receipt of {sender} up to {up_to} in {conversation}")
            }
        },
        Ok(Some(Transaction::Replicate { conversation, what })) => match what {
            Replicated::Created { .. } => format!("the start of {conversation}"),
            Replicated::Posted {
                seq,
                sender,
                client_msg_id,
                ..
            } => format!("message {seq} ({client_msg_id:?}) of {sender} in {conversation}"),
            Replicated::Watermark { party, kind, up_to } => {
                format!("{kind:?} receipt of {party} up to {up_to} in {conversation}")
            }
        },
    }
}

fn error(message: String) -> AdminResponse {
    AdminResponse::Error { message }
}
