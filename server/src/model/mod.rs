//! The server's domain vocabulary: parties, sessions, and the rows the
//! conversation engine asks the store to write.

use bytes::Bytes;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::pb;

/// Local row id of a party (the store assigns it).
pub type PartyId = i64;

/// Local row id of a conversation (the engine assigns it, in order).
pub type ConversationKey = i64;

/// What kind of party an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartyKind {
    /// A customer or any other person with an account.
    User,
    /// A person who answers an inbox's conversations.
    Agent,
    /// A program that takes part in conversations.
    Bot,
    /// A service address (`support@domain`) that agents answer for.
    Inbox,
    /// A product that speaks the device profile.
    Device,
}

impl PartyKind {
    /// Stable number stored in the database.
    pub const fn as_i64(self) -> i64 {
        match self {
            PartyKind::User => 1,
            PartyKind::Agent => 2,
            PartyKind::Bot => 3,
            PartyKind::Inbox => 4,
            PartyKind::Device => 5,
        }
    }

    /// The kind for a stored number.
    pub const fn from_i64(value: i64) -> Option<Self> {
        Some(match value {
            1 => PartyKind::User,
            2 => PartyKind::Agent,
            3 => PartyKind::Bot,
            4 => PartyKind::Inbox,
            5 => PartyKind::Device,
            _ => return None,
        })
    }

    /// The kind on the wire.
    pub const fn to_pb(self) -> pb::PartyKind {
        match self {
            PartyKind::User => pb::PartyKind::User,
            PartyKind::Agent => pb::PartyKind::Agent,
            PartyKind::Bot => pb::PartyKind::Bot,
            PartyKind::Inbox => pb::PartyKind::Inbox,
            PartyKind::Device => pb::PartyKind::Device,
        }
    }

    /// Whether this kind logs in and receives events itself (inboxes do not:
    /// their agents receive their events).
    pub const fn has_session(self) -> bool {
        !matches!(self, PartyKind::Inbox)
    }
}

impl std::str::FromStr for PartyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "user" => PartyKind::User,
            "agent" => PartyKind::Agent,
            "bot" => PartyKind::Bot,
            "inbox" => PartyKind::Inbox,
            "device" => PartyKind::Device,
            other => return Err(format!("unknown party kind `{other}`")),
        })
    }
}

/// A party known to this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Row id.
    pub id: PartyId,
    /// `local@domain`.
    pub address: Address,
    /// What it is.
    pub kind: PartyKind,
    /// Shown to other parties.
    pub display_name: String,
}

impl Party {
    /// The party on the wire.
    pub fn to_pb(&self) -> pb::Party {
        pb::Party {
            address: self.address.to_string(),
            kind: self.kind.to_pb() as i32,
            display_name: self.display_name.clone(),
        }
    }
}

/// A party to create.
#[derive(Debug, Clone)]
pub struct NewParty {
    /// `local@domain`.
    pub address: Address,
    /// What it is.
    pub kind: PartyKind,
    /// Shown to other parties.
    pub display_name: String,
    /// Argon2id PHC string; `None` for parties that cannot log in (inboxes).
    pub password_hash: Option<String>,
}

/// A logged-in session, found by its resume token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Row id.
    pub id: i64,
    /// Who it belongs to.
    pub party: PartyId,
    /// Highest event seq the session acknowledged.
    pub acked_seq: u64,
}

/// The engine's view of a stored conversation, loaded when first touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    /// Local row id.
    pub key: ConversationKey,
    /// Public id.
    pub id: ConversationId,
    /// Subject line.
    pub subject: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Highest message seq.
    pub last_seq: u64,
    /// Time of the last message (or of creation), ms since the Unix epoch.
    pub last_activity_ms: i64,
    /// The parties, in the order they joined.
    pub members: Vec<Party>,
}

/// What an event row points at. Events store references, never copies of
/// message bodies: a message to N parties is stored once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRef {
    /// Message `seq` of the conversation.
    Message {
        /// The message's seq in its conversation.
        seq: u64,
    },
    /// The party now takes part in the conversation.
    ConversationAdded,
    /// `party`'s watermark of `kind` moved to `up_to`.
    Receipt {
        /// Whose watermark moved.
        party: PartyId,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The new watermark.
        up_to: u64,
    },
}

/// Delivered or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The kind on the wire.
    pub const fn to_pb(self) -> pb::ReceiptKind {
        match self {
            ReceiptKind::Delivered => pb::ReceiptKind::Delivered,
            ReceiptKind::Read => pb::ReceiptKind::Read,
        }
    }
}

/// One row the engine asks the store to write. A batch of writes is committed
/// in one transaction, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert a conversation and its members.
    NewConversation {
        /// Row id chosen by the engine.
        key: ConversationKey,
        /// Public id.
        id: ConversationId,
        /// Subject line.
        subject: String,
        /// Who started it.
        created_by: PartyId,
        /// Creation time, ms since the Unix epoch.
        created_at_ms: i64,
        /// All parties including the creator, in order.
        members: Vec<PartyId>,
    },
    /// Insert a message.
    Message {
        /// The conversation.
        key: ConversationKey,
        /// Gapless per conversation.
        seq: u64,
        /// Who sent it.
        sender: PartyId,
        /// The sender's idempotency key.
        client_msg_id: String,
        /// Server time, ms since the Unix epoch.
        sent_at_ms: i64,
        /// Encoded `pb::Body`.
        body: Bytes,
    },
    /// Append to a party's event log.
    Event {
        /// Whose log.
        party: PartyId,
        /// Gapless per party.
        seq: u64,
        /// The conversation it concerns.
        key: ConversationKey,
        /// What happened.
        what: EventRef,
        /// When, ms since the Unix epoch.
        at_ms: i64,
    },
    /// Raise a party's watermark in a conversation (never lowers it).
    Watermark {
        /// The conversation.
        key: ConversationKey,
        /// Whose watermark.
        party: PartyId,
        /// Delivered or read.
        kind: ReceiptKind,
        /// The new watermark.
        up_to: u64,
    },
}

/// A message already stored under a client message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSend {
    /// Its seq.
    pub seq: u64,
    /// Its server time, ms since the Unix epoch.
    pub sent_at_ms: i64,
}
