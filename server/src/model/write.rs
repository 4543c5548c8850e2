//! The rows the engine asks the store to write. A batch of writes is
//! committed in one transaction, all or nothing, before anyone hears of it.

use kanal_proto::address::ConversationId;

use super::conversation::{Body, ConversationKey};
use super::desk::{DeskEntry, StoredSeat, StoredTicket};
use super::event::{EventRef, ReceiptKind};
use super::party::{NewParty, PartyId};

/// One row (or group of rows) to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert a party under the id the engine chose.
    NewParty {
        /// Row id chosen by the engine.
        id: PartyId,
        /// The party.
        party: NewParty,
        /// Creation time, ms since the Unix epoch.
        created_at_ms: i64,
    },
    /// Make an agent answer for an inbox (after the agents it has).
    InboxAgent {
        /// The inbox.
        inbox: PartyId,
        /// The agent.
        agent: PartyId,
    },
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
        /// What it says.
        body: Body,
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
    /// Append to an inbox's log: an event its agents receive through it,
    /// stored once however many agents there are.
    InboxEvent {
        /// Whose log.
        inbox: PartyId,
        /// Gapless per inbox.
        iseq: u64,
        /// The conversation it concerns.
        key: ConversationKey,
        /// What happened.
        what: EventRef,
        /// When, ms since the Unix epoch.
        at_ms: i64,
    },
    /// From `seq` on, `party`'s log follows `inbox`'s log from `iseq` on,
    /// event for event, up to the party's next event or span.
    Span {
        /// Whose log.
        party: PartyId,
        /// The party's seq of the inbox's event `iseq`.
        seq: u64,
        /// The inbox whose log it follows.
        inbox: PartyId,
        /// Where in the inbox's log.
        iseq: u64,
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
    /// Queue something for another server, in the same transaction as the
    /// change it carries, so it is sent exactly when that change is durable.
    Outbox(OutboxRow),
    /// A transaction toward a peer will not be delivered: kept with what
    /// it carried, and the sender's event (if any) is written with it.
    Undelivered(Box<super::federation::Undelivered>),
    /// A party of this server submitted a message to a conversation another
    /// server hosts: the host's copy of it is accepted only then.
    Submitted {
        /// The conversation (its replica here).
        key: ConversationKey,
        /// The sender.
        sender: PartyId,
        /// Its idempotency key.
        client_msg_id: String,
    },
    /// Undelivered transaction `seq` toward `peer` is queued again, as
    /// `as_seq`.
    Replayed {
        /// The peer's domain.
        peer: String,
        /// The undelivered transaction.
        seq: u64,
        /// Its new seq.
        as_seq: u64,
    },
    /// Every transaction from `peer` up to `up_to` is applied: committed
    /// with the changes they made, so each is applied once, across
    /// restarts. Raises the peer's committed cursor (never lowers it).
    PeerCommitted {
        /// The peer's domain.
        peer: String,
        /// The seq of the last transaction from `peer` the batch applies.
        up_to: u64,
        /// When, ms since the Unix epoch.
        at_ms: i64,
    },
    /// What the batch assumed of a party's log: where its last row was.
    /// On a store that several nodes write, the batch commits only if it
    /// still is, and moves it to `now`; so two nodes never number the same
    /// seq of one log. A store with one writer has nothing to check.
    LogClaim {
        /// Whose log.
        party: PartyId,
        /// The seq of the log's last row (event or span) the batch read; 0
        /// for an empty log.
        was: u64,
        /// The seq of its last row after the batch.
        now: u64,
        /// Whether the batch only appends events of the party's own to a
        /// log that follows no inbox: then, if another node appended to it
        /// meanwhile (its last row is still an event), the store may move
        /// the batch's rows after those instead of refusing the batch, and
        /// says so ([`Committed::rebased`]). A party's log is the merge of
        /// what every node appends to it; only its order must be one.
        rebasable: bool,
    },
    /// What the batch assumed of an inbox's log (see [`Write::LogClaim`]).
    InboxClaim(InboxClaim),
    /// Insert or replace a conversation's ticket.
    Ticket(StoredTicket),
    /// Insert or replace an agent's seat at an inbox's desk.
    Seat(StoredSeat),
    /// Insert or replace an inbox's desk settings (JSON, opaque to the store).
    DeskSettings {
        /// The inbox.
        inbox: PartyId,
        /// As the engine wrote them.
        settings: String,
    },
    /// Append to a conversation's desk log. A note whose (conversation,
    /// actor, client_note_id) is stored already fails the batch with
    /// `StoreError::DuplicateSend`, as a message does.
    DeskEntry(DeskEntry),
}

/// What a commit changed of the batch it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Logs of rebasable claims that another node appended to since the
    /// batch was made: the store moved the batch's rows of that log up by
    /// this many seqs.
    pub rebased: Vec<(PartyId, u64)>,
}

/// What a batch assumed of an inbox's log, and how it changes it.
///
/// An agent's log follows an inbox's log without a row per event, so two
/// things can invalidate what a node computed from it: the inbox's log
/// grew (the followers' logs grew with it), or who follows it changed (a
/// span was closed by another row, or an agent was added). The first is
/// the head; the second is the inbox's follower version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxClaim {
    /// The inbox.
    pub inbox: PartyId,
    /// The head of the inbox's log the batch relied on: the commit fails if
    /// it moved.
    pub head_was: Option<u64>,
    /// The head after the batch's appends (`None`: it appends nothing).
    pub head_now: Option<u64>,
    /// The follower version the batch relied on (it appends, so whoever
    /// follows the log must be who the batch thinks): the commit fails if it
    /// changed.
    pub version_was: Option<u64>,
    /// Whether the batch changes who follows the inbox: the version rises
    /// by one.
    pub bump: bool,
}

/// One entry of the durable queue toward one peer server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The peer's domain.
    pub peer: String,
    /// Contiguous per peer, from 1: the peer acknowledges cumulatively.
    pub seq: u64,
    /// The encoded transaction, opaque to the store.
    pub payload: bytes::Bytes,
    /// When it was queued, ms since the Unix epoch.
    pub enqueued_at_ms: i64,
}

/// The highest ids in use, from which the engine numbers new rows, and
/// where its numbering must stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The highest conversation key (0 if none).
    pub max_key: ConversationKey,
    /// The highest party id (0 if none).
    pub max_party: PartyId,
    /// The first conversation key the engine may not use: a store that
    /// several nodes write hands each a block of ids. `None`: no end.
    pub key_end: Option<ConversationKey>,
    /// The first party id the engine may not use. `None`: no end.
    pub party_end: Option<PartyId>,
}
