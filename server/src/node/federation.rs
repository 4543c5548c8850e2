//! What the node keeps for federation: the operator's configured peers, in
//! memory, and the signal that wakes the delivery toward a peer when a
//! commit queued transactions for it (FEDERATION.md §5). The `kanal-fed/1`
//! link reads both.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::Notify;

use crate::core::federation::outbox::Status;
use crate::model::{OutboxRow, PeerRecord};
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

/// Most transactions, and bytes of them, a commit hands to the delivery
/// toward one peer that has not taken them yet; past either, the oldest
/// are dropped, and the delivery reads them from the store instead.
const HANDED_ROWS: usize = 4096;
const HANDED_BYTES: usize = 8 << 20;

/// Wakes the delivery toward a peer once a commit queued transactions for
/// it, handing it what was committed so that it need not read it back, and
/// tells the link of peers it has no delivery for yet.
#[derive(Debug, Default)]
pub(crate) struct OutboxSignal {
    by_peer: Mutex<HashMap<String, PeerSignal>>,
    /// Peers signalled before any delivery toward them existed.
    fresh: Mutex<Vec<String>>,
    /// Peers whose delivery ended holding only given-up transactions (their
    /// tombstones are stored): a sign of life from one starts it again.
    resting: Mutex<HashSet<String>>,
    fresh_waker: Notify,
}

/// What waits for the delivery toward one peer.
#[derive(Debug, Default)]
struct PeerSignal {
    waker: Arc<Notify>,
    /// A delivery runs and takes the committed rows (without one, the
    /// rows are only in the store, where a delivery starts reading).
    taking: bool,
    /// The peer showed a sign of life since its delivery last looked.
    alive: bool,
    /// Committed rows not taken yet, in seq order.
    handed: VecDeque<OutboxRow>,
    /// Bytes of their payloads.
    bytes: usize,
}

impl OutboxSignal {
    /// `rows` are committed: each peer's delivery gets its rows and is woken.
    pub(crate) fn committed(&self, rows: Vec<OutboxRow>) {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut woken: Vec<String> = Vec::new();
        for row in rows {
            if !woken.contains(&row.peer) {
                woken.push(row.peer.clone());
            }
            let Some(signal) = by_peer.get_mut(&row.peer) else {
                by_peer.insert(row.peer.clone(), PeerSignal::default());
                self.announce(row.peer);
                continue;
            };
            if signal.taking {
                signal.bytes += row.payload.len();
                signal.handed.push_back(row);
                while signal.handed.len() > HANDED_ROWS || signal.bytes > HANDED_BYTES {
                    let dropped = signal.handed.pop_front().map_or(0, |r| r.payload.len());
                    signal.bytes -= dropped;
                }
            }
        }
        for peer in woken {
            if let Some(signal) = by_peer.get(&peer) {
                signal.waker.notify_one();
            }
        }
    }

    /// What wakes the delivery toward `peer`; from now on it is handed the
    /// rows committed for it (it starts by reading the outbox, so nothing
    /// committed before this call is missed).
    pub(crate) fn waker(&self, peer: &str) -> Arc<Notify> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        let signal = by_peer.entry(peer.to_owned()).or_default();
        signal.taking = true;
        signal.waker.clone()
    }

    /// The rows committed toward `peer` since this was last asked, in seq
    /// order; the oldest may be missing (dropped past the bounds).
    pub(crate) fn take(&self, peer: &str) -> Vec<OutboxRow> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(signal) = by_peer.get_mut(peer) else {
            return Vec::new();
        };
        signal.bytes = 0;
        std::mem::take(&mut signal.handed).into()
    }

    /// `peer` showed a sign of life: its delivery, if one runs, is woken
    /// and ends a backoff.
    /// A resting delivery is announced again.
    pub(crate) fn sign_of_life(&self, peer: &str) {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(signal) = by_peer.get_mut(peer) {
            signal.alive = true;
            signal.waker.notify_one();
        } else if self.resting().contains(peer) {
            let signal = PeerSignal {
                alive: true,
                ..PeerSignal::default()
            };
            by_peer.insert(peer.to_owned(), signal);
            self.announce(peer.to_owned());
        }
    }

    /// Whether the delivery toward `peer` rests (see [`Self::retire`]).
    pub(crate) fn is_resting(&self, peer: &str) -> bool {
        self.resting().contains(peer)
    }

    /// Tells the serve loop to start a delivery toward `peer` (called with
    /// its signal just inserted).
    fn announce(&self, peer: String) {
        self.resting().remove(&peer);
        self.fresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(peer);
        self.fresh_waker.notify_one();
    }

    fn resting(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.resting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `peer` showed a sign of life since this was last asked.
    pub(crate) fn take_sign_of_life(&self, peer: &str) -> bool {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        by_peer
            .get_mut(peer)
            .is_some_and(|signal| std::mem::take(&mut signal.alive))
    }

    /// Makes way for a delivery toward `peer` that is about to start: true
    /// if none runs or is announced for it (then the caller starts it),
    /// false if one does (a commit announced it: see [`Self::fresh`]).
    pub(crate) fn claim(&self, peer: &str) -> bool {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        if by_peer.contains_key(peer) {
            return false;
        }
        by_peer.insert(peer.to_owned(), PeerSignal::default());
        self.resting().remove(peer);
        true
    }

    /// The delivery toward `peer` ends, having nothing to deliver (`resting`:
    /// nothing but given-up transactions): true if nothing was committed for
    /// it meanwhile (from now on, a commit for `peer` announces a new
    /// delivery, and so does a sign of life from a resting one), false if
    /// something was (then it goes on).
    pub(crate) fn retire(&self, peer: &str, resting: bool) -> bool {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        if by_peer.get(peer).is_some_and(|s| !s.handed.is_empty()) {
            return false;
        }
        by_peer.remove(peer);
        if resting {
            self.resting().insert(peer.to_owned());
        }
        true
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

    /// `connection` with `peer` closed: it is forgotten, unless another
    /// took its place.
    pub(crate) fn unlinked(&self, peer: &str, connection: &quinn::Connection) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if links
            .get(peer)
            .is_some_and(|linked| linked.stable_id() == connection.stable_id())
        {
            links.remove(peer);
        }
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

    /// The delivery toward `peer` ended: what it published is dropped.
    pub(crate) fn forget(&self, peer: &str) {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer);
        self.dialled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer);
    }

    /// Records where delivery to `peer` stands.
    pub(crate) fn set_status(&self, peer: &str, status: Status) {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.to_owned(), status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(peer: &str, seq: u64, bytes: usize) -> OutboxRow {
        OutboxRow {
            peer: peer.to_owned(),
            seq,
            payload: bytes::Bytes::from(vec![0u8; bytes]),
            enqueued_at_ms: 0,
        }
    }

    fn seqs(rows: &[OutboxRow]) -> Vec<u64> {
        rows.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_delivery_is_handed_what_was_committed_after_it_started_and_only_that() {
        let signal = OutboxSignal::default();
        // No delivery yet: the peer is announced, its rows left in the store.
        signal.committed(vec![row("b.test", 1, 10), row("b.test", 2, 10)]);
        assert!(signal.take("b.test").is_empty());
        let waker = signal.waker("b.test");
        signal.committed(vec![row("b.test", 3, 10), row("c.test", 1, 10)]);
        signal.committed(vec![row("b.test", 4, 10)]);
        assert_eq!(seqs(&signal.take("b.test")), vec![3, 4]);
        assert!(signal.take("b.test").is_empty(), "taken once");
        // The commit woke it (a permit is stored for the next wait).
        assert!(
            futures::FutureExt::now_or_never(waker.notified()).is_some(),
            "woken"
        );
    }

    #[test]
    fn past_its_bounds_the_oldest_handed_rows_are_dropped_for_the_store_to_give() {
        let signal = OutboxSignal::default();
        let _waker = signal.waker("b.test");
        let rows = (1..=HANDED_ROWS as u64 + 10).map(|seq| row("b.test", seq, 1));
        signal.committed(rows.collect());
        let taken = signal.take("b.test");
        assert_eq!(taken.len(), HANDED_ROWS);
        assert_eq!(taken[0].seq, 11, "the oldest went");
        // By bytes: two rows of half the bound and one more keep the last two.
        let half = HANDED_BYTES / 2;
        signal.committed(vec![
            row("b.test", 1, half),
            row("b.test", 2, half),
            row("b.test", 3, 1),
        ]);
        assert_eq!(seqs(&signal.take("b.test")), vec![2, 3]);
    }

    #[test]
    fn a_delivery_ends_only_with_nothing_handed_and_the_next_commit_announces_a_new_one() {
        let signal = OutboxSignal::default();
        assert!(signal.claim("b.test"), "no delivery yet: started");
        assert!(!signal.claim("b.test"), "one already runs");
        let _waker = signal.waker("b.test");
        signal.sign_of_life("b.test");
        assert!(signal.take_sign_of_life("b.test"));
        assert!(!signal.take_sign_of_life("b.test"), "taken once");

        // Something committed that it did not take yet: it goes on.
        signal.committed(vec![row("b.test", 1, 10)]);
        assert!(!signal.retire("b.test", false));
        assert_eq!(seqs(&signal.take("b.test")), vec![1]);
        assert!(signal.retire("b.test", false));

        // Ended: signs of life are not kept, and a commit announces a new
        // delivery, which reads its rows from the store.
        signal.sign_of_life("b.test");
        assert!(!signal.take_sign_of_life("b.test"));
        signal.committed(vec![row("b.test", 2, 10)]);
        let fresh = futures::FutureExt::now_or_never(signal.fresh()).expect("announced");
        assert_eq!(fresh, vec!["b.test".to_owned()]);
        assert!(!signal.claim("b.test"), "announced: started from there");
    }

    #[test]
    fn a_delivery_resting_with_given_up_transactions_starts_again_at_a_sign_of_life() {
        let signal = OutboxSignal::default();
        assert!(signal.claim("b.test"));
        assert!(signal.claim("c.test"));
        assert!(signal.retire("b.test", true), "resting");
        assert!(signal.retire("c.test", false), "done");
        assert!(signal.is_resting("b.test"));
        assert!(!signal.is_resting("c.test"));

        // Only the resting one starts again, and its delivery sees the
        // sign of life (which ends its backoff).
        signal.sign_of_life("c.test");
        signal.sign_of_life("b.test");
        let fresh = futures::FutureExt::now_or_never(signal.fresh()).expect("announced");
        assert_eq!(fresh, vec!["b.test".to_owned()]);
        assert!(!signal.is_resting("b.test"), "started again");
        let _waker = signal.waker("b.test");
        assert!(signal.take_sign_of_life("b.test"));

        // Started again, it is not resting: after it ends for good, signs
        // of life announce nothing.
        assert!(signal.retire("b.test", false));
        signal.sign_of_life("b.test");
        assert!(futures::FutureExt::now_or_never(signal.fresh()).is_none());
    }
}
