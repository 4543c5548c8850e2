//! Persistence behind one seam: the [`Store`] trait, implemented in memory
//! (`memory`, for tests and the simulator), for SQLite (`sqlite`, the
//! embedded default) and for PostgreSQL (`postgres`, a database server).
//! The two SQL backends share one schema's worth of conversions and read
//! statements (`columns`, `batch`, `reads`, `sql`). Every backend passes the
//! same conformance suite (`conformance`).
//!
//! The engine is the only writer of parties, conversations, messages,
//! events, watermarks, outbox rows and how far each peer's transactions are
//! applied; it hands the store whole batches ([`Write`]s) that must commit
//! atomically and durably before anyone is told about them. Sessions and
//! acks are written beside it: they belong to one connection and order
//! nothing. So are the peer servers the operator configures, and a peer's
//! acks of the outbox, which only delete rows the peer has.

use async_trait::async_trait;
use kanal_proto::address::{Address, ConversationId};

use crate::model::TicketFilter;
use crate::model::{Committed, Counters, DeskEntry, Device, NewDevice, StoredDesk, StoredTicket};
use crate::model::{
    ConversationKey, ConversationRecord, ConversationView, Event, InboxHead, Invite, LogHead,
    Message, NewInvite, NodeStatus, OutboxRow, Party, PartyId, PeerRecord, ReceiptKind, Session,
    SlotLease, StoredSend, Undelivered, Write,
};

mod batch;
pub(crate) mod body;
mod columns;
#[cfg(test)]
pub mod conformance;
pub mod memory;
pub mod postgres;
mod reads;
mod sql;
pub mod sqlite;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Registering a device whose key or serial is registered already.
    #[error("{0}")]
    DeviceTaken(String),
    /// Creating a party whose address exists already.
    #[error("address {0} is taken")]
    AddressTaken(Address),
    /// A committed batch stored a message under a (conversation, sender,
    /// client_msg_id) that the store holds already; nothing of the batch
    /// was stored. The engine's memory of sends is bounded, so it may apply
    /// a retry of an old send as new: this is how the store tells it.
    #[error("a message with this client_msg_id was stored before")]
    DuplicateSend,
    /// Another node changed what the batch relied on (a log it appends to
    /// grew, an id it numbered was taken); nothing of the batch was stored.
    /// The engine reloads what it relied on and applies the batch again.
    #[error("another node wrote what the batch relied on")]
    Conflict,
    /// A row the operation needs does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The backend (database, file system) refused or failed.
    #[error("database: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The backend cannot do this.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// The write panicked; its transaction was rolled back and the store
    /// goes on.
    #[error("the write failed unexpectedly and was rolled back")]
    Aborted,
    /// A stored value is not what this version of Kanal wrote.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Backend(Box::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(Box::new(error))
    }
}

/// Why a store has no cluster of nodes.
pub(crate) const SEVERAL_NODES: &str = "several nodes share a PostgreSQL database, not this one";

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the server keeps on disk.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The same store for the writer's loads, if the backend can give them
    /// connections of their own, so that no client's read ever delays an
    /// ordering. `None`: the writer uses this store as it is.
    fn for_writer(&self) -> Option<std::sync::Arc<dyn Store>> {
        None
    }

    // --- directory ---------------------------------------------------------

    /// Finds a party by address.
    async fn party_by_address(&self, address: &Address) -> StoreResult<Option<Party>>;

    /// Finds a party by id.
    async fn party_by_id(&self, id: PartyId) -> StoreResult<Option<Party>>;

    /// The party's Argon2id password hash, if it has one.
    async fn password_hash(&self, id: PartyId) -> StoreResult<Option<String>>;

    /// The agents that answer for `inbox`, in the order they were added.
    async fn inbox_agents(&self, inbox: PartyId) -> StoreResult<Vec<PartyId>>;

    /// The inboxes `agent` answers for.
    async fn agent_inboxes(&self, agent: PartyId) -> StoreResult<Vec<PartyId>>;

    /// Every party, ordered by address (for the admin CLI).
    async fn parties(&self) -> StoreResult<Vec<Party>>;

    // --- sessions ----------------------------------------------------------

    /// Stores a new session under the SHA-256 hash of its resume token.
    async fn create_session(
        &self,
        party: PartyId,
        token_hash: [u8; 32],
        client: &str,
    ) -> StoreResult<Session>;

    /// Finds a session by the SHA-256 hash of its resume token.
    async fn session_by_token_hash(&self, token_hash: [u8; 32]) -> StoreResult<Option<Session>>;

    /// Raises the session's acknowledged event seq (never lowers it).
    async fn ack_session(&self, session: i64, seq: u64) -> StoreResult<()>;

    // --- invites -------------------------------------------------------------

    /// Stores a new invite, issued at `now_ms`.
    async fn create_invite(&self, invite: NewInvite, now_ms: i64) -> StoreResult<Invite>;

    /// Takes one use of the invite whose code hashes to `code_hash`, if it
    /// has one left and has not expired by `now_ms`; whether it did. Two
    /// concurrent takes of a code's last use: one succeeds.
    async fn take_invite(&self, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool>;

    /// Gives back a use taken by [`Store::take_invite`] (the registration
    /// it was for failed). A revoked invite stays revoked.
    async fn return_invite(&self, code_hash: [u8; 32]) -> StoreResult<()>;

    /// The invites that still work at `now_ms`, oldest first.
    async fn invites(&self, now_ms: i64) -> StoreResult<Vec<Invite>>;

    /// Revokes invite `id`; whether it existed.
    async fn revoke_invite(&self, id: i64) -> StoreResult<bool>;

    // --- devices ---------------------------------------------------------------

    /// Registers a device (its party exists already), at `now_ms`. Refused
    /// with [`StoreError::DeviceTaken`] if its key or serial is registered.
    async fn add_device(&self, device: NewDevice, now_ms: i64) -> StoreResult<Device>;

    /// Every registered device, revoked ones too, by serial.
    async fn devices(&self) -> StoreResult<Vec<Device>>;

    /// The devices `owner` owns (`kanald device link`), by serial.
    async fn devices_of(&self, owner: PartyId) -> StoreResult<Vec<Device>>;

    /// The device registered with static key `key`, if any.
    async fn device_by_key(&self, key: [u8; 32]) -> StoreResult<Option<Device>>;

    /// Revokes the device with `serial` at `now_ms`; whether it was
    /// registered and not revoked yet.
    async fn revoke_device(&self, serial: &str, now_ms: i64) -> StoreResult<bool>;

    /// Links the device with `serial` to its owner's account (`None`:
    /// unlinks it); whether the device is registered.
    async fn link_device(&self, serial: &str, owner: Option<PartyId>) -> StoreResult<bool>;

    /// Accepts each handshake initiation `(key, counter)` whose counter is
    /// above the last one accepted for that device key, one statement per
    /// device (two nodes cannot both accept the same counter), all in one
    /// commit: a gateway under a burst of handshakes pays one fsync for
    /// many. Whether each was accepted, in order (a key twice in a batch:
    /// as if one after the other).
    async fn advance_initiations(&self, batch: Vec<([u8; 32], u32)>) -> StoreResult<Vec<bool>>;

    /// [`Self::advance_initiations`] for one initiation.
    async fn advance_initiation(&self, key: [u8; 32], counter: u32) -> StoreResult<bool> {
        let accepted = self.advance_initiations(vec![(key, counter)]).await?;
        Ok(accepted.first().copied().unwrap_or(false))
    }

    // --- the engine's writes and loads ---------------------------------------

    /// Commits a batch atomically and durably (fsync'd before it returns Ok).
    /// A message whose (conversation, sender, client_msg_id) is stored
    /// already fails the whole batch with [`StoreError::DuplicateSend`]; a
    /// claim that no longer holds, with [`StoreError::Conflict`] (unless it
    /// is rebasable: see [`Committed`]).
    async fn commit(&self, batch: Vec<Write>) -> StoreResult<Committed>;

    /// Loads a conversation with its members.
    async fn load_conversation(
        &self,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>>;

    /// The key of a conversation id, if it exists.
    async fn conversation_key(&self, id: &ConversationId) -> StoreResult<Option<ConversationKey>> {
        Ok(self.load_conversation(id).await?.map(|c| c.key))
    }

    /// The ids the engine may number new rows with: after the highest
    /// conversation key and party id in use (0 if none), without end; or,
    /// from a store that several nodes write, a block of its own.
    async fn counters(&self) -> StoreResult<Counters>;

    /// A party's delivered or read watermark in a conversation (0 if none).
    async fn watermark(
        &self,
        key: ConversationKey,
        party: PartyId,
        kind: ReceiptKind,
    ) -> StoreResult<u64>;

    /// The highest event seq of a party's log (0 if empty).
    async fn event_head(&self, party: PartyId) -> StoreResult<u64> {
        Ok(self.log_head(party).await?.head)
    }

    /// Where a party's log ends: its highest seq, and the inbox log it
    /// follows there, if its last row is a span.
    async fn log_head(&self, party: PartyId) -> StoreResult<LogHead>;

    /// Where an inbox's log ends.
    async fn inbox_head(&self, inbox: PartyId) -> StoreResult<InboxHead>;

    /// The message `sender` already stored under `client_msg_id`, if any.
    async fn find_send(
        &self,
        key: ConversationKey,
        sender: PartyId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredSend>>;

    /// The stored sends among `wanted` (conversation, sender, client message
    /// id); absent ones were never stored. One call for a whole batch.
    async fn find_sends(
        &self,
        wanted: &[(ConversationKey, PartyId, String)],
    ) -> StoreResult<Vec<((ConversationKey, PartyId, String), StoredSend)>> {
        let mut found = Vec::new();
        for (key, sender, client_msg_id) in wanted {
            if let Some(stored) = self.find_send(*key, *sender, client_msg_id).await? {
                found.push(((*key, *sender, client_msg_id.clone()), stored));
            }
        }
        Ok(found)
    }

    // --- the service desk ------------------------------------------------------

    /// What is stored of `inbox`'s desk: its settings, its seats (by
    /// agent id) and its tickets that are not resolved (by conversation key).
    async fn desk(&self, inbox: PartyId) -> StoreResult<StoredDesk>;

    /// The ticket of conversation `key`, whatever its status.
    async fn ticket(&self, key: ConversationKey) -> StoreResult<Option<StoredTicket>>;

    /// Up to `limit` tickets that `filter` wants, most recently changed
    /// first (then by key, descending), after skipping `offset`; and
    /// whether more exist.
    async fn tickets(
        &self,
        filter: &TicketFilter,
        limit: u32,
        offset: u32,
    ) -> StoreResult<(Vec<StoredTicket>, bool)>;

    /// Up to `limit` entries of conversation `key`'s desk log with dseq <
    /// `before` (any if `before` is 0), oldest first, and whether older
    /// ones exist.
    async fn desk_entries(
        &self,
        key: ConversationKey,
        before: u64,
        limit: u32,
    ) -> StoreResult<(Vec<DeskEntry>, bool)>;

    /// Up to `limit` entries of `inbox`'s desk logs made from `from_ms`
    /// (inclusive) to `to_ms` (exclusive), after `after` (an entry's
    /// `(at_ms, key, dseq)`; `None`: from the start), in that order: how
    /// reports read a period.
    async fn inbox_desk_entries(
        &self,
        inbox: PartyId,
        (from_ms, to_ms): (i64, i64),
        after: Option<(i64, ConversationKey, u64)>,
        limit: u32,
    ) -> StoreResult<Vec<DeskEntry>>;

    /// The note `actor` stored under `client_note_id` (not empty) in
    /// conversation `key`, if any: its dseq and time.
    async fn find_note(
        &self,
        key: ConversationKey,
        actor: PartyId,
        client_note_id: &str,
    ) -> StoreResult<Option<(u64, i64)>>;

    // --- reads for clients --------------------------------------------------

    /// Whether `party` may read the conversation: what
    /// [`Audience::sees`](crate::core::audience::Audience::sees) says.
    async fn can_see(&self, key: ConversationKey, party: PartyId) -> StoreResult<bool>;

    /// Up to `limit` messages with seq < `before` (any seq if `before` is 0),
    /// oldest first, and whether older ones exist.
    async fn history(
        &self,
        key: ConversationKey,
        before: u64,
        limit: u32,
    ) -> StoreResult<(Vec<Message>, bool)>;

    /// Up to `limit` events of `party`'s log with seq > `since`, in seq
    /// order, each built by the same constructor as when it happened (the
    /// party's own rows and, through its spans, rows of inbox logs); after
    /// the first, no more than `max_body_bytes` of stored message bodies and
    /// desk entry payloads in all, so a page's memory is bounded whatever
    /// the messages hold.
    async fn events_since(
        &self,
        party: PartyId,
        since: u64,
        limit: u32,
        max_body_bytes: usize,
    ) -> StoreResult<Vec<(u64, Event)>>;

    /// The conversations `party` sees (by the audience rule), most
    /// recently active first, with the party's watermarks; and whether more exist.
    async fn conversations_of(
        &self,
        party: PartyId,
        limit: u32,
        offset: u32,
    ) -> StoreResult<(Vec<ConversationView>, bool)>;

    /// One conversation as `viewer` sees it (with the viewer's watermarks).
    async fn conversation_view(
        &self,
        key: ConversationKey,
        viewer: PartyId,
    ) -> StoreResult<Option<ConversationView>>;

    // --- operations -----------------------------------------------------------

    /// Writes a consistent copy of everything committed to `to`, a file that
    /// must not exist yet, while the store goes on serving.
    async fn backup(&self, to: &std::path::Path) -> StoreResult<()>;

    // --- federation -----------------------------------------------------------

    /// Up to `limit` outbox rows toward `peer` with seq > `after`, in seq order.
    async fn outbox(&self, peer: &str, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>>;

    /// The peer servers the operator configured, ordered by domain.
    async fn peers(&self) -> StoreResult<Vec<PeerRecord>>;

    /// Stores a peer server, replacing the one with its domain if any.
    async fn put_peer(&self, peer: &PeerRecord) -> StoreResult<()>;

    /// Removes the peer server `domain` from the configuration; whether it
    /// was there. The outbox toward it and its cursors stay.
    async fn remove_peer(&self, domain: &str) -> StoreResult<bool>;

    /// The highest outbox seq ever assigned toward `peer`: its highest
    /// stored row's, or where the peer acknowledged up to if that is higher
    /// (acknowledged rows are deleted); 0 if none. The next row toward
    /// `peer` takes the seq after it.
    async fn outbox_head(&self, peer: &str) -> StoreResult<u64>;

    /// Up to where `peer` acknowledged the outbox toward it (0 if nowhere).
    async fn outbox_acked(&self, peer: &str) -> StoreResult<u64>;

    /// `peer` acknowledged every outbox row toward it up to `up_to`: in one
    /// transaction, deletes those rows and raises its acknowledged cursor
    /// to `up_to` (never lowers it).
    async fn ack_outbox(&self, peer: &str, up_to: u64) -> StoreResult<()>;

    /// Up to where every transaction from `peer` is applied (0 if none is):
    /// what [`Write::PeerCommitted`] committed.
    async fn peer_committed(&self, peer: &str) -> StoreResult<u64>;

    /// The peers that outbox rows are queued toward, ordered.
    async fn outbox_peers(&self) -> StoreResult<Vec<String>>;

    /// The peers a transaction from which was committed at `since_ms` or
    /// later, at most `limit`, those committed from last first.
    async fn peers_committed_since(&self, since_ms: i64, limit: u32) -> StoreResult<Vec<String>>;

    /// Whether `sender` submitted `client_msg_id` to conversation `key`
    /// ([`Write::Submitted`]).
    async fn submitted(
        &self,
        key: ConversationKey,
        sender: PartyId,
        client_msg_id: &str,
    ) -> StoreResult<bool>;

    /// The transactions toward `peer` given up ([`Write::Undelivered`]),
    /// replayed ones included, in seq order.
    async fn undelivered(&self, peer: &str) -> StoreResult<Vec<Undelivered>>;

    // --- several nodes ----------------------------------------------------------

    /// This node will use the store alone, for as long as it runs: refused
    /// if another node uses it; other nodes are refused from now on. (A
    /// file the data directory's lock guards needs nothing more.)
    async fn use_alone(&self) -> StoreResult<()> {
        Ok(())
    }

    /// This node will use the store together with other nodes that do too
    /// (through NATS): refused if a node uses it alone.
    async fn use_with_others(&self) -> StoreResult<()> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// This node stops using the store (it shuts down): another may start.
    async fn stop_using(&self) {}

    /// Records what a node says of itself (it does so every few seconds),
    /// and forgets nodes not heard of for a day.
    async fn report_node(&self, _status: &NodeStatus) -> StoreResult<()> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// What every node said of itself last, most recently started first.
    async fn nodes(&self) -> StoreResult<Vec<NodeStatus>> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// Who holds each slot's lease at `now_ms`.
    async fn slots(&self, _now_ms: i64) -> StoreResult<Vec<SlotLease>> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }

    /// Node `node` renews its slot leases for `lease_ms` from `now_ms`,
    /// gives up those beyond `fair` and takes free or expired ones up to
    /// it; returns who holds each slot now.
    async fn lease_slots(
        &self,
        _node: i64,
        _fair: u32,
        _lease_ms: i64,
        _now_ms: i64,
    ) -> StoreResult<Vec<SlotLease>> {
        Err(StoreError::Unsupported(SEVERAL_NODES))
    }
}
