//! The conversation engine: the one place that orders every change.
//!
//! Sans-IO, as quinn-proto is: no sockets, no clock, no database. The driver
//! (`node::writer`) asks what state a command [`needs`](Engine::needs),
//! loads it from the store, then [`applies`](Engine::apply) the command at a
//! given time and receives the rows to commit, the reply for the requester,
//! and the events to publish once the commit is durable. Because the engine
//! is the only writer of parties, conversations and event logs, its cached
//! sequence numbers are authoritative, so assigning the next seq never needs
//! a round trip to the database.
//!
//! Time passes only when the driver says so: [`Engine::poll_timeout`] names
//! the engine's next deadline and [`Engine::handle_timeout`] handles what is
//! due at a given `now`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use kanal_proto::address::{Address, ConversationId};

use super::audience::Audience;
use crate::model::{
    Availability, Body, ConversationKey, ConversationRecord, ConversationView, Counters, Event,
    EventRef, InboxClaim, InboxHead, LogHead, Message, NewParty, Party, PartyId, Receipt,
    ReceiptKind, Refusal, RefusalCode, Replicated, Sent, StoredSend, Submitted, TicketView,
    Transaction, Undelivered, Write,
};

mod desk;
mod federated;
mod undelivered;

pub(crate) use desk::{DeskRequest, LoadedDesk, LoadedTicket};
pub(crate) use federated::command as federated_command;

/// Most conversations (and, separately, event-log heads and parties) the
/// engine keeps cached. Past it the cache is dropped between batches and
/// refilled from the store on demand: memory stays bounded whatever the
/// database holds.
pub(crate) const MAX_CACHED: usize = 100_000;

/// Most recipients the cached audiences may hold together (about 32 bytes
/// each): 100,000 conversations of an inbox with 200 agents would
/// otherwise keep 640 MB of audiences. Past it they are dropped between
/// batches and computed again on demand.
pub(crate) const MAX_AUDIENCE_ENTRIES: usize = 2_000_000;

/// How many recent `(conversation, sender, client_msg_id)` triples the
/// engine remembers, so retries within a batch or shortly after need no lookup.
const RECENT_SENDS: usize = 65_536;

/// Fewest ids of each kind the engine wants in hand before a batch that
/// numbers new rows: more than a batch can use (`node::writer::MAX_BATCH`).
const IDS_IN_HAND: i64 = 4096;

/// Something a requester asks the engine to do.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Create a party (registration, or an operator's `kanald user|inbox add`).
    AddParty(NewParty),
    /// Make an agent answer for an inbox, from this command on.
    AddInboxAgent {
        /// The inbox.
        inbox: Party,
        /// The agent.
        agent: Party,
    },
    /// Start a conversation between `by` and `to`.
    CreateConversation {
        /// The party starting it.
        by: Party,
        /// The other parties (resolved).
        to: Vec<Party>,
        /// Subject line (validated by the caller).
        subject: String,
        /// Random opaque part for the new id, chosen by the driver.
        opaque: String,
    },
    /// Append a message.
    Send {
        /// The sender.
        by: Party,
        /// Where to.
        #[serde(with = "crate::model::text")]
        conversation: ConversationId,
        /// The sender's idempotency key.
        client_msg_id: String,
        /// The content (validated by the caller).
        body: Body,
    },
    /// Raise the caller's delivery or read watermark.
    MarkReceipt {
        /// Whose watermark.
        by: Party,
        /// Which conversation.
        #[serde(with = "crate::model::text")]
        conversation: ConversationId,
        /// Delivered or read.
        kind: ReceiptKind,
        /// New watermark.
        up_to: u64,
    },
    /// A service-desk request of an agent (or the bot) of the
    /// conversation's inbox.
    Desk {
        /// Who asks.
        by: Party,
        /// Which conversation.
        #[serde(with = "crate::model::text")]
        conversation: ConversationId,
        /// What.
        request: DeskRequest,
    },
    /// An agent's availability at one inbox's desk.
    SetAvailability {
        /// The agent.
        agent: Party,
        /// The inbox.
        inbox: Party,
        /// Online, away or offline.
        availability: Availability,
    },
    /// An agent's own capacity at one inbox's desk (`None`: the inbox's);
    /// an operator's change, after which routing runs again.
    SetCapacity {
        /// The agent.
        agent: Party,
        /// The inbox.
        inbox: Party,
        /// Most open or pending conversations it holds at once.
        capacity: Option<u32>,
    },
    /// Sets up or changes an inbox's desk (an operator's change).
    ConfigureDesk {
        /// The inbox.
        inbox: Party,
        /// Routing, hours, SLA targets, teams.
        config: Box<crate::core::desk::DeskConfig>,
        /// The parties it names (its bot, its teams' members).
        named: Vec<Party>,
    },
    /// Handles the desk timers that are due (the driver sends it at the
    /// engine's deadline, so timers commit like any change).
    DeskTick,
    /// Applies transaction `seq` of another server's (FEDERATION.md §4),
    /// whose certificate proved it `origin`.
    Federated {
        /// The sending server's domain.
        origin: String,
        /// The transaction's place in that server's sequence toward this one.
        seq: u64,
        /// What it carries (`None`: a tombstone, which only counts).
        transaction: Option<Box<crate::model::Transaction>>,
    },
    /// Transaction `seq` toward `peer` will not be delivered (FEDERATION.md
    /// §5.3): it is kept, and its sender, if a party of this server, is
    /// told with a delivery-failure event.
    Undelivered {
        /// The peer's domain.
        peer: String,
        /// Its seq in the peer's sequence.
        seq: u64,
        /// The peer refused it (rather than: it waited past the horizon).
        refused: bool,
        /// Why, for people.
        reason: String,
        /// The encoded transaction, as it was queued.
        payload: Vec<u8>,
        /// When it was queued, ms since the Unix epoch.
        enqueued_at_ms: i64,
    },
    /// Queues undelivered transactions toward `peer` again, in seq order,
    /// each as a new transaction (an operator's `kanald peer replay`).
    /// Those replayed already are skipped.
    Replay {
        /// The peer's domain.
        peer: String,
        /// `(seq, payload)` of each, as stored.
        transactions: Vec<(u64, Vec<u8>)>,
    },
}

/// State the engine must have before it can apply a command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Need {
    /// The party with this address, if any.
    Party(Address),
    /// The conversation's record (`None` from the store means it does not exist).
    Conversation(ConversationId),
    /// Where a party's event log ends.
    Head(PartyId),
    /// The highest seq of an inbox's log.
    InboxHead(PartyId),
    /// The agents of an inbox.
    InboxAgents(PartyId),
    /// A party's stored watermark in a conversation.
    Watermark {
        /// The conversation.
        conversation: ConversationId,
        /// Whose.
        party: PartyId,
        /// Delivered or read.
        kind: ReceiptKind,
    },
    /// A new block of ids to number conversations and parties with (only
    /// from a store that several nodes write).
    Ids,
    /// What the store holds of an inbox's desk.
    Desk(PartyId),
    /// A conversation's ticket, whatever its status.
    Ticket(ConversationKey),
    /// Whether the author already stored a note under this id.
    PriorNote {
        /// The conversation.
        key: ConversationKey,
        /// The author.
        author: PartyId,
        /// The idempotency key.
        client_note_id: String,
    },
    /// The highest seq of the outbox toward a peer server.
    OutboxHead(String),
    /// Up to where the transactions from a peer server are committed.
    PeerCommitted(String),
    /// Whether this server's `sender` submitted this message to the
    /// conversation's host.
    Submission {
        /// The conversation.
        key: ConversationKey,
        /// The sender.
        sender: PartyId,
        /// The idempotency key.
        client_msg_id: String,
    },
    /// Whether the sender already stored this client message id.
    PriorSend {
        /// The conversation.
        key: ConversationKey,
        /// The sender.
        sender: PartyId,
        /// The idempotency key.
        client_msg_id: String,
    },
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    /// The party now exists.
    Party(Party),
    /// The conversation as the requester sees it.
    Conversation(ConversationView),
    /// The message is stored.
    Sent(Sent),
    /// Done, nothing to return.
    Done,
    /// A conversation's ticket, after the change.
    Ticket(Box<TicketView>),
    /// The note is stored.
    NoteAdded {
        /// The conversation.
        #[serde(with = "crate::model::text")]
        conversation: ConversationId,
        /// Its dseq in the desk log.
        dseq: u64,
        /// When.
        at_ms: i64,
        /// A retry of a stored note.
        duplicate: bool,
    },
    /// Refused.
    Refused(Refusal),
}

/// One event for its local recipients, each at its seq in its own log.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// What happened.
    pub event: Event,
    /// `(party, seq)` for each recipient.
    pub recipients: Vec<(PartyId, u64)>,
}

/// What applying a command produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applied {
    /// Rows to commit before anything else happens.
    pub writes: Vec<Write>,
    /// Events to publish after the commit.
    pub published: Vec<Published>,
}

/// The engine's state of one conversation.
#[derive(Debug, Clone)]
struct ConversationState {
    record: ConversationRecord,
    watermarks: HashMap<(PartyId, ReceiptKind), u64>,
    /// The audience, as of [`Engine::agents_version`] `.0`: computed once,
    /// not for every command (an inbox of 200 agents made it most of a
    /// send's work).
    audience: Option<(u64, Arc<Audience>)>,
}

type SendKey = (ConversationKey, PartyId, String);

/// The conversation engine. See the module docs.
#[derive(Debug)]
pub(crate) struct Engine {
    domain: String,
    next_key: ConversationKey,
    next_party: PartyId,
    /// Where the block of ids in hand ends (exclusive).
    key_end: ConversationKey,
    party_end: PartyId,
    parties: HashMap<Address, Option<Party>>,
    conversations: HashMap<ConversationId, ConversationState>,
    heads: HashMap<PartyId, LogHead>,
    /// Where each inbox's log ends.
    inbox_heads: HashMap<PartyId, InboxHead>,
    /// What this batch assumed of each party log it writes: where the
    /// log's last row was before the batch, where it is after it, and
    /// whether the batch only appended events of the party's own to it
    /// (the store may move them after another node's).
    log_claims: HashMap<PartyId, (u64, u64, bool)>,
    /// What this batch assumed of each inbox log it writes or leaves.
    inbox_claims: HashMap<PartyId, InboxClaim>,
    inbox_agents: HashMap<PartyId, Vec<PartyId>>,
    /// Changes whenever `inbox_agents` does: cached audiences of an older
    /// version are computed again.
    agents_version: u64,
    /// Recipients of the audiences cached since they were last dropped (an
    /// upper bound: replaced audiences still count).
    audience_entries: usize,
    recent_sends: HashMap<SendKey, StoredSend>,
    recent_order: VecDeque<SendKey>,
    /// Lookups answered "never sent" that are not in `recent_sends`.
    checked_sends: HashSet<SendKey>,
    /// Conversations whose every client message id is in `recent_sends`
    /// (created here, or loaded while empty, and nothing evicted since):
    /// their sends need no lookup.
    complete: HashSet<ConversationKey>,
    /// Until when (ms since the Unix epoch) sends missing from memory are
    /// looked up in the store before they are applied. Otherwise the engine
    /// assumes such a send is new, and the store's uniqueness of
    /// (conversation, sender, client_msg_id) catches the rare retry of a
    /// send older than its memory: the driver then resets the engine, calls
    /// [`Engine::verify_sends_until`] and applies the batch again.
    verify_until: Option<i64>,
    /// The desk of each inbox whose conversations the engine has touched.
    desks: HashMap<PartyId, desk::DeskState>,
    /// Inboxes whose operator has not set up a desk.
    no_desk: HashSet<PartyId>,
    /// What the desk answers the message being sent (an out-of-hours
    /// reply), from the inbox, appended right after it.
    desk_replies: Vec<(ConversationId, Party, Body)>,
    /// No desk timer is handled before this (ms since the Unix epoch): set
    /// after a tick could not be applied, so a store that fails does not
    /// keep the writer ticking.
    desk_retry_at: i64,
    /// Conversations whose ticket was looked up in the store.
    tickets_checked: HashSet<ConversationKey>,
    /// Notes stored, by (conversation, author, client_note_id): dseq and time.
    notes: HashMap<SendKey, (u64, i64)>,
    /// Note lookups answered in this batch.
    notes_checked: HashSet<SendKey>,
    /// The highest seq of the outbox toward each peer server loaded: the
    /// engine numbers each peer's transactions (it writes them all).
    outbox_heads: HashMap<String, u64>,
    /// Up to where each peer server's transactions are consumed, as loaded
    /// and applied since: the engine applies each once and in order,
    /// whatever the link that offers them remembers.
    peer_committed: HashMap<String, u64>,
    /// Undelivered transactions this engine queued again, by (peer, seq):
    /// an operator's replay repeated is not queued twice.
    replayed: HashSet<(String, u64)>,
    /// Whether this server's parties submitted these messages to their
    /// conversation's host, as loaded or written.
    submissions: HashMap<SendKey, bool>,
}

impl Engine {
    /// An engine for `domain` that numbers new rows after `counters`.
    pub(crate) fn new(domain: impl Into<String>, counters: Counters) -> Self {
        Self {
            domain: domain.into(),
            next_key: counters.max_key + 1,
            next_party: counters.max_party + 1,
            key_end: counters.key_end.unwrap_or(i64::MAX),
            party_end: counters.party_end.unwrap_or(i64::MAX),
            parties: HashMap::new(),
            conversations: HashMap::new(),
            heads: HashMap::new(),
            inbox_heads: HashMap::new(),
            log_claims: HashMap::new(),
            inbox_claims: HashMap::new(),
            inbox_agents: HashMap::new(),
            agents_version: 0,
            audience_entries: 0,
            // Sized for their bound up front: growing a table of tens of
            // thousands of sends rehashes it all inside one command, a stall
            // of milliseconds for every send queued behind it.
            recent_sends: HashMap::with_capacity(RECENT_SENDS + 1),
            recent_order: VecDeque::with_capacity(RECENT_SENDS + 1),
            checked_sends: HashSet::new(),
            complete: HashSet::new(),
            verify_until: None,
            desks: HashMap::new(),
            no_desk: HashSet::new(),
            desk_replies: Vec::new(),
            desk_retry_at: 0,
            tickets_checked: HashSet::new(),
            notes: HashMap::new(),
            notes_checked: HashSet::new(),
            outbox_heads: HashMap::new(),
            peer_committed: HashMap::new(),
            replayed: HashSet::new(),
            submissions: HashMap::new(),
        }
    }

    /// The ids the engine would number new rows after: never behind the
    /// store's (rows it numbered may not be committed yet).
    pub(crate) fn counters(&self) -> Counters {
        Counters {
            max_key: self.next_key - 1,
            max_party: self.next_party - 1,
            key_end: (self.key_end != i64::MAX).then_some(self.key_end),
            party_end: (self.party_end != i64::MAX).then_some(self.party_end),
        }
    }

    /// Supplies a new block of ids (for [`Need::Ids`]): each kind running
    /// low is numbered from the new block on.
    pub(crate) fn load_ids(&mut self, ids: Counters) {
        if self.key_end - self.next_key < IDS_IN_HAND {
            self.next_key = ids.max_key + 1;
            self.key_end = ids.key_end.unwrap_or(i64::MAX);
        }
        if self.party_end - self.next_party < IDS_IN_HAND {
            self.next_party = ids.max_party + 1;
            self.party_end = ids.party_end.unwrap_or(i64::MAX);
        }
    }

    /// Whether a command that numbers a new row of this kind must wait for ids.
    fn ids_low(&self) -> bool {
        self.key_end - self.next_key < IDS_IN_HAND || self.party_end - self.next_party < IDS_IN_HAND
    }

    /// Looks up every send not in memory before applying it, until `until_ms`.
    pub(crate) fn verify_sends_until(&mut self, until_ms: i64) {
        self.verify_until = Some(self.verify_until.map_or(until_ms, |t| t.max(until_ms)));
    }

    /// The engine's next deadline (ms since the Unix epoch), if it has one:
    /// the driver calls [`Engine::handle_timeout`] at or after it.
    pub(crate) fn poll_timeout(&self) -> Option<i64> {
        match (self.verify_until, self.desk_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles no desk timer before `at_ms` (a tick failed).
    pub(crate) fn retry_desk_timers_at(&mut self, at_ms: i64) {
        self.desk_retry_at = at_ms;
    }

    /// Whether a desk timer is due at `now_ms`: the driver then applies
    /// [`Command::DeskTick`].
    pub(crate) fn desk_due(&self, now_ms: i64) -> bool {
        self.desk_timeout().is_some_and(|at| at <= now_ms)
    }

    /// Handles every deadline due at `now_ms`.
    pub(crate) fn handle_timeout(&mut self, now_ms: i64) {
        if self.verify_until.is_some_and(|until| until <= now_ms) {
            self.verify_until = None;
        }
    }

    /// What must be loaded before `cmd` can be applied. Loading everything
    /// returned and asking again converges in at most three rounds
    /// (conversation, then inbox agents and prior sends, then heads).
    pub(crate) fn needs(&self, cmd: &Command) -> Vec<Need> {
        let mut needs = Vec::new();
        match cmd {
            Command::AddParty(party) => {
                if !self.parties.contains_key(&party.address) {
                    needs.push(Need::Party(party.address.clone()));
                }
                if self.ids_low() {
                    needs.push(Need::Ids);
                }
            }
            Command::AddInboxAgent { inbox, agent } => {
                if !self.inbox_agents.contains_key(&inbox.id) {
                    needs.push(Need::InboxAgents(inbox.id));
                }
                // Its next event may come in the same batch.
                if !self.heads.contains_key(&agent.id) {
                    needs.push(Need::Head(agent.id));
                }
            }
            Command::CreateConversation { by, to, .. } => {
                let members: Vec<Party> = std::iter::once(by).chain(to).cloned().collect();
                self.audience_needs(&members, &mut needs);
                self.desk_needs(&members, None, &mut needs);
                if self.ids_low() {
                    needs.push(Need::Ids);
                }
            }
            Command::Desk {
                by,
                conversation,
                request,
            } => {
                let Some(state) = self.conversations.get(conversation) else {
                    needs.push(Need::Conversation(conversation.clone()));
                    return needs;
                };
                if let DeskRequest::Note { client_note_id, .. } = request {
                    let triple = (state.record.key, by.id, client_note_id.clone());
                    if !self.notes.contains_key(&triple) && !self.notes_checked.contains(&triple) {
                        needs.push(Need::PriorNote {
                            key: triple.0,
                            author: triple.1,
                            client_note_id: triple.2,
                        });
                    }
                }
                self.conversation_needs(state, &mut needs);
                self.desk_needs(&state.record.members, Some(state.record.key), &mut needs);
            }
            Command::SetAvailability { .. }
            | Command::SetCapacity { .. }
            | Command::ConfigureDesk { .. }
            | Command::DeskTick => {
                self.desk_command_needs(cmd, &mut needs);
            }
            Command::Send {
                by,
                conversation,
                client_msg_id,
                ..
            } => {
                let Some(state) = self.conversations.get(conversation) else {
                    needs.push(Need::Conversation(conversation.clone()));
                    return needs;
                };
                let triple = (state.record.key, by.id, client_msg_id.clone());
                if self.verify_until.is_some()
                    && !self.complete.contains(&triple.0)
                    && !self.recent_sends.contains_key(&triple)
                    && !self.checked_sends.contains(&triple)
                {
                    needs.push(Need::PriorSend {
                        key: triple.0,
                        sender: triple.1,
                        client_msg_id: triple.2,
                    });
                }
                self.conversation_needs(state, &mut needs);
                self.desk_needs(&state.record.members, Some(state.record.key), &mut needs);
            }
            Command::Federated {
                origin,
                transaction,
                ..
            } => {
                if !self.peer_committed.contains_key(origin) {
                    needs.push(Need::PeerCommitted(origin.clone()));
                }
                if let Some(transaction) = transaction {
                    self.federated_needs(transaction, &mut needs);
                }
            }
            Command::Undelivered { payload, .. } => self.undelivered_needs(payload, &mut needs),
            Command::Replay { peer, .. } => {
                if !self.outbox_heads.contains_key(peer) {
                    needs.push(Need::OutboxHead(peer.clone()));
                }
            }
            Command::MarkReceipt {
                by,
                conversation,
                kind,
                ..
            } => match self.conversations.get(conversation) {
                None => needs.push(Need::Conversation(conversation.clone())),
                Some(state) => {
                    if !state.watermarks.contains_key(&(by.id, *kind)) {
                        needs.push(Need::Watermark {
                            conversation: conversation.clone(),
                            party: by.id,
                            kind: *kind,
                        });
                    }
                    self.conversation_needs(state, &mut needs);
                }
            },
        }
        needs
    }

    /// Supplies the party stored under an address (`None`: there is none).
    pub(crate) fn load_party(&mut self, address: Address, party: Option<Party>) {
        self.parties.insert(address, party);
    }

    /// Supplies a conversation record.
    pub(crate) fn load_conversation(&mut self, record: ConversationRecord) {
        if record.last_seq == 0 {
            self.complete.insert(record.key);
        }
        self.conversations.insert(
            record.id.clone(),
            ConversationState {
                record,
                watermarks: HashMap::new(),
                audience: None,
            },
        );
    }

    /// Supplies a party's stored watermark.
    pub(crate) fn load_watermark(
        &mut self,
        conversation: &ConversationId,
        party: PartyId,
        kind: ReceiptKind,
        up_to: u64,
    ) {
        if let Some(state) = self.conversations.get_mut(conversation) {
            let mark = state.watermarks.entry((party, kind)).or_insert(0);
            *mark = (*mark).max(up_to);
        }
    }

    /// Supplies where a party's event log ends.
    pub(crate) fn load_head(&mut self, party: PartyId, head: LogHead) {
        self.heads.insert(party, head);
    }

    /// Another node's rows came before this batch's in `party`'s log: the
    /// store moved the batch's rows up by `by` seqs
    /// ([`Committed::rebased`](crate::model::Committed::rebased)).
    pub(crate) fn rebase(&mut self, party: PartyId, by: u64) {
        if let Some(head) = self.heads.get_mut(&party) {
            head.head += by;
            head.last_row += by;
        }
    }

    /// Supplies where an inbox's log ends.
    pub(crate) fn load_inbox_head(&mut self, inbox: PartyId, head: InboxHead) {
        self.inbox_heads.insert(inbox, head);
    }

    /// Supplies an inbox's agents.
    pub(crate) fn load_inbox_agents(&mut self, inbox: PartyId, agents: Vec<PartyId>) {
        self.inbox_agents.insert(inbox, agents);
        self.agents_version += 1;
    }

    /// Supplies the result of a prior-send lookup.
    pub(crate) fn load_prior_send(
        &mut self,
        key: ConversationKey,
        sender: PartyId,
        client_msg_id: String,
        prior: Option<StoredSend>,
    ) {
        let triple = (key, sender, client_msg_id);
        match prior {
            Some(stored) => self.remember_send(triple, stored),
            None => {
                self.checked_sends.insert(triple);
            }
        }
    }

    /// What the batch applied so far assumed of the logs it writes, as
    /// writes to commit with it (see [`Write::LogClaim`]); the cache takes
    /// the batch's own changes of follower versions.
    pub(crate) fn take_claims(&mut self) -> Vec<Write> {
        let mut claims: Vec<Write> = self
            .log_claims
            .drain()
            .map(|(party, (was, now, rebasable))| Write::LogClaim {
                party,
                was,
                now,
                rebasable,
            })
            .collect();
        for (inbox, claim) in self.inbox_claims.drain() {
            if claim.bump
                && let Some(head) = self.inbox_heads.get_mut(&inbox)
            {
                head.version += 1;
            }
            claims.push(Write::InboxClaim(claim));
        }
        claims
    }

    /// Ends a batch: "never sent" answers were only valid for its commands
    /// (any triple they sent is in the recent set now).
    pub(crate) fn finish_batch(&mut self) {
        self.log_claims.clear();
        self.inbox_claims.clear();
        self.checked_sends.clear();
        self.notes_checked.clear();
        if self.notes.len() > RECENT_SENDS {
            self.notes.clear();
        }
        if self.tickets_checked.len() > MAX_CACHED {
            self.tickets_checked.clear();
        }
        let held: usize = self.desks.values().map(|d| d.desk.len()).sum();
        if held > MAX_CACHED {
            for state in self.desks.values_mut() {
                state.forget_resolved();
            }
            self.tickets_checked.clear();
        }
        // Dropping cached state is always safe between batches: needs()
        // asks for it again. Sends stay deduplicated: `recent_sends` and
        // `complete` are kept.
        if self.conversations.len() > MAX_CACHED {
            self.conversations.clear();
            self.audience_entries = 0;
        }
        if self.audience_entries > MAX_AUDIENCE_ENTRIES {
            for state in self.conversations.values_mut() {
                state.audience = None;
            }
            self.audience_entries = 0;
        }
        if self.heads.len() > MAX_CACHED {
            self.heads.clear();
        }
        if self.inbox_heads.len() > MAX_CACHED {
            self.inbox_heads.clear();
        }
        if self.peer_committed.len() > MAX_CACHED {
            self.peer_committed.clear();
        }
        if self.parties.len() > MAX_CACHED {
            self.parties.clear();
        }
        if self.inbox_agents.len() > MAX_CACHED {
            self.inbox_agents.clear();
            self.agents_version += 1;
        }
    }

    /// Forgets everything cached, after a failed commit left the cache ahead
    /// of the database. `counters` are the store's highest ids.
    pub(crate) fn reset(&mut self, counters: Counters) {
        let verify_until = self.verify_until;
        *self = Self::new(std::mem::take(&mut self.domain), counters);
        self.verify_until = verify_until;
    }

    /// Applies `cmd` at `now_ms` (ms since the Unix epoch). Needs that were
    /// not supplied make the command fail as if the state did not exist.
    pub(crate) fn apply(&mut self, now_ms: i64, cmd: &Command) -> (Reply, Applied) {
        self.start_loaded_desks(now_ms);
        let mut applied = Applied::default();
        let reply = match cmd {
            Command::AddParty(party) => self.add_party(now_ms, party, &mut applied),
            Command::AddInboxAgent { inbox, agent } => {
                self.add_inbox_agent(inbox, agent, &mut applied)
            }
            Command::CreateConversation {
                by,
                to,
                subject,
                opaque,
            } => self.create(now_ms, by, to, subject, opaque, &mut applied),
            Command::Send {
                by,
                conversation,
                client_msg_id,
                body,
            } => self.send(
                now_ms,
                by,
                conversation,
                client_msg_id,
                body,
                0,
                &mut applied,
            ),
            Command::MarkReceipt {
                by,
                conversation,
                kind,
                up_to,
            } => self.mark(now_ms, by, conversation, *kind, *up_to, &mut applied),
            Command::Desk {
                by,
                conversation,
                request,
            } => self.desk_request(now_ms, by, conversation, request, &mut applied),
            Command::SetAvailability {
                agent,
                inbox,
                availability,
            } => self.set_availability(now_ms, agent, inbox, *availability, &mut applied),
            Command::SetCapacity {
                agent,
                inbox,
                capacity,
            } => self.set_capacity(now_ms, agent, inbox, *capacity, &mut applied),
            Command::ConfigureDesk {
                inbox,
                config,
                named,
            } => {
                let reply = self.configure_desk(now_ms, inbox, config, &mut applied);
                for party in named {
                    self.desk_knows(inbox.id, party);
                }
                reply
            }
            Command::DeskTick => self.desk_tick(now_ms, &mut applied),
            Command::Federated {
                origin,
                seq,
                transaction,
            } => self.federated(now_ms, origin, *seq, transaction.as_deref(), &mut applied),
            Command::Undelivered {
                peer,
                seq,
                refused,
                reason,
                payload,
                enqueued_at_ms,
            } => {
                let undelivered = Undelivered {
                    peer: peer.clone(),
                    seq: *seq,
                    refused: *refused,
                    reason: reason.clone(),
                    payload: payload.clone().into(),
                    enqueued_at_ms: *enqueued_at_ms,
                    failed_at_ms: now_ms,
                    told: None,
                    replayed_as: None,
                };
                self.undelivered(now_ms, undelivered, &mut applied)
            }
            Command::Replay { peer, transactions } => {
                self.replay(now_ms, peer, transactions, &mut applied)
            }
        };
        (reply, applied)
    }

    fn add_party(&mut self, now_ms: i64, new: &NewParty, applied: &mut Applied) -> Reply {
        match self.parties.get(&new.address) {
            Some(None) => {}
            Some(Some(_)) => {
                return Reply::Refused(Refusal::new(
                    RefusalCode::AddressTaken,
                    format!("{} is taken", new.address),
                ));
            }
            None => return Reply::Refused(Refusal::internal("the directory could not be read")),
        }
        if self.next_party >= self.party_end {
            return Reply::Refused(Refusal::internal("no ids left to number a party; retry"));
        }
        let party = Party {
            id: self.next_party,
            address: new.address.clone(),
            kind: new.kind,
            display_name: new.display_name.clone(),
        };
        self.next_party += 1;
        applied.writes.push(Write::NewParty {
            id: party.id,
            party: new.clone(),
            created_at_ms: now_ms,
        });
        self.parties
            .insert(party.address.clone(), Some(party.clone()));
        // A new party's log is empty, and a new inbox has no agents yet.
        self.heads.insert(party.id, LogHead::default());
        if !party.kind.has_session() {
            self.inbox_agents.insert(party.id, Vec::new());
            self.agents_version += 1;
            self.inbox_heads.insert(party.id, InboxHead::default());
        }
        Reply::Party(party)
    }

    fn add_inbox_agent(&mut self, inbox: &Party, agent: &Party, applied: &mut Applied) -> Reply {
        let Some(agents) = self.inbox_agents.get_mut(&inbox.id) else {
            return Reply::Refused(Refusal::internal("the directory could not be read"));
        };
        if !agents.contains(&agent.id) {
            agents.push(agent.id);
            self.agents_version += 1;
            self.desk_agent_added(inbox.id, agent);
            applied.writes.push(Write::InboxAgent {
                inbox: inbox.id,
                agent: agent.id,
            });
            // Who follows the inbox changed: a node appending to it with
            // the old agents must not commit.
            self.inbox_claim(inbox.id).bump = true;
        }
        Reply::Done
    }

    fn create(
        &mut self,
        now_ms: i64,
        by: &Party,
        to: &[Party],
        subject: &str,
        opaque: &str,
        applied: &mut Applied,
    ) -> Reply {
        self.create_continuing(now_ms, by, to, subject, opaque, None, applied)
    }

    /// [`Engine::create`] for a conversation that may continue a resolved
    /// one (`continues`) on its inbox's desk.
    #[expect(clippy::too_many_arguments, reason = "a conversation's whole start")]
    fn create_continuing(
        &mut self,
        now_ms: i64,
        by: &Party,
        to: &[Party],
        subject: &str,
        opaque: &str,
        continues: Option<ConversationKey>,
        applied: &mut Applied,
    ) -> Reply {
        // A conversation naming a party of another server is hosted there:
        // a customer writing to a company's inbox gets a conversation the
        // company orders.
        let host = to
            .iter()
            .find(|p| !p.is_local(&self.domain))
            .map_or_else(|| self.domain.clone(), |p| p.address.domain().to_owned());
        let id = match ConversationId::new(&host, opaque) {
            Ok(id) => id,
            Err(e) => return Reply::Refused(Refusal::internal(e.to_string())),
        };
        self.create_with_id(now_ms, by, to, subject, id, continues, applied)
    }

    /// Starts conversation `id` of `by` with `to`: hosted here, or a
    /// replica of one `by` starts on its host.
    #[expect(clippy::too_many_arguments, reason = "a conversation's whole start")]
    fn create_with_id(
        &mut self,
        now_ms: i64,
        by: &Party,
        to: &[Party],
        subject: &str,
        id: ConversationId,
        continues: Option<ConversationKey>,
        applied: &mut Applied,
    ) -> Reply {
        let mut members = vec![by.clone()];
        for party in to {
            if !members.iter().any(|m| m.id == party.id) {
                members.push(party.clone());
            }
        }
        if members.len() < 2 {
            return Reply::Refused(Refusal::new(
                RefusalCode::BadRequest,
                "a conversation needs at least one other party",
            ));
        }
        let audience = Arc::new(self.audience(&members));
        if !self.outboxes_loaded(&audience) {
            return Reply::Refused(Refusal::internal("the outbox could not be read"));
        }
        let key = match self.take_key() {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let record = ConversationRecord {
            key,
            id: id.clone(),
            subject: subject.to_owned(),
            created_at_ms: now_ms,
            last_seq: 0,
            last_activity_ms: now_ms,
            members,
        };
        let view = ConversationView::of(&record, 0, 0);
        let members = record.members.clone();
        let created = crate::model::Replicated::Created {
            subject: subject.to_owned(),
            created_at_ms: now_ms,
            members: Self::members_of(&record),
        };
        self.start_conversation(now_ms, record, &audience, applied);
        if id.host() == self.domain {
            self.replicate(now_ms, &id, &audience, created, applied);
            self.desk_opened(now_ms, key, &id, &members, continues, applied);
        } else {
            let submit = crate::model::Transaction::Submit {
                conversation: id.clone(),
                sender: by.address.clone(),
                what: crate::model::Submitted::Create {
                    subject: subject.to_owned(),
                    to: to.iter().map(|p| p.address.clone()).collect(),
                },
            };
            let host = id.host().to_owned();
            self.queue(now_ms, &host, &submit, applied);
        }
        Reply::Conversation(view)
    }

    /// The next conversation key, if the block in hand has one left.
    fn take_key(&mut self) -> Result<ConversationKey, Reply> {
        if self.next_key >= self.key_end {
            return Err(Reply::Refused(Refusal::internal(
                "no ids left to number a conversation; retry",
            )));
        }
        self.next_key += 1;
        Ok(self.next_key - 1)
    }

    /// Stores a new conversation and tells its local `audience`.
    fn start_conversation(
        &mut self,
        now_ms: i64,
        record: ConversationRecord,
        audience: &Audience,
        applied: &mut Applied,
    ) {
        let key = record.key;
        applied.writes.push(Write::NewConversation {
            key,
            id: record.id.clone(),
            subject: record.subject.clone(),
            created_by: record.members[0].id,
            created_at_ms: record.created_at_ms,
            members: record.members.iter().map(|m| m.id).collect(),
        });
        let event = Event::conversation_added(&record, 0, now_ms);
        self.load_conversation(record);
        let what = EventRef::ConversationAdded { last_seq: 0 };
        self.fan_out(key, audience, what, now_ms, event, applied);
    }

    /// Appends a message; `hops`: how many resolved conversations passed
    /// it on to the ones continuing them.
    #[expect(clippy::too_many_arguments, reason = "a send's whole context")]
    fn send(
        &mut self,
        now_ms: i64,
        by: &Party,
        conversation: &ConversationId,
        client_msg_id: &str,
        body: &Body,
        hops: usize,
        applied: &mut Applied,
    ) -> Reply {
        let Some((state, audience)) = self.visible(conversation, by.id) else {
            return not_found(conversation);
        };
        let key = state.record.key;
        if conversation.host() != self.domain {
            return self.submit_post(now_ms, by, key, conversation, client_msg_id, body, applied);
        }
        if !self.outboxes_loaded(&audience) {
            return Reply::Refused(Refusal::internal("the outbox could not be read"));
        }
        let inbox = self
            .conversations
            .get(conversation)
            .and_then(|c| Audience::inboxes(&self.domain, &c.record.members).next());
        let triple = (key, by.id, client_msg_id.to_owned());
        if let Some(stored) = self.recent_sends.get(&triple) {
            return Reply::Sent(Sent {
                conversation: conversation.clone(),
                seq: stored.seq,
                sent_at_ms: stored.sent_at_ms,
                duplicate: true,
                relayed: false,
            });
        }
        let desk_side = audience
            .routes()
            .any(|(party, via)| party == by.id && via.is_some());
        if let Some(inbox) = inbox {
            match self.desk_heard(
                now_ms,
                conversation,
                key,
                inbox,
                by,
                desk_side,
                client_msg_id,
                matches!(body, Body::Answer(_)),
                applied,
            ) {
                Ok(None) => {}
                Ok(Some(next)) if hops < desk::MAX_CONTINUATIONS => {
                    return self.send(now_ms, by, &next, client_msg_id, body, hops + 1, applied);
                }
                Ok(Some(_)) => {
                    return Reply::Refused(Refusal::internal(
                        "the conversation's continuations go on too long",
                    ));
                }
                Err(refused) => return *refused,
            }
        }
        let sent = self.append(
            now_ms,
            key,
            conversation,
            &audience,
            by,
            client_msg_id,
            body,
            applied,
        );
        if let (Some(inbox), Some(_), Body::Answer(crate::model::Wire(answer)), false) =
            (inbox, &sent, body, desk_side)
        {
            self.desk_rated(inbox, now_ms, key, by, answer, applied);
        }
        for (to, inbox, reply) in std::mem::take(&mut self.desk_replies) {
            let (Some(sent), Some((state, audience))) = (&sent, self.loaded(&to)) else {
                continue;
            };
            let key = state.record.key;
            let cmid = format!("closed-{}", sent.seq);
            self.append(now_ms, key, &to, &audience, &inbox, &cmid, &reply, applied);
        }
        match sent {
            Some(sent) => Reply::Sent(sent),
            None => not_found(conversation),
        }
    }

    /// Appends a message to conversation `key` (seen by `audience`) and
    /// tells its audience: what a send does once it is checked, and how the
    /// desk posts a survey. `None` if the conversation is not loaded.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        now_ms: i64,
        key: ConversationKey,
        conversation: &ConversationId,
        audience: &Arc<Audience>,
        by: &Party,
        client_msg_id: &str,
        body: &Body,
        applied: &mut Applied,
    ) -> Option<Sent> {
        let triple = (key, by.id, client_msg_id.to_owned());
        let state = self.conversations.get_mut(conversation)?;
        let seq = state.record.last_seq + 1;
        state.record.last_seq = seq;
        state.record.last_activity_ms = now_ms;
        applied.writes.push(Write::Message {
            key,
            seq,
            sender: by.id,
            client_msg_id: triple.2.clone(),
            sent_at_ms: now_ms,
            body: body.clone(),
        });
        let message = Message {
            conversation: conversation.clone(),
            seq,
            sender: by.address.clone(),
            client_msg_id: triple.2.clone(),
            sent_at_ms: now_ms,
            body: body.clone(),
        };
        self.remember_send(
            triple,
            StoredSend {
                seq,
                sent_at_ms: now_ms,
            },
        );
        let what = EventRef::Message { seq };
        self.fan_out(
            key,
            audience,
            what,
            now_ms,
            Event::Message(message),
            applied,
        );
        let posted = crate::model::Replicated::Posted {
            seq,
            sender: by.address.clone(),
            client_msg_id: client_msg_id.to_owned(),
            sent_at_ms: now_ms,
            body: body.clone(),
        };
        self.replicate(now_ms, conversation, audience, posted, applied);
        Some(Sent {
            conversation: conversation.clone(),
            seq,
            sent_at_ms: now_ms,
            duplicate: false,
            relayed: false,
        })
    }

    fn mark(
        &mut self,
        now_ms: i64,
        by: &Party,
        conversation: &ConversationId,
        kind: ReceiptKind,
        up_to: u64,
        applied: &mut Applied,
    ) -> Reply {
        let Some((state, audience)) = self.visible(conversation, by.id) else {
            return not_found(conversation);
        };
        if up_to > state.record.last_seq {
            return Reply::Refused(Refusal::new(
                RefusalCode::BadRequest,
                format!(
                    "up_to_seq {up_to} is beyond the conversation's last seq {}",
                    state.record.last_seq
                ),
            ));
        }
        let key = state.record.key;
        if !self.raise(
            now_ms,
            key,
            conversation,
            &audience,
            by,
            kind,
            up_to,
            applied,
        ) {
            return Reply::Done;
        }
        let host = conversation.host();
        if host == self.domain {
            let raised = Replicated::Watermark {
                party: by.address.clone(),
                kind,
                up_to,
            };
            self.replicate(now_ms, conversation, &audience, raised, applied);
        } else if by.address.domain() == self.domain && self.outbox_heads.contains_key(host) {
            // Kept here at once; the host orders it for everyone else.
            let host = host.to_owned();
            let submitted = Transaction::Submit {
                conversation: conversation.clone(),
                sender: by.address.clone(),
                what: Submitted::Watermark { kind, up_to },
            };
            self.queue(now_ms, &host, &submitted, applied);
        }
        Reply::Done
    }

    /// Raises `by`'s watermark of `kind` in conversation `key` to `up_to`
    /// and tells the audience; whether it rose.
    #[expect(clippy::too_many_arguments, reason = "a receipt's whole content")]
    fn raise(
        &mut self,
        now_ms: i64,
        key: ConversationKey,
        conversation: &ConversationId,
        audience: &Audience,
        by: &Party,
        kind: ReceiptKind,
        up_to: u64,
        applied: &mut Applied,
    ) -> bool {
        let Some(state) = self.conversations.get_mut(conversation) else {
            return false;
        };
        let current = state.watermarks.entry((by.id, kind)).or_insert(0);
        if up_to <= *current {
            return false;
        }
        *current = up_to;
        applied.writes.push(Write::Watermark {
            key,
            party: by.id,
            kind,
            up_to,
        });
        let event = Event::Receipt(Receipt {
            conversation: conversation.clone(),
            party: by.address.clone(),
            kind,
            up_to,
        });
        let what = EventRef::Receipt {
            party: by.id,
            kind,
            up_to,
        };
        self.fan_out(key, audience, what, now_ms, event, applied);
        true
    }

    /// The audience of a conversation of `members`, by the one rule.
    fn audience(&self, members: &[Party]) -> Audience {
        Audience::of(&self.domain, members, |inbox| {
            self.inbox_agents.get(&inbox).map_or(&[], Vec::as_slice)
        })
    }

    /// The conversation and its audience, if it is loaded and `party` may
    /// see it. The audience serves the command's fan-out too: the rule runs
    /// once per command.
    fn visible(
        &mut self,
        conversation: &ConversationId,
        party: PartyId,
    ) -> Option<(&ConversationState, Arc<Audience>)> {
        let (state, audience) = self.loaded(conversation)?;
        audience.sees(party).then_some((state, audience))
    }

    /// The conversation and its audience, if it is loaded.
    fn loaded(
        &mut self,
        conversation: &ConversationId,
    ) -> Option<(&ConversationState, Arc<Audience>)> {
        let audience = match self.cached_audience(self.conversations.get(conversation)?) {
            Some(audience) => audience.clone(),
            None => {
                let state = self.conversations.get(conversation)?;
                let audience = Arc::new(self.audience(&state.record.members));
                self.audience_entries += audience.recipients().len();
                let state = self.conversations.get_mut(conversation)?;
                state.audience = Some((self.agents_version, audience.clone()));
                audience
            }
        };
        let state = self.conversations.get(conversation)?;
        Some((state, audience))
    }

    /// The conversation's audience, if it was computed since inbox agents
    /// last changed.
    fn cached_audience<'s>(&self, state: &'s ConversationState) -> Option<&'s Arc<Audience>> {
        match &state.audience {
            Some((version, audience)) if *version == self.agents_version => Some(audience),
            _ => None,
        }
    }

    /// Appends the event to the log of every recipient of conversation `key`
    /// and publishes it once. A recipient that receives it through a member
    /// inbox gets it through that inbox's log, written once for all its
    /// agents: the agent's log needs a row only where it starts following
    /// that inbox (a span), not for every event.
    fn fan_out(
        &mut self,
        key: ConversationKey,
        audience: &Audience,
        what: EventRef,
        now_ms: i64,
        event: Event,
        applied: &mut Applied,
    ) {
        let mut recipients = Vec::with_capacity(audience.recipients().len());
        // The event's seq in each inbox log it was written to.
        let mut written: Vec<(PartyId, u64)> = Vec::new();
        for (party, route) in audience.routes() {
            let iseq = match route {
                None => None,
                Some(inbox) => Some(match written.iter().find(|(i, _)| *i == inbox) {
                    Some(&(_, iseq)) => iseq,
                    None => {
                        let iseq = self.append_inbox(inbox);
                        applied.writes.push(Write::InboxEvent {
                            inbox,
                            iseq,
                            key,
                            what,
                            at_ms: now_ms,
                        });
                        written.push((inbox, iseq));
                        iseq
                    }
                }),
            };
            let log = *self.heads.entry(party).or_default();
            let seq = log.head + 1;
            let row = match (route, iseq) {
                (Some(inbox), Some(iseq)) if log.follows == Some((inbox, iseq)) => None,
                (Some(inbox), Some(iseq)) => Some(Write::Span {
                    party,
                    seq,
                    inbox,
                    iseq,
                }),
                _ => Some(Write::Event {
                    party,
                    seq,
                    key,
                    what,
                    at_ms: now_ms,
                }),
            };
            let mut next = LogHead {
                head: seq,
                follows: route.zip(iseq).map(|(inbox, iseq)| (inbox, iseq + 1)),
                last_row: log.last_row,
            };
            if let Some(row) = row {
                self.claim_row(party, &log, seq, matches!(row, Write::Event { .. }));
                next.last_row = seq;
                applied.writes.push(row);
            }
            self.heads.insert(party, next);
            recipients.push((party, seq));
        }
        applied.published.push(Published { event, recipients });
    }

    /// Appends to an inbox's log: its new head, claimed for the batch.
    fn append_inbox(&mut self, inbox: PartyId) -> u64 {
        let head = self.inbox_heads.entry(inbox).or_default();
        let (was, version) = (head.head, head.version);
        head.head += 1;
        let now = head.head;
        let claim = self.inbox_claim(inbox);
        // The first append of the batch says what the batch relied on; a
        // head relied on before that (a closed span) must agree with it.
        if claim.head_now.is_none() {
            claim.head_was = match claim.head_was {
                Some(relied) if relied != was => Some(u64::MAX),
                _ => Some(was),
            };
            claim.version_was = Some(version);
        }
        claim.head_now = Some(now);
        now
    }

    /// Claims a new row at `seq` of `party`'s log, which ended at `log`:
    /// the log's last row must still be where the engine thinks, and a
    /// span the row closes must still end where the engine thinks. `event`:
    /// the row is an event of the party's own (not a span).
    fn claim_row(&mut self, party: PartyId, log: &LogHead, seq: u64, event: bool) {
        let rebasable = event && log.follows.is_none();
        self.log_claims
            .entry(party)
            .and_modify(|claim| {
                claim.1 = seq;
                claim.2 &= rebasable;
            })
            .or_insert((log.last_row, seq, rebasable));
        if let Some((inbox, next)) = log.follows {
            let claim = self.inbox_claim(inbox);
            let relied = next - 1;
            // A head relied on twice must agree, or the batch cannot commit.
            claim.head_was = match (claim.head_now, claim.head_was) {
                (Some(_), _) => claim.head_was,
                (None, Some(was)) if was != relied => Some(u64::MAX),
                _ => Some(relied),
            };
            claim.bump = true;
        }
    }

    /// The batch's claim on an inbox's log.
    fn inbox_claim(&mut self, inbox: PartyId) -> &mut InboxClaim {
        self.inbox_claims.entry(inbox).or_insert(InboxClaim {
            inbox,
            head_was: None,
            head_now: None,
            version_was: None,
            bump: false,
        })
    }

    fn audience_needs(&self, members: &[Party], needs: &mut Vec<Need>) {
        self.audience_needs_with(members, None, needs);
    }

    /// [`Engine::audience_needs`] for a loaded conversation, using its
    /// cached audience if it has one.
    fn conversation_needs(&self, state: &ConversationState, needs: &mut Vec<Need>) {
        let cached = self.cached_audience(state);
        self.audience_needs_with(&state.record.members, cached, needs);
    }

    fn audience_needs_with(
        &self,
        members: &[Party],
        cached: Option<&Arc<Audience>>,
        needs: &mut Vec<Need>,
    ) {
        let mut missing_agents = false;
        for inbox in Audience::inboxes(&self.domain, members) {
            if !self.inbox_agents.contains_key(&inbox) {
                needs.push(Need::InboxAgents(inbox));
                missing_agents = true;
            }
            if !self.inbox_heads.contains_key(&inbox) {
                needs.push(Need::InboxHead(inbox));
            }
        }
        if missing_agents {
            // Heads follow once the agents are known.
            return;
        }
        let computed;
        let audience = match cached {
            Some(audience) => audience.as_ref(),
            None => {
                computed = self.audience(members);
                &computed
            }
        };
        for &party in audience.recipients() {
            if !self.heads.contains_key(&party) {
                needs.push(Need::Head(party));
            }
        }
        for server in audience.servers() {
            if !self.outbox_heads.contains_key(server) {
                needs.push(Need::OutboxHead(server.clone()));
            }
        }
    }

    fn remember_send(&mut self, triple: SendKey, stored: StoredSend) {
        if self.recent_sends.insert(triple.clone(), stored).is_none() {
            self.recent_order.push_back(triple);
        }
        while self.recent_order.len() > RECENT_SENDS {
            if let Some(old) = self.recent_order.pop_front() {
                self.complete.remove(&old.0);
                self.recent_sends.remove(&old);
            }
        }
    }
}

fn not_found_party(address: &Address) -> Reply {
    Reply::Refused(Refusal::new(
        RefusalCode::NotFound,
        format!("no party {address}"),
    ))
}

fn not_found(conversation: &ConversationId) -> Reply {
    Reply::Refused(Refusal::new(
        RefusalCode::NotFound,
        format!("no conversation {conversation}"),
    ))
}

#[cfg(test)]
mod tests;
