//! The sending side: one delivery per peer, carrying the outbox toward it.
//! It resumes on startup from what is stored, is woken by each commit that
//! queues for the peer and by any sign of life from it, and follows the
//! sans-IO [`Outbox`]'s decisions: what to send, when to try again, what
//! waited past the horizon.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kanal_proto::fed;
use kanal_proto::io::{FrameReader, write_frame};

use super::acked::AckedPoint;
use super::{HANDSHAKE_TIMEOUT, Shared, jitter, now};
use crate::core::engine::Reply;
use crate::core::federation::give_up;
use crate::core::federation::outbox::{Outbox, Told};
use crate::core::federation::wire;

/// Most servers found by DNS greeted at startup, those that delivered here
/// last first: under WebPKI one wildcard certificate can claim any number
/// of domains, and each greeting is a delivery, a lookup and a dial.
const MAX_GREETED: u32 = 1024;

/// Outbox rows read from the store at once.
const READ_AHEAD: u32 = 512;

/// Starts a delivery for every peer with stored transactions, then for
/// each peer a commit first queues for (again after its delivery ended
/// idle).
pub(super) async fn serve(shared: Arc<Shared>) {
    // Ended with this task: aborting it stops every delivery.
    let mut deliveries = tokio::task::JoinSet::new();
    let stored = loop {
        match shared.node.store.outbox_peers().await {
            Ok(peers) => break peers,
            Err(e) => {
                tracing::error!(error = %e, "federation: the outbox could not be read; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let signal = &shared.node.federation.outbox;
    let configured = shared.node.federation.peers.all().into_iter();
    for peer in stored
        .into_iter()
        .chain(configured.map(|p| p.domain))
        .chain(recent_senders(&shared).await)
    {
        if signal.claim(&peer) {
            deliveries.spawn(deliver(shared.clone(), peer));
        }
    }
    loop {
        tokio::select! {
            fresh = signal.fresh() => {
                for peer in fresh {
                    deliveries.spawn(deliver(shared.clone(), peer));
                }
            }
            // Reap the deliveries that ended idle.
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
}

/// The peers that delivered to this server within the horizon, and that it
/// can reach: they may be waiting out a backoff toward it, grown while it
/// was down, which its greeting ends (FEDERATION.md §5.2). Configured peers
/// are greeted anyway.
async fn recent_senders(shared: &Shared) -> Vec<String> {
    let since = now() - shared.policy.horizon_ms;
    match shared
        .node
        .store
        .peers_committed_since(since, MAX_GREETED)
        .await
    {
        Ok(peers) => peers
            .into_iter()
            .filter(|peer| shared.node.federation.reachable(peer))
            .collect(),
        Err(e) => {
            // Only a greeting is lost: they deliver at their next retry.
            tracing::warn!(error = %e, "federation: the peers that delivered here could not be read; not greeting them");
            Vec::new()
        }
    }
}

/// How a connection to the peer ended without failing.
enum Ended {
    /// It may be tried again at once if something is due.
    Done,
    /// Nothing was delivered for the idle time of a peer that is not
    /// configured: the delivery ends.
    Idle,
}

/// The delivery toward `peer`, until it has nothing to deliver for long
/// (peers that are not configured) or the server stops.
async fn deliver(shared: Arc<Shared>, peer: String) {
    let waker = shared.node.federation.outbox.waker(&peer);
    let mut delivery = loop {
        match Delivery::resume(&shared, &peer).await {
            Ok(delivery) => break delivery,
            Err(e) => {
                tracing::error!(%peer, error = %e, "federation: the outbox could not be read; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // Once at startup, the peer is greeted even with nothing to deliver:
    // the connection is a sign of life that ends its backoff toward this
    // server, which may have grown to minutes while this one was down.
    let mut greeting = true;
    loop {
        if let Err(e) = delivery.catch_up(&shared).await {
            tracing::error!(%peer, error = %e, "federation: the outbox could not be read");
        }
        let at = now();
        // What fell due while the last try ran: a try that fails at once
        // (a name that does not resolve) can pass a transaction's horizon
        // between two waits, and a deadline already past is not waited for.
        for told in delivery.outbox.handle_timeout(at, jitter()) {
            delivery.give_up(&shared, told).await;
        }
        delivery.publish(&shared);
        if shared.node.federation.outbox.take_sign_of_life(&peer) {
            delivery.outbox.sign_of_life();
        }
        let pending = delivery.outbox.last() > delivery.outbox.acked();
        let waiting = delivery.outbox.poll_timeout().filter(|&due| due > at);
        let idles = !pending && delivery.idles(&shared);
        // Only given-up transactions left, toward a peer that is not
        // configured: they wait in the store as well as here, so after a
        // quiet spell of failing tries the delivery rests (FEDERATION.md
        // §5.2) rather than retry for ever toward a server that may be gone.
        let resting = pending && delivery.outbox.only_given_up() && delivery.idles(&shared);
        delivery.given_up_since = delivery
            .given_up_since
            .filter(|_| resting)
            .or_else(|| resting.then(tokio::time::Instant::now));
        let rests_at = delivery
            .given_up_since
            .map(|since| since + shared.idle_peer);
        if (!pending && !greeting) || delivery.backing_off(at) {
            // Nothing to send, or a backoff runs: wait for new rows, a sign
            // of life, or the next deadline.
            tokio::select! {
                () = waker.notified() => {}
                () = sleep_until(waiting) => {}
                () = tokio::time::sleep(shared.idle_peer), if idles => {
                    if delivery.retire(&shared).await {
                        return;
                    }
                }
                () = tokio::time::sleep_until(rests_at.unwrap_or_else(tokio::time::Instant::now)), if rests_at.is_some() => {
                    if delivery.retire(&shared).await {
                        return;
                    }
                }
            }
            delivery.timeouts(&shared).await;
            continue;
        }
        // Greetings with nothing to deliver go a few at once: a restart
        // greets every peer that delivered here lately.
        let permit = if greeting && !pending {
            shared.greetings.acquire().await.ok()
        } else {
            None
        };
        let result = delivery.session(&shared, &waker, greeting).await;
        drop(permit);
        greeting = false;
        match result {
            Ok(Ended::Done) => {}
            Ok(Ended::Idle) => {
                if delivery.retire(&shared).await {
                    return;
                }
            }
            Err(why) => {
                if pending {
                    tracing::info!(%peer, "federation: delivery failed, retrying: {why}");
                } else {
                    tracing::debug!(%peer, "federation: the peer could not be greeted: {why}");
                }
                delivery.outbox.failed(now(), &why, jitter());
            }
        }
    }
}

/// Waits until `at` (ms since the Unix epoch), or forever without one.
async fn sleep_until(at: Option<i64>) {
    match at {
        Some(at) => {
            let wait = u64::try_from(at.saturating_sub(now())).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}

/// One peer's delivery state.
struct Delivery {
    peer: String,
    outbox: Outbox,
    /// Stored transactions read ahead, by seq.
    payloads: BTreeMap<u64, Bytes>,
    /// Stores what the peer acknowledged.
    acked: AckedPoint,
    /// Since when nothing but given-up transactions waits, for a peer that
    /// idles.
    given_up_since: Option<tokio::time::Instant>,
}

impl Delivery {
    async fn resume(shared: &Arc<Shared>, peer: &str) -> crate::store::StoreResult<Self> {
        let acked = shared.node.store.outbox_acked(peer).await?;
        let mut delivery = Self {
            peer: peer.to_owned(),
            outbox: Outbox::resume(shared.policy, acked, std::iter::empty()),
            payloads: BTreeMap::new(),
            acked: AckedPoint::start(shared.clone(), peer.to_owned(), acked),
            given_up_since: None,
        };
        delivery.read_stored(shared).await?;
        for given_up in shared.node.store.undelivered(peer).await? {
            if given_up.seq > acked && given_up.replayed_as.is_none() {
                delivery.outbox.given_up(given_up.seq, given_up.refused);
            }
        }
        Ok(delivery)
    }

    /// Queues every transaction committed after the last one known: those
    /// the commits handed over, and from the store what they did not.
    async fn catch_up(&mut self, shared: &Shared) -> crate::store::StoreResult<()> {
        for row in shared.node.federation.outbox.take(&self.peer) {
            if row.seq <= self.outbox.last() {
                continue;
            }
            if row.seq > self.outbox.last() + 1 {
                // Some were dropped before this delivery took them.
                self.read_stored(shared).await?;
                if row.seq <= self.outbox.last() {
                    continue;
                }
            }
            if !self.queue(row.seq, row.enqueued_at_ms, row.payload) {
                break;
            }
        }
        Ok(())
    }

    /// Queues every stored transaction after the last one known.
    async fn read_stored(&mut self, shared: &Shared) -> crate::store::StoreResult<()> {
        loop {
            let rows = shared
                .node
                .store
                .outbox(&self.peer, self.outbox.last(), READ_AHEAD)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                if !self.queue(row.seq, row.enqueued_at_ms, row.payload) {
                    return Ok(());
                }
            }
        }
    }

    /// Queues transaction `seq`, keeping its payload at hand while few
    /// are; false if it does not follow the last one known (one already
    /// known is skipped).
    fn queue(&mut self, seq: u64, enqueued_at_ms: i64, payload: Bytes) -> bool {
        if seq <= self.outbox.last() {
            return true;
        }
        if !self.outbox.queue_stored(seq, enqueued_at_ms) {
            return false;
        }
        if self.payloads.len() < READ_AHEAD as usize * 4 {
            self.payloads.insert(seq, payload);
        }
        true
    }

    /// Whether this delivery ends once it idled long enough: the peer is
    /// not configured (it was found by DNS; a configured one keeps its
    /// delivery and connection).
    fn idles(&self, shared: &Shared) -> bool {
        shared.node.federation.peers.get(&self.peer).is_none()
    }

    /// Ends this delivery, idle, or resting with only given-up transactions
    /// left: what the peer acknowledged is stored, and its state forgotten.
    /// False if something was committed for it meanwhile: then it goes on.
    async fn retire(&mut self, shared: &Shared) -> bool {
        let resting = self.outbox.last() > self.outbox.acked();
        if (resting && !self.outbox.only_given_up()) || !self.idles(shared) {
            return false;
        }
        self.acked.stored().await;
        // Forgotten first: once retired, a new delivery may publish at once
        // (if this one goes on, it publishes again at its next round).
        shared.node.federation.forget(&self.peer);
        if !shared.node.federation.outbox.retire(&self.peer, resting) {
            return false;
        }
        if resting {
            tracing::info!(peer = %self.peer, "federation: only given-up transactions left, undeliverable for a while; the delivery rests until the next transaction or a connection from the peer");
        } else {
            tracing::debug!(peer = %self.peer, "federation: nothing to deliver for a while; the delivery ends until there is");
        }
        true
    }

    fn backing_off(&self, now: i64) -> bool {
        self.outbox
            .status(now)
            .next_retry_ms
            .is_some_and(|at| at > now)
    }

    /// Handles what is due: the senders of transactions past the horizon
    /// are told.
    async fn timeouts(&mut self, shared: &Shared) {
        for told in self.outbox.handle_timeout(now(), jitter()) {
            self.give_up(shared, told).await;
        }
    }

    /// Keeps a transaction the peer will not get and tells its sender,
    /// through the writer, before anything else of this peer's delivery
    /// happens (a refused transaction's acknowledgement, which deletes
    /// its row, comes after). On a restart before that commit, the
    /// transaction is given up, and told, again.
    async fn give_up(&mut self, shared: &Shared, told: Told) {
        report(&self.peer, &told);
        let seq = give_up::seq(&told);
        let enqueued_at_ms = self.outbox.enqueued_at(seq).unwrap_or(0);
        let payload = match self.payload(shared, seq).await {
            Ok(payload) => payload,
            Err(why) => {
                tracing::error!(peer = %self.peer, seq, "federation: an undelivered transaction could not be kept: {why}");
                return;
            }
        };
        let command = give_up::command(
            &self.peer,
            told,
            shared.policy.horizon_ms,
            payload.to_vec(),
            enqueued_at_ms,
        );
        if let Reply::Refused(why) = shared.node.writer.enqueue(command).await.await {
            tracing::error!(peer = %self.peer, seq, "federation: an undelivered transaction could not be kept: {}", why.message);
        }
    }

    /// Makes the status visible to the operator.
    fn publish(&self, shared: &Shared) {
        shared
            .node
            .federation
            .set_status(&self.peer, self.outbox.status(now()));
    }

    /// The payload of transaction `seq`, read from the store if need be.
    async fn payload(&mut self, shared: &Shared, seq: u64) -> Result<Bytes, String> {
        if let Some(payload) = self.payloads.get(&seq) {
            return Ok(payload.clone());
        }
        let rows = shared
            .node
            .store
            .outbox(&self.peer, seq - 1, READ_AHEAD)
            .await
            .map_err(|e| format!("the outbox could not be read: {e}"))?;
        for row in rows {
            self.payloads.insert(row.seq, row.payload);
        }
        self.payloads
            .get(&seq)
            .cloned()
            .ok_or_else(|| format!("transaction {seq} is not in the outbox"))
    }

    /// One connection to the peer: sends what the outbox says, takes its
    /// receipts, until it fails; a `greeting` ends once nothing is left to
    /// deliver.
    async fn session(
        &mut self,
        shared: &Shared,
        waker: &tokio::sync::Notify,
        greeting: bool,
    ) -> Result<Ended, String> {
        let connection = super::dial::connect(shared, &self.peer).await?;
        let (mut send, recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(
            &mut send,
            &fed::Open {
                origin: shared.node.domain.clone(),
                version: kanal_proto::FEDERATION_VERSION,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut receipts = FrameReader::new(recv, 64 * 1024);
        let ready: fed::Receipt = tokio::time::timeout(HANDSHAKE_TIMEOUT, receipts.next())
            .await
            .map_err(|_| "no Ready in time".to_owned())?
            .map_err(|e| e.to_string())?
            .ok_or("the peer ended the stream before Ready")?;
        match ready.kind {
            Some(fed::receipt::Kind::Ready(ready)) => {
                let up_to = self.outbox.ready(ready.committed);
                self.acknowledged(up_to)?
            }
            Some(fed::receipt::Kind::RefusedOpen(refused)) => {
                return Err(format!("the peer refused this server: {}", refused.reason));
            }
            _ => return Err("the peer answered Open with something else than Ready".into()),
        }
        self.outbox.sign_of_life();
        super::typing::attach(&shared.node, &shared.typing, &self.peer, &connection);
        tracing::debug!(peer = %self.peer, acked = self.outbox.acked(), "federation: delivering");
        // Since when nothing was left to deliver, for a peer that idles.
        let mut idle_since: Option<tokio::time::Instant> = None;
        loop {
            while let Some(transmit) = self.outbox.poll_send(now()) {
                let frame = if transmit.tombstone {
                    wire::tombstone(transmit.seq)
                } else {
                    self.payload(shared, transmit.seq).await?
                };
                // The stored payload is the frame's message: prefix its length.
                let mut prefixed = bytes::BytesMut::with_capacity(frame.len() + 4);
                prost::encoding::encode_varint(frame.len() as u64, &mut prefixed);
                prefixed.extend_from_slice(&frame);
                send.write_all(&prefixed).await.map_err(|e| e.to_string())?;
            }
            self.publish(shared);
            let delivered = self.outbox.last() == self.outbox.acked();
            if greeting && delivered {
                let _ = send.finish();
                connection.close(0u32.into(), b"nothing to deliver");
                return Ok(Ended::Done);
            }
            idle_since = match idle_since {
                Some(since) if delivered => Some(since),
                _ => (delivered && self.idles(shared)).then(tokio::time::Instant::now),
            };
            let deadline = self.outbox.poll_timeout();
            tokio::select! {
                () = tokio::time::sleep_until(idle_since.unwrap_or_else(tokio::time::Instant::now) + shared.idle_peer), if idle_since.is_some() => {
                    let _ = send.finish();
                    connection.close(0u32.into(), b"idle");
                    return Ok(Ended::Idle);
                }
                receipt = receipts.next::<fed::Receipt>() => {
                    let receipt = receipt.map_err(|e| e.to_string())?.ok_or("the peer ended the stream")?;
                    match receipt.kind {
                        Some(fed::receipt::Kind::Ack(ack)) => self.acknowledged(ack.up_to)?,
                        Some(fed::receipt::Kind::Refuse(refused)) => {
                            tracing::warn!(peer = %self.peer, seq = refused.seq, code = refused.code, "federation: the peer refused a transaction: {}", refused.reason);
                            if let Some(told) = self.outbox.refused(refused.seq, &refused.reason) {
                                self.give_up(shared, told).await;
                            }
                        }
                        _ => return Err("the peer sent an unexpected receipt".into()),
                    }
                }
                () = waker.notified() => {
                    self.catch_up(shared).await.map_err(|e| e.to_string())?;
                }
                () = sleep_until(deadline) => {
                    self.timeouts(shared).await;
                    if self.backing_off(now()) {
                        // The outbox counted the failure itself.
                        return Ok(Ended::Done);
                    }
                }
            }
        }
    }

    /// The peer committed everything up to `up_to`: the outbox goes on at
    /// once, and the store learns it shortly after.
    fn acknowledged(&mut self, up_to: u64) -> Result<(), String> {
        if up_to <= self.outbox.acked() {
            self.outbox.sign_of_life();
            return Ok(());
        }
        self.outbox
            .ack(up_to, now())
            .map_err(|e| format!("the peer acknowledged {} of {} sent", e.acked, e.sent))?;
        self.acked.raise(up_to);
        self.payloads = self.payloads.split_off(&(up_to + 1));
        Ok(())
    }
}

/// Tells the operator what became of a transaction the peer will not get.
fn report(peer: &str, told: &Told) {
    match told {
        Told::Expired(seq) => {
            tracing::warn!(%peer, seq, "federation: transaction undelivered at the horizon; given up");
        }
        Told::Refused { seq, reason } => {
            tracing::warn!(%peer, seq, "federation: transaction refused for good: {reason}");
        }
    }
}
