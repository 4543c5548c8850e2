//! A node's delivery toward one peer, as `links/federation/deliver.rs`
//! does it without sockets or a clock: it reads the outbox rows the
//! node's commits queued, follows the real [`Outbox`] (what to send, when
//! to try again, what waited past the horizon), stores each
//! acknowledgement with `ack_outbox`, and keeps a given-up transaction
//! and tells its sender through the node's sequencer. It holds nothing the
//! store does not: a restarted node resumes it from the store alone.

use bytes::Bytes;
use kanal_proto::fed;

use super::federation::FedPacket;
use super::link::Rng;
use super::ready;
use crate::core::engine::{Published, Reply};
use crate::core::federation::give_up;
use crate::core::federation::outbox::{Outbox, Policy, Told};
use crate::core::federation::wire;
use crate::node::sequencer::Sequencer;
use crate::store::Store;
use crate::store::memory::MemoryStore;

/// Longest the `Open`/`Ready` exchange may take, ms (the link's
/// `HANDSHAKE_TIMEOUT`).
pub(crate) const HANDSHAKE_MS: i64 = 10_000;

/// Outbox rows read from the store at once.
const READ_AHEAD: u32 = 512;

/// Where the delivery's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    /// None: waiting for rows, a backoff's end or a sign of life.
    Closed,
    /// `Open` sent at `since`; waiting for `Ready`.
    Opening { session: u64, since: i64 },
    /// Delivering; a `greeting` closes once nothing is left to deliver.
    Open { session: u64, greeting: bool },
}

/// One node's delivery toward one peer. See the module docs.
#[derive(Debug)]
pub(crate) struct Delivery {
    peer: String,
    horizon_ms: i64,
    outbox: Outbox,
    connection: Connection,
    /// The next connection greets the peer even with nothing to deliver
    /// (a restarted server's sign of life, FEDERATION.md §5.2).
    greeting: bool,
    /// The last instant whose deadlines were handled: a deadline at or
    /// before it is one handling left in place (a backoff's end while a
    /// connection opens), which the delivery does not wait for.
    handled_at: i64,
    /// Transaction frames sent (tombstones included, each try counted).
    pub(crate) sent: u64,
    /// Connections opened.
    pub(crate) connections: u64,
}

impl Delivery {
    /// The delivery toward `peer` as the store has it: acknowledged up to
    /// its cursor, every stored row after it queued, those given up in an
    /// earlier run marked so (never told again). A `greeting` delivery
    /// connects once even with nothing to deliver, as a server does on
    /// startup.
    pub(crate) fn resume(
        store: &MemoryStore,
        peer: &str,
        policy: Policy,
        greeting: bool,
        now: i64,
    ) -> Self {
        let acked = ready(store.outbox_acked(peer)).expect("outbox cursor");
        let mut delivery = Self {
            peer: peer.to_owned(),
            horizon_ms: policy.horizon_ms,
            outbox: Outbox::resume(policy, acked, std::iter::empty()),
            connection: Connection::Closed,
            greeting,
            handled_at: now,
            sent: 0,
            connections: 0,
        };
        delivery.catch_up(store);
        for given_up in ready(store.undelivered(peer)).expect("undelivered") {
            if given_up.seq > acked && given_up.replayed_as.is_none() {
                delivery.outbox.given_up(given_up.seq, given_up.refused);
            }
        }
        delivery
    }

    /// Queues every stored row after the last one known.
    pub(crate) fn catch_up(&mut self, store: &MemoryStore) {
        loop {
            let rows = ready(store.outbox(&self.peer, self.outbox.last(), READ_AHEAD))
                .expect("outbox rows");
            if rows.is_empty() {
                return;
            }
            for row in rows {
                if !self.outbox.queue_stored(row.seq, row.enqueued_at_ms) {
                    return;
                }
            }
        }
    }

    /// Every transaction the peer acknowledged.
    pub(crate) fn acked(&self) -> u64 {
        self.outbox.acked()
    }

    /// The last transaction queued.
    pub(crate) fn last(&self) -> u64 {
        self.outbox.last()
    }

    /// The peer showed it is there: a backoff ends at once.
    pub(crate) fn sign_of_life(&mut self) {
        self.outbox.sign_of_life();
    }

    /// The next instant [`Delivery::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<i64> {
        let handshake = match self.connection {
            Connection::Opening { since, .. } => Some(since + HANDSHAKE_MS),
            _ => None,
        };
        let outbox = self
            .outbox
            .poll_timeout()
            .filter(|&at| at > self.handled_at);
        handshake.into_iter().chain(outbox).min()
    }

    /// What is due at `now`: a `Ready` that did not come, a try without
    /// acknowledgements (the connection ends), transactions past the
    /// horizon (kept, their senders told). Returns what telling published.
    pub(crate) fn handle_timeout(
        &mut self,
        now: i64,
        store: &MemoryStore,
        sequencer: &mut Sequencer,
        rng: &mut Rng,
    ) -> Vec<Published> {
        if let Connection::Opening { since, .. } = self.connection
            && since + HANDSHAKE_MS <= now
        {
            self.fail(now, "no Ready in time", rng);
        }
        let mut published = Vec::new();
        for told in self.outbox.handle_timeout(now, rng.next_u64()) {
            published.extend(self.give_up(told, now, store, sequencer));
        }
        if matches!(self.connection, Connection::Open { .. }) && self.backing_off(now) {
            // The outbox counted the failure itself.
            self.connection = Connection::Closed;
        }
        published
    }

    /// Everything at `now` handled: opens a connection when there is
    /// something to deliver (or a greeting to make) and no backoff runs,
    /// and sends what the outbox lets out on an open one.
    pub(crate) fn poll(
        &mut self,
        now: i64,
        store: &MemoryStore,
        next_session: &mut u64,
        out: &mut Vec<FedPacket>,
    ) {
        match self.connection {
            Connection::Closed => {
                let pending = self.outbox.last() > self.outbox.acked();
                if (pending || self.greeting) && !self.backing_off(now) {
                    *next_session += 1;
                    let session = *next_session;
                    self.connections += 1;
                    self.connection = Connection::Opening {
                        session,
                        since: now,
                    };
                    out.push(FedPacket::Open { session });
                }
            }
            Connection::Opening { .. } => {}
            Connection::Open { session, greeting } => {
                while let Some(transmit) = self.outbox.poll_send(now) {
                    let frame = if transmit.tombstone {
                        wire::tombstone(transmit.seq)
                    } else {
                        self.payload(store, transmit.seq)
                    };
                    self.sent += 1;
                    out.push(FedPacket::Transaction { session, frame });
                }
                if greeting && self.outbox.last() == self.outbox.acked() {
                    self.connection = Connection::Closed;
                }
            }
        }
        self.handled_at = now;
    }

    /// A packet of the peer's on one of this delivery's connections.
    /// Returns what telling senders of refused transactions published.
    pub(crate) fn receive(
        &mut self,
        packet: FedPacket,
        now: i64,
        store: &MemoryStore,
        sequencer: &mut Sequencer,
        rng: &mut Rng,
    ) -> Vec<Published> {
        let current = match self.connection {
            Connection::Opening { session, .. } | Connection::Open { session, .. } => session,
            Connection::Closed => return Vec::new(),
        };
        let mut published = Vec::new();
        match packet {
            // A connection that ended: nothing of it counts any more.
            FedPacket::Reset { session } | FedPacket::Receipts { session, .. }
                if session != current => {}
            FedPacket::Reset { .. } => self.fail(now, "the connection was reset", rng),
            FedPacket::Receipts { receipts, .. } => {
                for receipt in receipts {
                    if let Err(why) = self.take(receipt, now, store, sequencer, &mut published) {
                        self.fail(now, &why, rng);
                        break;
                    }
                }
            }
            FedPacket::Open { .. } | FedPacket::Transaction { .. } => {}
        }
        published
    }

    /// One receipt on the current connection; an error ends it.
    fn take(
        &mut self,
        receipt: fed::Receipt,
        now: i64,
        store: &MemoryStore,
        sequencer: &mut Sequencer,
        published: &mut Vec<Published>,
    ) -> Result<(), String> {
        match (self.connection, receipt.kind) {
            (Connection::Opening { session, .. }, Some(fed::receipt::Kind::Ready(ready))) => {
                let up_to = self.outbox.ready(ready.committed);
                self.acknowledged(store, up_to, now)?;
                self.outbox.sign_of_life();
                self.connection = Connection::Open {
                    session,
                    greeting: std::mem::take(&mut self.greeting),
                };
                Ok(())
            }
            (_, Some(fed::receipt::Kind::RefusedOpen(refused))) => {
                Err(format!("the peer refused this server: {}", refused.reason))
            }
            (Connection::Open { .. }, Some(fed::receipt::Kind::Ack(ack))) => {
                self.acknowledged(store, ack.up_to, now)
            }
            (Connection::Open { .. }, Some(fed::receipt::Kind::Refuse(refused))) => {
                if let Some(told) = self.outbox.refused(refused.seq, &refused.reason) {
                    published.extend(self.give_up(told, now, store, sequencer));
                }
                Ok(())
            }
            _ => Err("the peer sent an unexpected receipt".into()),
        }
    }

    /// The peer committed everything up to `up_to`: stored, then the rows
    /// go.
    fn acknowledged(&mut self, store: &MemoryStore, up_to: u64, now: i64) -> Result<(), String> {
        if up_to <= self.outbox.acked() {
            self.outbox.sign_of_life();
            return Ok(());
        }
        self.outbox
            .ack(up_to, now)
            .map_err(|e| format!("the peer acknowledged {} of {} sent", e.acked, e.sent))?;
        ready(store.ack_outbox(&self.peer, up_to))
            .map_err(|e| format!("the acknowledgement could not be stored: {e}"))
    }

    /// The connection failed at `now`: everything unacknowledged goes
    /// again after a backoff, on a new one.
    fn fail(&mut self, now: i64, why: &str, rng: &mut Rng) {
        self.outbox.failed(now, why, rng.next_u64());
        self.connection = Connection::Closed;
        // A greeting that failed is not made again: the next connection
        // delivers, or nothing is to be delivered.
        self.greeting = false;
    }

    fn backing_off(&self, now: i64) -> bool {
        self.outbox
            .status(now)
            .next_retry_ms
            .is_some_and(|at| at > now)
    }

    /// Keeps a transaction the peer will not get and tells its sender, in
    /// one commit through the sequencer, before anything else of this
    /// delivery happens.
    fn give_up(
        &mut self,
        told: Told,
        now: i64,
        store: &MemoryStore,
        sequencer: &mut Sequencer,
    ) -> Vec<Published> {
        let seq = give_up::seq(&told);
        let enqueued_at_ms = self.outbox.enqueued_at(seq).unwrap_or(0);
        let payload = self.payload(store, seq).to_vec();
        let command = give_up::command(&self.peer, told, self.horizon_ms, payload, enqueued_at_ms);
        let (replies, published) = ready(sequencer.order(&[command], now));
        assert_eq!(
            replies,
            vec![Reply::Done],
            "transaction {seq} toward {} could not be kept",
            self.peer
        );
        published
    }

    /// The stored frame of transaction `seq`, which waits in the outbox
    /// until the peer acknowledges it.
    fn payload(&self, store: &MemoryStore, seq: u64) -> Bytes {
        ready(store.outbox(&self.peer, seq - 1, 1))
            .expect("outbox rows")
            .into_iter()
            .find(|row| row.seq == seq)
            .map(|row| row.payload)
            .unwrap_or_else(|| panic!("transaction {seq} toward {} is not stored", self.peer))
    }
}
