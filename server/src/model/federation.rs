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
