//! News between nodes over NATS: which logs a node advanced (so the others'
//! sessions read the new events from the database), ephemeral datagrams,
//! and sweeps ("news from me may have been lost: check").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt as _;
use tokio::sync::Notify;

use super::Subjects;
use crate::model::PartyId;
use crate::node::hub::{Announcer, Hub};

/// Most parties whose news waits to be sent while NATS is unreachable;
/// past it the news is dropped and a sweep is sent instead.
const MAX_PENDING: usize = 100_000;

/// Most (party, head) pairs in one message (16 bytes each: 64 KiB).
const MAX_PAIRS: usize = 4096;

/// Datagrams waiting to be sent to other nodes before new ones are dropped
/// (typing is best effort).
const MAX_DATAGRAMS: usize = 1024;

/// News waiting to be sent: the newest head per party (news of one party
/// coalesces while NATS is slow or away), datagrams, and whether a sweep is due.
#[derive(Default)]
struct Pending {
    heads: HashMap<PartyId, u64>,
    datagrams: Vec<(Vec<PartyId>, Bytes)>,
    sweep: bool,
}

/// The hub's announcer: queues news for the sending task, never blocking
/// the writer.
pub(super) struct Outgoing {
    node_id: u64,
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Outgoing {
    /// News of node `node_id`, none queued yet.
    pub(super) fn new(node_id: u64) -> Self {
        Self {
            node_id,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
        }
    }
}

impl Outgoing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Announcer for Outgoing {
    fn logs_advanced(&self, heads: &[(PartyId, u64)]) {
        {
            let mut pending = self.lock();
            for &(party, head) in heads {
                let newest = pending.heads.entry(party).or_insert(head);
                *newest = (*newest).max(head);
            }
            if pending.heads.len() > MAX_PENDING {
                // Too much news to keep: the others check everything instead.
                pending.heads.clear();
                pending.sweep = true;
            }
        }
        self.wake.notify_one();
    }

    fn datagram(&self, parties: &[PartyId], datagram: &Bytes) {
        {
            let mut pending = self.lock();
            if pending.datagrams.len() >= MAX_DATAGRAMS {
                return;
            }
            pending.datagrams.push((parties.to_vec(), datagram.clone()));
        }
        self.wake.notify_one();
    }
}

/// What the connection's ups and downs mean for news.
pub(super) fn on_connection_event(
    event: async_nats::Event,
    outgoing: &Outgoing,
    hub: &Hub,
    connected: &AtomicBool,
) {
    match event {
        async_nats::Event::Connected => {
            connected.store(true, Ordering::Relaxed);
            // While away, news from this node and to it may have been
            // lost: tell the others to check, and check here.
            tracing::info!("connected to NATS; sessions check the database for missed events");
            outgoing.lock().sweep = true;
            outgoing.wake.notify_one();
            hub.check_all();
        }
        async_nats::Event::Disconnected => {
            connected.store(false, Ordering::Relaxed);
            tracing::warn!(
                "disconnected from NATS: events reach sessions on other nodes once it is back"
            );
        }
        async_nats::Event::SlowConsumer(_) => {
            tracing::warn!("NATS dropped news for this node; sessions check the database");
            hub.check_all();
        }
        other => tracing::debug!(event = %other, "NATS"),
    }
}

/// Sends queued news whenever there is some.
pub(super) async fn send(client: async_nats::Client, subjects: Subjects, outgoing: Arc<Outgoing>) {
    loop {
        outgoing.wake.notified().await;
        let (heads, datagrams, sweep) = {
            let mut pending = outgoing.lock();
            (
                std::mem::take(&mut pending.heads),
                std::mem::take(&mut pending.datagrams),
                std::mem::take(&mut pending.sweep),
            )
        };
        let heads: Vec<(PartyId, u64)> = heads.into_iter().collect();
        let mut messages = Vec::new();
        if sweep {
            messages.push((subjects.sweep.clone(), header(outgoing.node_id, 0).freeze()));
        }
        for chunk in heads.chunks(MAX_PAIRS) {
            let mut payload = header(outgoing.node_id, chunk.len() * 16);
            for &(party, head) in chunk {
                payload.put_i64(party);
                payload.put_u64(head);
            }
            messages.push((subjects.logs.clone(), payload.freeze()));
        }
        for (parties, datagram) in datagrams {
            let mut payload = header(outgoing.node_id, 4 + parties.len() * 8 + datagram.len());
            payload.put_u32(u32::try_from(parties.len()).unwrap_or(u32::MAX));
            for party in parties {
                payload.put_i64(party);
            }
            payload.put_slice(&datagram);
            messages.push((subjects.typing.clone(), payload.freeze()));
        }
        for (subject, payload) in messages {
            // Waits while the client's queue is full (NATS away): news
            // meanwhile coalesces in `pending`.
            if let Err(e) = client.publish(subject, payload).await {
                tracing::warn!(error = %e, "news to other nodes not sent; they check later");
                outgoing.lock().sweep = true;
            }
        }
    }
}

fn header(node_id: u64, body: usize) -> BytesMut {
    let mut payload = BytesMut::with_capacity(8 + body);
    payload.put_u64(node_id);
    payload
}

/// Hands news from other nodes to the hub.
pub(super) async fn receive(
    mut incoming: async_nats::Subscriber,
    subjects: Subjects,
    node_id: u64,
    hub: Arc<Hub>,
) {
    while let Some(message) = incoming.next().await {
        let mut payload = message.payload;
        if payload.len() < 8 || payload.get_u64() == node_id {
            continue;
        }
        let subject = message.subject.as_str();
        if subject == subjects.logs {
            while payload.len() >= 16 {
                let party = payload.get_i64();
                let head = payload.get_u64();
                hub.advance(party, head);
            }
        } else if subject == subjects.sweep {
            hub.check_all();
        } else if subject == subjects.typing {
            if payload.len() < 4 {
                continue;
            }
            let count = payload.get_u32() as usize;
            if payload.len() < count.saturating_mul(8) {
                continue;
            }
            let parties: Vec<PartyId> = (0..count).map(|_| payload.get_i64()).collect();
            hub.relay_local_datagram(&parties, u64::MAX, payload);
        }
    }
}
