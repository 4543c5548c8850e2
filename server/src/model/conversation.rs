//! Conversations, their messages, and how a party sees them.

use kanal_proto::address::{Address, ConversationId};
use kanal_proto::pb;

use super::party::Party;

/// Local row id of a conversation (the engine assigns it, in order).
pub type ConversationKey = i64;

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Body {
    /// Plain text, UTF-8.
    Text(String),
    /// Text offering quick replies (labels a device shows as buttons).
    Prompt {
        /// What it says.
        text: String,
        /// The labels offered.
        replies: Vec<String>,
    },
    /// What a device reported when it opened a conversation.
    DeviceReport {
        /// What it says.
        text: String,
        /// Its diagnostics, `(key, value)`, in the device's order.
        diagnostics: Vec<(String, String)>,
    },
    /// A structured question (PROTOCOL.md §14), checked when it was sent.
    Question(Wire<pb::Question>),
    /// An answer to a question, checked against it, its text set by the
    /// server.
    Answer(Wire<pb::Answer>),
}

impl Body {
    /// The text it says, whatever its kind.
    pub fn text(&self) -> &str {
        match self {
            Body::Text(text) | Body::Prompt { text, .. } | Body::DeviceReport { text, .. } => text,
            Body::Question(question) => &question.0.text,
            Body::Answer(answer) => &answer.0.text,
        }
    }
}

/// A protocol message carried whole in a body: kept, compared and sent
/// between nodes as what it is, serialised as its protobuf encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire<M>(pub M);

// The messages carried (questions, answers) hold no floating point: their
// equality is an equivalence.
impl<M: PartialEq> Eq for Wire<M> {}

impl<M: prost::Message> serde::Serialize for Wire<M> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de, M: prost::Message + Default> serde::Deserialize<'de> for Wire<M> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(deserializer)?;
        M::decode(&bytes[..])
            .map(Wire)
            .map_err(serde::de::Error::custom)
    }
}

/// The engine's view of a stored conversation, loaded when first touched.
///
/// A conversation is hosted by the server its id names ([`ConversationId::host`]):
/// the host orders it with its gapless seq. A conversation hosted elsewhere
/// is a replica here, applied in the host's seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    /// Local row id.
    pub key: ConversationKey,
    /// Public id; its host part names the hosting server.
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

impl ConversationRecord {
    /// Whether the server for `domain` hosts (orders) this conversation.
    pub fn is_hosted_by(&self, domain: &str) -> bool {
        self.id.host() == domain
    }
}

/// A conversation as one party sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConversationView {
    /// Public id.
    #[serde(with = "super::text")]
    pub id: ConversationId,
    /// Subject line.
    pub subject: String,
    /// The parties, in the order they joined.
    pub members: Vec<Party>,
    /// Highest message seq.
    pub last_seq: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// The viewer's delivered watermark.
    pub delivered_up_to: u64,
    /// The viewer's read watermark.
    pub read_up_to: u64,
    /// Time of the last message (or of creation), ms since the Unix epoch.
    pub last_activity_ms: i64,
}

impl ConversationView {
    /// `record` as a viewer whose watermarks are `delivered_up_to` and
    /// `read_up_to` sees it.
    pub fn of(record: &ConversationRecord, delivered_up_to: u64, read_up_to: u64) -> Self {
        Self {
            id: record.id.clone(),
            subject: record.subject.clone(),
            members: record.members.clone(),
            last_seq: record.last_seq,
            created_at_ms: record.created_at_ms,
            delivered_up_to,
            read_up_to,
            last_activity_ms: record.last_activity_ms,
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its conversation.
    pub conversation: ConversationId,
    /// Gapless per conversation, from 1.
    pub seq: u64,
    /// Who sent it.
    pub sender: Address,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Server time, ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// What it says.
    pub body: Body,
}

/// The answer to a send: where the message is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    /// Its conversation.
    #[serde(with = "super::text")]
    pub conversation: ConversationId,
    /// Its seq.
    pub seq: u64,
    /// Its server time, ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// Whether it was stored before, under the same client message id.
    pub duplicate: bool,
    /// The conversation is hosted by another server: the message is queued,
    /// durably, for its host, which gives it its seq (0 here).
    #[serde(default)]
    pub relayed: bool,
}

/// A message already stored under a client message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSend {
    /// Its seq.
    pub seq: u64,
    /// Its server time, ms since the Unix epoch.
    pub sent_at_ms: i64,
}
