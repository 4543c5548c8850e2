//! What servers tell each other (FEDERATION.md): a member's change for the
//! conversation's host, and the host's ordered changes for the servers of
//! the other members. The `kanal-fed/1` link carries them as transactions,
//! in each peer's sequence; the engine applies them.

use kanal_proto::address::{Address, ConversationId};

use super::conversation::Body;
use super::party::PartyKind;

/// One transaction's content, as the engine applies it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Transaction {
    /// A member's change, for the conversation's host.
    Submit {
        /// The conversation: the receiver hosts it.
        #[serde(with = "super::text")]
        conversation: ConversationId,
        /// The member acting, a party of the sending server.
        #[serde(with = "super::text")]
        sender: Address,
        /// What it asks.
        what: Submitted,
    },
    /// A change the host ordered, for the server of other members.
    Replicate {
        /// The conversation: the sender hosts it.
        #[serde(with = "super::text")]
        conversation: ConversationId,
        /// What happened.
        what: Replicated,
    },
}

impl Transaction {
    /// The conversation it concerns.
    pub fn conversation(&self) -> &ConversationId {
        match self {
            Transaction::Submit { conversation, .. }
            | Transaction::Replicate { conversation, .. } => conversation,
        }
    }
}

/// What a member asks of the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Submitted {
    /// Start the conversation (its id chosen by the member's server).
    Create {
        /// Subject line.
        subject: String,
        /// The other parties.
        #[serde(with = "addresses")]
        to: Vec<Address>,
    },
    /// Append a message.
    Post {
        /// The sender's idempotency key.
        client_msg_id: String,
        /// What it says.
        body: Body,
    },
    /// Raise the member's watermark.
    Watermark {
        /// Delivered or read.
        kind: super::event::ReceiptKind,
        /// Every message up to here.
        up_to: u64,
    },
}

/// What the host ordered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Replicated {
    /// The conversation exists.
    Created {
        /// Subject line.
        subject: String,
        /// When the host created it, ms since the Unix epoch.
        created_at_ms: i64,
        /// Its members, in order.
        members: Vec<Member>,
    },
    /// A message at `seq`.
    Posted {
        /// The host's seq.
        seq: u64,
        /// Who sent it.
        #[serde(with = "super::text")]
        sender: Address,
        /// The sender's idempotency key.
        client_msg_id: String,
        /// The host's time, ms since the Unix epoch.
        sent_at_ms: i64,
        /// What it says.
        body: Body,
    },
    /// A member's watermark rose.
    Watermark {
        /// Whose.
        #[serde(with = "super::text")]
        party: Address,
        /// Delivered or read.
        kind: super::event::ReceiptKind,
        /// Every message up to here.
        up_to: u64,
    },
}

/// A transaction toward a peer that will not be delivered: refused by the
/// peer for good (a dead letter), or undelivered at the horizon. It is
/// kept, with what it carried, until the operator delivers it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// The peer's domain.
    pub peer: String,
    /// Its seq in the peer's sequence.
    pub seq: u64,
    /// The peer refused it (rather than: it waited past the horizon).
    pub refused: bool,
    /// Why, for people: the peer's reason, or how long it waited.
    pub reason: String,
    /// The encoded transaction, as it was queued.
    pub payload: bytes::Bytes,
    /// When it was queued, ms since the Unix epoch.
    pub enqueued_at_ms: i64,
    /// When it was given up, ms since the Unix epoch.
    pub failed_at_ms: i64,
    /// The party told (its sender, if one of this server's) and the seq of
    /// that event in its log, with what it was told.
    pub told: Option<FailureNotice>,
    /// Delivered again, as this seq of the peer's sequence.
    pub replayed_as: Option<u64>,
}

/// What a sender was told of an undelivered transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNotice {
    /// The sender.
    pub party: super::party::PartyId,
    /// The event's seq in its log.
    pub event_seq: u64,
    /// The conversation's key.
    pub key: super::conversation::ConversationKey,
    /// The failure, as the event shows it.
    pub failure: super::event::DeliveryFailure,
}

/// A member of a replicated conversation, as its host knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// `local@domain`.
    #[serde(with = "super::text")]
    pub address: Address,
    /// What it is.
    pub kind: PartyKind,
    /// Shown to other parties.
    pub display_name: String,
}

mod addresses {
    use kanal_proto::address::Address;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(list: &[Address], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(Address::as_str))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Address>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}
