//! What the node keeps for federation: the operator's configured peers, in
//! memory, and the signal that wakes the delivery toward a peer when a
//! commit queued transactions for it (FEDERATION.md §5). The `kanal-fed/1`
//! link reads both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::Notify;

use crate::core::federation::outbox::Status;
use crate::model::PeerRecord;
use crate::store::{Store, StoreResult};

/// The operator's configured peers, by domain.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    by_domain: RwLock<HashMap<String, PeerRecord>>,
}

impl Peers {
    /// Reads every configured peer from `store`.
    pub(crate) async fn reload(&self, store: &dyn Store) -> StoreResult<usize> {
        let peers = store.peers().await?;
        let by_domain: HashMap<_, _> = peers.into_iter().map(|p| (p.domain.clone(), p)).collect();
        let count = by_domain.len();
        *self
            .by_domain
            .write()
            .unwrap_or_else(PoisonError::into_inner) = by_domain;
        Ok(count)
    }

    /// The peer configured for `domain`.
    pub(crate) fn get(&self, domain: &str) -> Option<PeerRecord> {
        self.by_domain
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(domain)
            .cloned()
    }

    /// Every configured peer, by domain.
    pub(crate) fn all(&self) -> Vec<PeerRecord> {
        let mut peers: Vec<PeerRecord> = self
            .by_domain
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        peers.sort_by(|a, b| a.domain.cmp(&b.domain));
        peers
    }
}

/// Wakes the delivery toward a peer once a commit queued transactions for
/// it, and tells the link of peers it has no delivery for yet.
#[derive(Debug, Default)]
pub(crate) struct OutboxSignal {
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Peers signalled before any delivery toward them existed.
    fresh: Mutex<Vec<String>>,
    fresh_waker: Notify,
}

impl OutboxSignal {
    /// Transactions toward `peer` are committed.
    pub(crate) fn advanced(&self, peer: &str) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        match wakers.get(peer) {
            Some(waker) => waker.notify_one(),
            None => {
                wakers.insert(peer.to_owned(), Arc::new(Notify::new()));
                self.fresh
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(peer.to_owned());
                self.fresh_waker.notify_one();
            }
        }
    }

    /// What wakes the delivery toward `peer` (it starts by reading the
    /// outbox, so a signal before this call is not missed).
    pub(crate) fn waker(&self, peer: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(peer.to_owned())
            .or_default()
            .clone()
    }

    /// Wakes the delivery toward `peer`, if one runs.
    pub(crate) fn wake(&self, peer: &str) {
        if let Some(waker) = self
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
        {
            waker.notify_one();
        }
    }

    /// Peers signalled that had no delivery yet; waits for one.
    pub(crate) async fn fresh(&self) -> Vec<String> {
        loop {
            let fresh =
                std::mem::take(&mut *self.fresh.lock().unwrap_or_else(PoisonError::into_inner));
            if !fresh.is_empty() {
                return fresh;
            }
            self.fresh_waker.notified().await;
        }
    }
}

/// The node's federation state.
#[derive(Debug, Default)]
pub(crate) struct Federation {
    /// The configured peers.
    pub(crate) peers: Peers,
    /// Wakes deliveries.
    pub(crate) outbox: Arc<OutboxSignal>,
    /// Where delivery to each peer stands, as its delivery last saw it
    /// (empty while no server runs).
    pub(crate) statuses: Mutex<HashMap<String, Status>>,
    /// An open connection with each peer (either side dialled it), for
    /// what travels as datagrams: typing.
    pub(crate) links: Mutex<HashMap<String, quinn::Connection>>,
    /// Whether servers that are not configured peers are trusted by
    /// WebPKI and found by DNS SRV (`federation_webpki`): then any domain
    /// may be written to.
    webpki: AtomicBool,
    /// Where this server last reached each peer, as dialled.
    dialled: Mutex<HashMap<String, SocketAddr>>,
}

impl Federation {
    /// Where delivery to `peer` stands, if a delivery runs for it.
    pub(crate) fn status(&self, peer: &str) -> Option<Status> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .cloned()
    }

    /// A connection with `peer` is open: datagrams for it may use it.
    pub(crate) fn linked(&self, peer: &str, connection: &quinn::Connection) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.to_owned(), connection.clone());
    }

    /// Sends `datagram` to `peer` on an open connection with it; dropped
    /// (best effort) when there is none.
    pub(crate) fn send_datagram(&self, peer: &str, datagram: bytes::Bytes) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(connection) = links.get(peer) else {
            return;
        };
        if connection.close_reason().is_some() {
            links.remove(peer);
            return;
        }
        // Too large or refused by the peer: typing is best effort.
        let _ = connection.send_datagram(datagram);
    }

    /// Trusts servers by WebPKI, and finds them by DNS SRV, from now on.
    pub(crate) fn trust_webpki(&self, on: bool) {
        self.webpki.store(on, Ordering::Relaxed);
    }

    /// Whether a server on `domain` may be written to: a configured peer,
    /// or any domain while WebPKI trust is on (it is then found by DNS
    /// and its certificate checked when delivering).
    pub(crate) fn reachable(&self, domain: &str) -> bool {
        self.webpki.load(Ordering::Relaxed) || self.peers.get(domain).is_some()
    }

    /// This server reached `peer` at `address`.
    pub(crate) fn set_dialled(&self, peer: &str, address: SocketAddr) {
        self.dialled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.to_owned(), address);
    }

    /// Where this server last reached `peer`.
    pub(crate) fn dialled(&self, peer: &str) -> Option<SocketAddr> {
        self.dialled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .copied()
    }

    /// Every peer a delivery published a status for, by domain.
    pub(crate) fn peers_with_status(&self) -> Vec<String> {
        let mut peers: Vec<String> = self
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        peers.sort();
        peers
    }

    /// Records where delivery to `peer` stands.
    pub(crate) fn set_status(&self, peer: &str, status: Status) {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.to_owned(), status);
    }
}
