//! Live fan-out: committed events go from the writer to every session of the
//! recipient that is listening, without copying the event body per recipient.
//!
//! Each listening session has a bounded queue. A session that falls behind
//! far enough to fill it is flagged as lagged and the event is dropped for it;
//! the session then replays from the store, so a slow reader costs memory
//! bounded by its queue, never an unbounded backlog, and never loses an event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::core::engine::Delivery;
use crate::model::PartyId;

/// Events queued per listening session before it counts as lagged.
pub const SESSION_QUEUE: usize = 1024;

/// One committed event for one listener.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Seq in the listener's party log.
    pub seq: u64,
    /// Encoded `pb::Event.kind` field, shared between recipients.
    pub kind: Bytes,
}

/// Routes committed events and ephemeral datagrams to listening sessions.
#[derive(Debug, Default)]
pub struct Hub {
    listeners: Mutex<HashMap<PartyId, Vec<Listener>>>,
    next_id: AtomicU64,
}

#[derive(Debug, Clone)]
struct Listener {
    id: u64,
    tx: mpsc::Sender<LiveEvent>,
    lagged: Arc<AtomicBool>,
    connection: quinn::Connection,
}

/// A session's registration; unregisters when dropped.
#[derive(Debug)]
pub struct Subscription {
    /// Live events in seq order (with gaps only after `lagged` was set).
    pub events: mpsc::Receiver<LiveEvent>,
    /// Set when events were dropped because the queue was full.
    pub lagged: Arc<AtomicBool>,
    hub: Arc<Hub>,
    party: PartyId,
    id: u64,
}

impl Hub {
    /// Registers a session of `party` that wants live events and datagrams.
    pub fn subscribe(
        self: &Arc<Self>,
        party: PartyId,
        connection: quinn::Connection,
    ) -> Subscription {
        let (tx, events) = mpsc::channel(SESSION_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(party).or_default().push(Listener {
            id,
            tx,
            lagged: lagged.clone(),
            connection,
        });
        Subscription {
            events,
            lagged,
            hub: self.clone(),
            party,
            id,
        }
    }

    /// Hands committed events to their recipients' listening sessions.
    pub fn publish(&self, deliveries: &[Delivery]) {
        if deliveries.is_empty() {
            return;
        }
        let listeners = self.lock();
        for delivery in deliveries {
            let Some(sessions) = listeners.get(&delivery.party) else {
                continue;
            };
            for listener in sessions {
                let event = LiveEvent {
                    seq: delivery.seq,
                    kind: delivery.kind.clone(),
                };
                if listener.tx.try_send(event).is_err() {
                    listener.lagged.store(true, Ordering::Release);
                }
            }
        }
    }

    /// Sends an ephemeral datagram to every listening session of `parties`,
    /// except the connection it came from. Best effort, like QUIC datagrams.
    pub fn relay_datagram(&self, parties: &[PartyId], from: &quinn::Connection, datagram: Bytes) {
        let listeners = self.lock();
        for party in parties {
            for listener in listeners.get(party).into_iter().flatten() {
                if listener.connection.stable_id() != from.stable_id() {
                    // Dropped when the peer's datagram buffer is full: typing is ephemeral.
                    let _ = listener.connection.send_datagram(datagram.clone());
                }
            }
        }
    }

    fn unsubscribe(&self, party: PartyId, id: u64) {
        let mut listeners = self.lock();
        if let Some(sessions) = listeners.get_mut(&party) {
            sessions.retain(|l| l.id != id);
            if sessions.is_empty() {
                listeners.remove(&party);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartyId, Vec<Listener>>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.party, self.id);
    }
}

/// The bytes before `kind` in the frame of `Push{event: Event{seq, kind}}`.
/// Writing this header and then `kind` yields the whole frame, so the body is
/// never copied per recipient.
pub fn push_event_header(seq: u64, kind_len: usize) -> Bytes {
    use prost::encoding::{encode_varint, encoded_len_varint};
    // Event: field 1 (seq, varint) then the kind field's own bytes.
    let event_len = 1 + encoded_len_varint(seq) + kind_len;
    // Push: field 1 (event, length-delimited).
    let push_len = 1 + encoded_len_varint(event_len as u64) + event_len;
    let mut header = BytesMut::with_capacity(24);
    encode_varint(push_len as u64, &mut header);
    header.put_u8(0x0a);
    encode_varint(event_len as u64, &mut header);
    header.put_u8(0x08);
    encode_varint(seq, &mut header);
    header.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanal_proto::pb;

    #[test]
    fn header_plus_shared_kind_is_the_prost_frame() {
        let kind = pb::event::Kind::Receipt(pb::Receipt {
            conversation: "localhost/abc".into(),
            party: "bob@localhost".into(),
            kind: pb::ReceiptKind::Read as i32,
            up_to_seq: 9,
        });
        let mut kind_bytes = BytesMut::new();
        kind.encode(&mut kind_bytes);
        for seq in [1, 127, 128, 300_000, u64::MAX] {
            let push = pb::Push {
                kind: Some(pb::push::Kind::Event(pb::Event {
                    seq,
                    kind: Some(kind.clone()),
                })),
            };
            let expected = kanal_proto::frame::encode_to_bytes(&push);
            let mut got = push_event_header(seq, kind_bytes.len()).to_vec();
            got.extend_from_slice(&kind_bytes);
            assert_eq!(got, expected.to_vec(), "seq {seq}");
        }
    }
}
