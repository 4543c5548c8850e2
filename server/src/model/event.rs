//! Events: what a party's ordered event log tells it. Each event has one
//! constructor, used both when it happens and when a log is replayed, so a
//! replayed event equals the live one.

use kanal_proto::address::Address;

use super::conversation::{ConversationRecord, ConversationView, Message};
use super::party::PartyId;

/// Delivered or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReceiptKind {
    /// The party's client has the message.
    Delivered,
    /// The party has seen the message.
    Read,
}

impl ReceiptKind {
    /// Stable number stored in the database.
    pub const fn as_i64(self) -> i64 {
        match self {
            ReceiptKind::Delivered => 1,
            ReceiptKind::Read => 2,
        }
    }

    /// The kind for a stored number.
    pub const fn from_i64(value: i64) -> Option<Self> {
        match value {
            1 => Some(ReceiptKind::Delivered),
            2 => Some(ReceiptKind::Read),
            _ => None,
        }
    }
}

/// A party's delivered or read watermark moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The conversation.
    pub conversation: kanal_proto::address::ConversationId,
    /// Whose watermark.
    pub party: Address,
    /// Delivered or read.
    pub kind: ReceiptKind,
    /// The new watermark.
    pub up_to: u64,
}

/// One entry of a party's event log. New kinds (system events of the
/// service desk: assigned, status changed) are added as variants; every
/// link renders each kind it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message was appended to a conversation the party receives.
    Message(Message),
    /// The party now receives this conversation, shown as it stood at that
    /// moment (the new party's watermarks are zero).
    ConversationAdded(ConversationView),
    /// A party's watermark moved.
    Receipt(Receipt),
    /// An entry of a conversation's desk log, for the agents of its inbox.
    Desk(DeskRecord),
    /// Something the party sent will not reach another server.
    DeliveryFailed(DeliveryFailure),
}

/// Something a party sent that another server will not get (PROTOCOL.md
/// §6.6): told to the sender once, in its own log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The conversation.
    pub conversation: kanal_proto::address::ConversationId,
    /// The message's idempotency key; empty: the conversation's start.
    pub client_msg_id: String,
    /// The message's seq, if its host ordered it (0: it never got there).
    pub seq: u64,
    /// The server it did not reach.
    pub server: String,
    /// Refused for good by that server, rather than undelivered within the
    /// horizon.
    pub refused: bool,
    /// Why, for people.
    pub reason: String,
}

impl DeliveryFailure {
    /// As the store keeps it: an encoded `kanal.v1.DeliveryFailed`.
    pub fn encode(&self) -> bytes::Bytes {
        prost::Message::encode_to_vec(&self.to_pb()).into()
    }

    /// The failure as the client protocol tells it.
    pub fn to_pb(&self) -> kanal_proto::pb::DeliveryFailed {
        use kanal_proto::pb::DeliveryFailure as Failure;
        kanal_proto::pb::DeliveryFailed {
            conversation: self.conversation.to_string(),
            client_msg_id: self.client_msg_id.clone(),
            seq: self.seq,
            server: self.server.clone(),
            failure: if self.refused {
                Failure::Refused
            } else {
                Failure::Expired
            } as i32,
            reason: self.reason.clone(),
        }
    }

    /// A failure the store kept, of a message of `conversation`; `None` if
    /// `stored` does not decode.
    pub fn decode(
        conversation: kanal_proto::address::ConversationId,
        stored: &[u8],
    ) -> Option<Self> {
        let pb: kanal_proto::pb::DeliveryFailed = prost::Message::decode(stored).ok()?;
        Some(Self {
            conversation,
            refused: pb.failure() == kanal_proto::pb::DeliveryFailure::Refused,
            client_msg_id: pb.client_msg_id,
            seq: pb.seq,
            server: pb.server,
            reason: pb.reason,
        })
    }
}

/// An entry of a conversation's desk log as its agents receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskRecord {
    /// The conversation.
    pub conversation: kanal_proto::address::ConversationId,
    /// Its dseq in the conversation's desk log.
    pub dseq: u64,
    /// The encoded `kanal.v1.DeskEvent`, as stored.
    pub payload: bytes::Bytes,
}

impl Event {
    /// The conversation was added to a party's log when its last seq was
    /// `last_seq` and the time `at_ms`.
    pub fn conversation_added(record: &ConversationRecord, last_seq: u64, at_ms: i64) -> Self {
        let mut view = ConversationView::of(record, 0, 0);
        view.last_seq = last_seq;
        view.last_activity_ms = at_ms;
        Event::ConversationAdded(view)
    }
}

/// What an event row points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRef {
    /// Message `seq` of the conversation.
    Message {
        /// The message's seq in its conversation.
        seq: u64,
    },
    /// The party now takes part in the conversation, whose last seq was
    /// `last_seq` at that moment.
    ConversationAdded {
        /// The conversation's last seq when the party was added.
        last_seq: u64,
    },
    /// `party`'s watermark of `kind` moved to `up_to`.
    Receipt {
        /// Whose watermark moved.
        party: PartyId,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The new watermark.
        up_to: u64,
    },
    /// Entry `dseq` of the conversation's desk log.
    Desk {
        /// Its dseq.
        dseq: u64,
    },
    /// Transaction `seq` toward another server will not be delivered: the
    /// failure is stored with it ([`Undelivered`](super::Undelivered)).
    DeliveryFailed {
        /// Its seq in that server's sequence.
        seq: u64,
    },
}

/// Where a party's event log ends, as the engine needs it to append.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogHead {
    /// The highest seq in the log (0 if empty).
    pub head: u64,
    /// The inbox whose log the party's log follows at its end, and the
    /// inbox's next event seq: that event, if the party receives it through
    /// the inbox, continues the span without a row of its own.
    pub follows: Option<(PartyId, u64)>,
    /// The seq of the log's last row of its own: `head` itself, or where
    /// the span it follows starts (0 if the log is empty).
    pub last_row: u64,
}

/// Where an inbox's log ends, as the engine needs it to append.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxHead {
    /// The highest seq of the inbox's log (0 if empty).
    pub head: u64,
    /// Changes whenever who follows the log changes (see
    /// [`InboxClaim`](super::InboxClaim)); only stores that several nodes
    /// write keep it, others say 0.
    pub version: u64,
}
