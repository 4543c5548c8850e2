//! The in-memory store: every table as a map behind one lock, with the same
//! behaviour as SQLite (the conformance suite proves it), minus durability
//! across processes. The engine's tests, the writer's tests and the
//! simulator run on it.
//!
//! A commit is checked whole before anything is applied, so a batch that
//! fails leaves nothing behind, as a rolled-back transaction does. Tests can
//! hold commits at a gate and make one fail, to observe what requesters see
//! while a batch is being made durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use kanal_proto::address::{Address, ConversationId};
use tokio::sync::{Semaphore, mpsc};

use super::{Store, StoreError, StoreResult, columns};
use crate::core::audience;
use crate::model::{
    Body, Committed, ConversationKey, ConversationRecord, ConversationView, Device, Event,
    EventRef, InboxHead, Invite, LogHead, Message, NewDevice, NewInvite, OutboxRow, Party, PartyId,
    PeerRecord, Receipt, ReceiptKind, Session, StoredSend, Undelivered, Write,
};
use crate::model::{
    Counters, DeskEntry, DeskRecord, Owner, StoredDesk, StoredSeat, StoredTicket, TicketFilter,
};

/// The in-memory store. See the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    gate: Option<CommitGate>,
    fail_next: AtomicBool,
}

/// Holds commits until a test lets them through.
#[derive(Debug)]
struct CommitGate {
    /// Hears of each commit (its number of writes) as it arrives.
    entered: mpsc::UnboundedSender<usize>,
    permits: Semaphore,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose commits wait at a gate that lets `permits`
    /// through (more with [`MemoryStore::open_gate`]); the receiver hears of
    /// each commit, with its number of writes, as it reaches the gate.
    pub fn gated(permits: usize) -> (Self, mpsc::UnboundedReceiver<usize>) {
        let (entered, arrivals) = mpsc::unbounded_channel();
        let mut store = Self::new();
        store.gate = Some(CommitGate {
            entered,
            permits: Semaphore::new(permits),
        });
        (store, arrivals)
    }

    /// Lets `permits` more commits through the gate.
    pub fn open_gate(&self, permits: usize) {
        if let Some(gate) = &self.gate {
            gate.permits.add_permits(permits);
        }
    }

    /// Makes the next commit fail, storing nothing.
    pub fn fail_next_commit(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct State {
    parties: BTreeMap<PartyId, (Party, Option<String>)>,
    by_address: HashMap<Address, PartyId>,
    inbox_agents: HashMap<PartyId, Vec<PartyId>>,
    sessions: Vec<StoredSession>,
    conversations: BTreeMap<ConversationKey, StoredConversation>,
    by_id: HashMap<ConversationId, ConversationKey>,
    messages: BTreeMap<(ConversationKey, u64), StoredMessage>,
    sends: HashMap<(ConversationKey, PartyId, String), u64>,
    events: BTreeMap<(PartyId, u64), StoredEvent>,
    inbox_events: BTreeMap<(PartyId, u64), StoredEvent>,
    /// (party, seq) → (inbox, iseq)
    spans: BTreeMap<(PartyId, u64), (PartyId, u64)>,
    watermarks: HashMap<(ConversationKey, PartyId, ReceiptKind), u64>,
    /// (peer, seq) → (payload, enqueued_at_ms)
    outbox: BTreeMap<(String, u64), (Bytes, i64)>,
    /// Messages submitted to other hosts: (key, sender, client_msg_id).
    submitted: HashSet<(ConversationKey, PartyId, String)>,
    /// Transactions given up, by (peer, seq).
    undelivered: BTreeMap<(String, u64), Undelivered>,
    /// The peer servers the operator configured, by domain.
    peers: BTreeMap<String, PeerRecord>,
    /// Where federation stands with each peer.
    peer_cursors: HashMap<String, PeerCursors>,
    invites: Vec<([u8; 32], Invite)>,
    /// The device registry, by key.
    devices: BTreeMap<[u8; 32], Device>,
    /// Each inbox's follower version (see [`InboxClaim`]).
    inbox_versions: HashMap<PartyId, u64>,
    /// The service desk's tickets, by conversation.
    tickets: BTreeMap<ConversationKey, StoredTicket>,
    /// (inbox, agent) → seat
    seats: BTreeMap<(PartyId, PartyId), StoredSeat>,
    /// Each inbox's desk settings.
    desk_settings: HashMap<PartyId, String>,
    /// Each conversation's desk log, by (key, dseq).
    desk_entries: BTreeMap<(ConversationKey, u64), DeskEntry>,
    /// (key, actor, client_note_id) → dseq, for notes of a party: SQL's
    /// unique index, where a desk's own entries (no actor) never collide.
    notes: HashMap<(ConversationKey, PartyId, String), u64>,
}

/// A `peer_cursors` row: where federation stands with one peer.
#[derive(Debug, Clone, Copy, Default)]
struct PeerCursors {
    /// The peer acknowledged every outbox row toward it up to here.
    acked: u64,
    /// Every transaction from the peer up to here is applied.
    committed: u64,
    /// When the last of them was, ms since the Unix epoch.
    committed_at_ms: i64,
}

#[derive(Debug)]
struct StoredSession {
    session: Session,
    token_hash: [u8; 32],
}

#[derive(Debug, Clone)]
struct StoredConversation {
    id: ConversationId,
    subject: String,
    created_at_ms: i64,
    members: Vec<PartyId>,
}

#[derive(Debug, Clone)]
struct StoredMessage {
    sender: PartyId,
    client_msg_id: String,
    sent_at_ms: i64,
    body: Body,
}

#[derive(Debug, Clone, Copy)]
struct StoredEvent {
    key: ConversationKey,
    what: EventRef,
    at_ms: i64,
}

impl State {
    /// Where federation stands with `peer` (nowhere yet: zeros).
    fn cursors(&self, peer: &str) -> PeerCursors {
        self.peer_cursors.get(peer).copied().unwrap_or_default()
    }

    fn party(&self, id: PartyId) -> StoreResult<&Party> {
        self.parties
            .get(&id)
            .map(|(party, _)| party)
            .ok_or_else(|| StoreError::NotFound(format!("party {id}")))
    }

    fn record(&self, key: ConversationKey) -> StoreResult<Option<ConversationRecord>> {
        let Some(c) = self.conversations.get(&key) else {
            return Ok(None);
        };
        let last = self.messages.range((key, 0)..=(key, u64::MAX)).next_back();
        Ok(Some(ConversationRecord {
            key,
            id: c.id.clone(),
            subject: c.subject.clone(),
            created_at_ms: c.created_at_ms,
            last_seq: last.map_or(0, |((_, seq), _)| *seq),
            last_activity_ms: last.map_or(c.created_at_ms, |(_, m)| m.sent_at_ms),
            members: c
                .members
                .iter()
                .map(|id| self.party(*id).cloned())
                .collect::<StoreResult<_>>()?,
        }))
    }

    /// Whether `party` sees the conversation, by the audience rule.
    fn sees(&self, record: &ConversationRecord, party: PartyId) -> bool {
        audience::viewers(&record.members, |inbox| {
            self.inbox_agents.get(&inbox).map_or(&[], Vec::as_slice)
        })
        .contains(&party)
    }

    fn view(&self, key: ConversationKey, viewer: PartyId) -> StoreResult<Option<ConversationView>> {
        let mark = |kind| {
            self.watermarks
                .get(&(key, viewer, kind))
                .copied()
                .unwrap_or(0)
        };
        Ok(self.record(key)?.map(|record| {
            ConversationView::of(
                &record,
                mark(ReceiptKind::Delivered),
                mark(ReceiptKind::Read),
            )
        }))
    }

    fn message(&self, key: ConversationKey, seq: u64) -> StoreResult<Message> {
        let corrupt = || StoreError::Corrupt(format!("message {key}/{seq} is missing"));
        let stored = self.messages.get(&(key, seq)).ok_or_else(corrupt)?;
        let conversation = self.conversations.get(&key).ok_or_else(corrupt)?;
        Ok(Message {
            conversation: conversation.id.clone(),
            seq,
            sender: self.party(stored.sender)?.address.clone(),
            client_msg_id: stored.client_msg_id.clone(),
            sent_at_ms: stored.sent_at_ms,
            body: stored.body.clone(),
        })
    }

    /// The highest seq of an inbox's log (0 if empty).
    fn inbox_head(&self, inbox: PartyId) -> u64 {
        self.inbox_events
            .range((inbox, 0)..=(inbox, u64::MAX))
            .next_back()
            .map_or(0, |((_, iseq), _)| *iseq)
    }

    /// Where `party`'s log ends: its last row is an event of its own, or a
    /// span that runs to the end of the inbox's log.
    fn log_head(&self, party: PartyId) -> LogHead {
        let own = self
            .events
            .range((party, 0)..=(party, u64::MAX))
            .next_back()
            .map_or(0, |((_, seq), _)| *seq);
        match self.spans.range((party, 0)..=(party, u64::MAX)).next_back() {
            Some((&(_, start), &(inbox, iseq))) if start > own => {
                let inbox_head = self.inbox_head(inbox);
                LogHead {
                    head: start + inbox_head.saturating_sub(iseq),
                    follows: Some((inbox, inbox_head + 1)),
                    last_row: start,
                }
            }
            _ => LogHead {
                head: own,
                follows: None,
                last_row: own,
            },
        }
    }

    /// Event `seq` of `party`'s log: a row of its own, or the inbox event
    /// its span at or before `seq` maps it to (unless a row of its own
    /// ended that span first).
    fn log_entry(&self, party: PartyId, seq: u64) -> Option<StoredEvent> {
        if let Some(own) = self.events.get(&(party, seq)) {
            return Some(*own);
        }
        let (&(_, start), &(inbox, iseq)) =
            self.spans.range((party, 0)..=(party, seq)).next_back()?;
        if self
            .events
            .range((party, start)..(party, seq))
            .next()
            .is_some()
        {
            return None;
        }
        self.inbox_events
            .get(&(inbox, iseq + (seq - start)))
            .copied()
    }

    /// Builds event `seq` of `party`'s log from its stored form.
    fn event(&self, party: PartyId, seq: u64, stored: StoredEvent) -> StoreResult<Event> {
        let corrupt = || StoreError::Corrupt(format!("event {party}/{seq}"));
        let conversation = self.conversations.get(&stored.key).ok_or_else(corrupt)?;
        Ok(match stored.what {
            EventRef::Message { seq } => Event::Message(self.message(stored.key, seq)?),
            EventRef::Desk { dseq } => {
                let entry = self.desk_entries.get(&(stored.key, dseq)).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "event {party}/{seq}: desk entry {}/{dseq} is missing",
                        stored.key
                    ))
                })?;
                Event::Desk(DeskRecord {
                    conversation: conversation.id.clone(),
                    dseq,
                    payload: entry.payload.clone(),
                })
            }
            EventRef::DeliveryFailed { .. } => {
                let told = self
                    .undelivered
                    .values()
                    .filter_map(|u| u.told.as_ref())
                    .find(|t| t.party == party && t.event_seq == seq)
                    .ok_or_else(corrupt)?;
                Event::DeliveryFailed(told.failure.clone())
            }
            EventRef::ConversationAdded { last_seq } => {
                let record = self.record(stored.key)?.ok_or_else(corrupt)?;
                Event::conversation_added(&record, last_seq, stored.at_ms)
            }
            EventRef::Receipt {
                party: actor,
                kind,
                up_to,
            } => Event::Receipt(Receipt {
                conversation: conversation.id.clone(),
                party: self.party(actor)?.address.clone(),
                kind,
                up_to,
            }),
        })
    }

    /// Moves the rows of each rebasable claim's log after what another
    /// writer appended to it, as PostgreSQL does (`store::postgres::claims`).
    fn rebase(&self, batch: &mut [Write]) -> Vec<(PartyId, u64)> {
        let mut rebased = Vec::new();
        for write in batch.iter_mut() {
            if let Write::LogClaim {
                party,
                was,
                now,
                rebasable: true,
            } = write
            {
                let stored = self.log_head(*party);
                if stored.follows.is_none() && stored.last_row > *was {
                    let by = stored.last_row - *was;
                    rebased.push((*party, by));
                    *was += by;
                    *now += by;
                }
            }
        }
        for write in batch.iter_mut() {
            if let Write::Event { party, seq, .. } = write
                && let Some((_, by)) = rebased.iter().find(|(p, _)| p == party)
            {
                *seq += by;
            }
        }
        rebased
    }

    /// Refuses a batch that a database with SQLite's keys would refuse.
    fn check(&self, batch: &[Write]) -> StoreResult<()> {
        // A row another writer numbered first: PostgreSQL reports it as a
        // conflict too, and the engine numbers again.
        let conflict = |_what: String| StoreError::Conflict;
        let mut parties = HashSet::new();
        let mut addresses = HashSet::new();
        let mut keys = HashSet::new();
        let mut ids = HashSet::new();
        let mut messages = HashSet::new();
        let mut sends = HashSet::new();
        let mut events = HashSet::new();
        let mut inbox_events = HashSet::new();
        let mut spans = HashSet::new();
        let mut outbox = HashSet::new();
        let mut undelivered = HashSet::new();
        let mut entries = HashSet::new();
        let mut notes = HashSet::new();
        let party_known = |id: &PartyId, new: &HashSet<PartyId>| {
            self.parties.contains_key(id) || new.contains(id)
        };
        for write in batch {
            match write {
                Write::NewParty { id, party, .. } => {
                    if self.parties.contains_key(id) || !parties.insert(*id) {
                        return Err(conflict(format!("party {id}")));
                    }
                    if self.by_address.contains_key(&party.address)
                        || !addresses.insert(party.address.clone())
                    {
                        return Err(StoreError::AddressTaken(party.address.clone()));
                    }
                }
                Write::InboxAgent { inbox, agent } => {
                    if !party_known(inbox, &parties) || !party_known(agent, &parties) {
                        return Err(StoreError::NotFound(format!("party {inbox} or {agent}")));
                    }
                }
                Write::NewConversation {
                    key, id, members, ..
                } => {
                    if self.conversations.contains_key(key)
                        || !keys.insert(*key)
                        || self.by_id.contains_key(id)
                        || !ids.insert(id.clone())
                    {
                        return Err(conflict(format!("conversation {key}")));
                    }
                    if let Some(missing) = members.iter().find(|m| !party_known(m, &parties)) {
                        return Err(StoreError::NotFound(format!("party {missing}")));
                    }
                }
                Write::Message {
                    key,
                    seq,
                    sender,
                    client_msg_id,
                    ..
                } => {
                    if !self.conversations.contains_key(key) && !keys.contains(key) {
                        return Err(StoreError::NotFound(format!("conversation {key}")));
                    }
                    if self.messages.contains_key(&(*key, *seq)) || !messages.insert((*key, *seq)) {
                        return Err(conflict(format!("message {key}/{seq}")));
                    }
                    let send = (*key, *sender, client_msg_id.clone());
                    if self.sends.contains_key(&send) || !sends.insert(send) {
                        return Err(StoreError::DuplicateSend);
                    }
                }
                Write::Event { party, seq, .. } => {
                    if self.events.contains_key(&(*party, *seq)) || !events.insert((*party, *seq)) {
                        return Err(conflict(format!("event {party}/{seq}")));
                    }
                }
                Write::InboxEvent { inbox, iseq, .. } => {
                    if self.inbox_events.contains_key(&(*inbox, *iseq))
                        || !inbox_events.insert((*inbox, *iseq))
                    {
                        return Err(conflict(format!("inbox event {inbox}/{iseq}")));
                    }
                }
                Write::Span { party, seq, .. } => {
                    if self.spans.contains_key(&(*party, *seq)) || !spans.insert((*party, *seq)) {
                        return Err(conflict(format!("span {party}/{seq}")));
                    }
                }
                Write::Watermark { .. } | Write::PeerCommitted { .. } => {}
                // Claims are checked as PostgreSQL checks them, so engines
                // sharing this store can be tested as nodes sharing one.
                Write::LogClaim { party, was, .. } => {
                    if self.log_head(*party).last_row != *was {
                        return Err(StoreError::Conflict);
                    }
                }
                Write::InboxClaim(claim) => {
                    let version = self.inbox_versions.get(&claim.inbox).copied();
                    if claim
                        .head_was
                        .is_some_and(|was| was != self.inbox_head(claim.inbox))
                        || claim
                            .version_was
                            .is_some_and(|was| was != version.unwrap_or(0))
                    {
                        return Err(StoreError::Conflict);
                    }
                }
                Write::Outbox(row) => {
                    let at = (row.peer.clone(), row.seq);
                    if self.outbox.contains_key(&at) || !outbox.insert(at) {
                        return Err(conflict(format!("outbox {}/{}", row.peer, row.seq)));
                    }
                }
                Write::Undelivered(u) => {
                    let at = (u.peer.clone(), u.seq);
                    if self.undelivered.contains_key(&at) || !undelivered.insert(at) {
                        return Err(StoreError::Corrupt(format!(
                            "undelivered {}/{} exists",
                            u.peer, u.seq
                        )));
                    }
                }
                Write::Replayed { .. } | Write::Submitted { .. } => {}
                Write::Ticket(ticket) => {
                    if !self.conversations.contains_key(&ticket.key) && !keys.contains(&ticket.key)
                    {
                        return Err(StoreError::NotFound(format!("conversation {}", ticket.key)));
                    }
                }
                Write::Seat(_) | Write::DeskSettings { .. } => {}
                Write::DeskEntry(entry) => {
                    let at = (entry.key, entry.dseq);
                    if self.desk_entries.contains_key(&at) || !entries.insert(at) {
                        return Err(conflict(format!("desk entry {}/{}", entry.key, entry.dseq)));
                    }
                    if let Some(note) = note_key(entry)
                        && (self.notes.contains_key(&note) || !notes.insert(note))
                    {
                        return Err(StoreError::DuplicateSend);
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: Vec<Write>) {
        for write in batch {
            match write {
                Write::NewParty { id, party, .. } => {
                    self.by_address.insert(party.address.clone(), id);
                    let stored = Party {
                        id,
                        address: party.address,
                        kind: party.kind,
                        display_name: party.display_name,
                    };
                    self.parties.insert(id, (stored, party.password_hash));
                }
                Write::InboxAgent { inbox, agent } => {
                    let agents = self.inbox_agents.entry(inbox).or_default();
                    if !agents.contains(&agent) {
                        agents.push(agent);
                    }
                }
                Write::NewConversation {
                    key,
                    id,
                    subject,
                    created_at_ms,
                    members,
                    ..
                } => {
                    self.by_id.insert(id.clone(), key);
                    self.conversations.insert(
                        key,
                        StoredConversation {
                            id,
                            subject,
                            created_at_ms,
                            members,
                        },
                    );
                }
                Write::Message {
                    key,
                    seq,
                    sender,
                    client_msg_id,
                    sent_at_ms,
                    body,
                } => {
                    self.sends.insert((key, sender, client_msg_id.clone()), seq);
                    self.messages.insert(
                        (key, seq),
                        StoredMessage {
                            sender,
                            client_msg_id,
                            sent_at_ms,
                            body,
                        },
                    );
                }
                Write::Event {
                    party,
                    seq,
                    key,
                    what,
                    at_ms,
                } => {
                    self.events
                        .insert((party, seq), StoredEvent { key, what, at_ms });
                }
                Write::InboxEvent {
                    inbox,
                    iseq,
                    key,
                    what,
                    at_ms,
                } => {
                    self.inbox_events
                        .insert((inbox, iseq), StoredEvent { key, what, at_ms });
                }
                Write::Span {
                    party,
                    seq,
                    inbox,
                    iseq,
                } => {
                    self.spans.insert((party, seq), (inbox, iseq));
                }
                Write::Watermark {
                    key,
                    party,
                    kind,
                    up_to,
                } => {
                    let mark = self.watermarks.entry((key, party, kind)).or_insert(0);
                    *mark = (*mark).max(up_to);
                }
                Write::Outbox(row) => {
                    self.outbox
                        .insert((row.peer, row.seq), (row.payload, row.enqueued_at_ms));
                }
                Write::Undelivered(u) => {
                    self.undelivered.insert((u.peer.clone(), u.seq), *u);
                }
                Write::Submitted {
                    key,
                    sender,
                    client_msg_id,
                } => {
                    self.submitted.insert((key, sender, client_msg_id));
                }
                Write::Replayed { peer, seq, as_seq } => {
                    if let Some(u) = self.undelivered.get_mut(&(peer, seq)) {
                        u.replayed_as = Some(as_seq);
                    }
                }
                Write::PeerCommitted { peer, up_to, at_ms } => {
                    let cursors = self.peer_cursors.entry(peer).or_default();
                    cursors.committed = cursors.committed.max(up_to);
                    cursors.committed_at_ms = cursors.committed_at_ms.max(at_ms);
                }
                Write::LogClaim { .. } => {}
                Write::InboxClaim(claim) => {
                    if claim.bump {
                        *self.inbox_versions.entry(claim.inbox).or_insert(0) += 1;
                    }
                }
                Write::Ticket(ticket) => {
                    self.tickets.insert(ticket.key, ticket);
                }
                Write::Seat(seat) => {
                    self.seats.insert((seat.inbox, seat.agent), seat);
                }
                Write::DeskSettings { inbox, settings } => {
                    self.desk_settings.insert(inbox, settings);
                }
                Write::DeskEntry(entry) => {
                    if let Some(note) = note_key(&entry) {
                        self.notes.insert(note, entry.dseq);
                    }
                    self.desk_entries.insert((entry.key, entry.dseq), entry);
                }
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn party_by_address(&self, address: &Address) -> StoreResult<Option<Party>> {
        let state = self.lock();
        Ok(state
            .by_address
            .get(address)
            .and_then(|id| state.parties.get(id))
            .map(|(party, _)| party.clone()))
    }

    async fn party_by_id(&self, id: PartyId) -> StoreResult<Option<Party>> {
        Ok(self.lock().parties.get(&id).map(|(party, _)| party.clone()))
    }

    async fn password_hash(&self, id: PartyId) -> StoreResult<Option<String>> {
        Ok(self
            .lock()
            .parties
            .get(&id)
            .and_then(|(_, hash)| hash.clone()))
    }

    async fn inbox_agents(&self, inbox: PartyId) -> StoreResult<Vec<PartyId>> {
        Ok(self
            .lock()
            .inbox_agents
            .get(&inbox)
            .cloned()
            .unwrap_or_default())
    }

    async fn agent_inboxes(&self, agent: PartyId) -> StoreResult<Vec<PartyId>> {
        let state = self.lock();
        let mut inboxes: Vec<PartyId> = state
            .inbox_agents
            .iter()
            .filter(|(_, agents)| agents.contains(&agent))
            .map(|(inbox, _)| *inbox)
            .collect();
        inboxes.sort_unstable();
        Ok(inboxes)
    }

    async fn parties(&self) -> StoreResult<Vec<Party>> {
        let mut parties: Vec<Party> = self
            .lock()
            .parties
            .values()
            .map(|(party, _)| party.clone())
            .collect();
        parties.sort_by(|a, b| a.address.as_str().cmp(b.address.as_str()));
        Ok(parties)
    }

    async fn create_session(
        &self,
        party: PartyId,
        token_hash: [u8; 32],
        _client: &str,
    ) -> StoreResult<Session> {
        let mut state = self.lock();
        state.party(party)?;
        let session = Session {
            id: i64::try_from(state.sessions.len()).unwrap_or(i64::MAX) + 1,
            party,
            acked_seq: 0,
        };
        state.sessions.push(StoredSession {
            session: session.clone(),
            token_hash,
        });
        Ok(session)
    }

    async fn session_by_token_hash(&self, token_hash: [u8; 32]) -> StoreResult<Option<Session>> {
        Ok(self
            .lock()
            .sessions
            .iter()
            .find(|s| s.token_hash == token_hash)
            .map(|s| s.session.clone()))
    }

    async fn ack_session(&self, session: i64, seq: u64) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state
            .sessions
            .iter_mut()
            .find(|s| s.session.id == session)
            .ok_or_else(|| StoreError::NotFound(format!("session {session}")))?;
        stored.session.acked_seq = stored.session.acked_seq.max(seq);
        Ok(())
    }

    async fn add_device(&self, device: NewDevice, now_ms: i64) -> StoreResult<Device> {
        let mut state = self.lock();
        if state.devices.contains_key(&device.key)
            || state.devices.values().any(|d| d.serial == device.serial)
        {
            return Err(columns::device_taken(&device.serial));
        }
        let stored = columns::added_device(device, now_ms);
        state.devices.insert(stored.key, stored.clone());
        Ok(stored)
    }

    async fn devices(&self) -> StoreResult<Vec<Device>> {
        let mut devices: Vec<Device> = self.lock().devices.values().cloned().collect();
        devices.sort_by(|a, b| a.serial.cmp(&b.serial));
        Ok(devices)
    }

    async fn devices_of(&self, owner: PartyId) -> StoreResult<Vec<Device>> {
        let mut devices: Vec<Device> = self
            .lock()
            .devices
            .values()
            .filter(|d| d.owner == Some(owner))
            .cloned()
            .collect();
        devices.sort_by(|a, b| a.serial.cmp(&b.serial));
        Ok(devices)
    }

    async fn device_by_key(&self, key: [u8; 32]) -> StoreResult<Option<Device>> {
        Ok(self.lock().devices.get(&key).cloned())
    }

    async fn revoke_device(&self, serial: &str, now_ms: i64) -> StoreResult<bool> {
        let mut state = self.lock();
        let device = state
            .devices
            .values_mut()
            .find(|d| d.serial == serial && d.revoked_at_ms.is_none());
        Ok(device.map(|d| d.revoked_at_ms = Some(now_ms)).is_some())
    }

    async fn link_device(&self, serial: &str, owner: Option<PartyId>) -> StoreResult<bool> {
        let mut state = self.lock();
        let device = state.devices.values_mut().find(|d| d.serial == serial);
        Ok(device.map(|d| d.owner = owner).is_some())
    }

    async fn advance_initiations(&self, batch: Vec<([u8; 32], u32)>) -> StoreResult<Vec<bool>> {
        let mut state = self.lock();
        Ok(batch
            .into_iter()
            .map(|(key, counter)| match state.devices.get_mut(&key) {
                Some(device) if device.last_initiation < counter => {
                    device.last_initiation = counter;
                    true
                }
                _ => false,
            })
            .collect())
    }

    async fn create_invite(&self, invite: NewInvite, now_ms: i64) -> StoreResult<Invite> {
        let mut state = self.lock();
        if state
            .invites
            .iter()
            .any(|(hash, _)| *hash == invite.code_hash)
        {
            return Err(StoreError::Backend(
                "an invite with this code exists".into(),
            ));
        }
        let stored = Invite {
            id: state.invites.last().map_or(1, |(_, last)| last.id + 1),
            uses_left: invite.uses,
            expires_at_ms: invite.expires_at_ms,
            created_at_ms: now_ms,
            note: invite.note,
        };
        state.invites.push((invite.code_hash, stored.clone()));
        Ok(stored)
    }

    async fn take_invite(&self, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool> {
        let mut state = self.lock();
        let live = state
            .invites
            .iter_mut()
            .find(|(hash, invite)| *hash == code_hash && works(invite, now_ms));
        Ok(live.is_some_and(|(_, invite)| {
            invite.uses_left -= 1;
            true
        }))
    }

    async fn return_invite(&self, code_hash: [u8; 32]) -> StoreResult<()> {
        if let Some((_, invite)) = self
            .lock()
            .invites
            .iter_mut()
            .find(|(h, _)| *h == code_hash)
        {
            invite.uses_left += 1;
        }
        Ok(())
    }

    async fn invites(&self, now_ms: i64) -> StoreResult<Vec<Invite>> {
        Ok(self
            .lock()
            .invites
            .iter()
            .filter(|(_, invite)| works(invite, now_ms))
            .map(|(_, invite)| invite.clone())
            .collect())
    }

    async fn revoke_invite(&self, id: i64) -> StoreResult<bool> {
        let mut state = self.lock();
        let before = state.invites.len();
        state.invites.retain(|(_, invite)| invite.id != id);
        Ok(state.invites.len() < before)
    }

    async fn commit(&self, mut batch: Vec<Write>) -> StoreResult<Committed> {
        if let Some(gate) = &self.gate {
            let _ = gate.entered.send(batch.len());
            gate.permits
                .acquire()
                .await
                .map_err(|_| StoreError::Closed)?
                .forget();
        }
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Aborted);
        }
        let mut state = self.lock();
        let rebased = state.rebase(&mut batch);
        state.check(&batch)?;
        state.apply(batch);
        Ok(Committed { rebased })
    }

    async fn load_conversation(
        &self,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>> {
        let state = self.lock();
        match state.by_id.get(id) {
            Some(key) => state.record(*key),
            None => Ok(None),
        }
    }

    async fn counters(&self) -> StoreResult<Counters> {
        let state = self.lock();
        Ok(Counters {
            max_key: state.conversations.keys().next_back().copied().unwrap_or(0),
            max_party: state.parties.keys().next_back().copied().unwrap_or(0),
            ..Counters::default()
        })
    }

    async fn watermark(
        &self,
        key: ConversationKey,
        party: PartyId,
        kind: ReceiptKind,
    ) -> StoreResult<u64> {
        Ok(self
            .lock()
            .watermarks
            .get(&(key, party, kind))
            .copied()
            .unwrap_or(0))
    }

    async fn log_head(&self, party: PartyId) -> StoreResult<LogHead> {
        Ok(self.lock().log_head(party))
    }

    async fn inbox_head(&self, inbox: PartyId) -> StoreResult<InboxHead> {
        let state = self.lock();
        Ok(InboxHead {
            head: state.inbox_head(inbox),
            version: state.inbox_versions.get(&inbox).copied().unwrap_or(0),
        })
    }

    async fn find_send(
        &self,
        key: ConversationKey,
        sender: PartyId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredSend>> {
        let state = self.lock();
        let Some(seq) = state
            .sends
            .get(&(key, sender, client_msg_id.to_owned()))
            .copied()
        else {
            return Ok(None);
        };
        Ok(state.messages.get(&(key, seq)).map(|m| StoredSend {
            seq,
            sent_at_ms: m.sent_at_ms,
        }))
    }

    async fn desk(&self, inbox: PartyId) -> StoreResult<StoredDesk> {
        let state = self.lock();
        Ok(StoredDesk {
            settings: state.desk_settings.get(&inbox).cloned(),
            seats: state
                .seats
                .range((inbox, PartyId::MIN)..=(inbox, PartyId::MAX))
                .map(|(_, seat)| seat.clone())
                .collect(),
            tickets: state
                .tickets
                .values()
                .filter(|t| t.inbox == inbox && !t.status.is_resolved())
                .cloned()
                .collect(),
        })
    }

    async fn ticket(&self, key: ConversationKey) -> StoreResult<Option<StoredTicket>> {
        Ok(self.lock().tickets.get(&key).cloned())
    }

    async fn tickets(
        &self,
        filter: &TicketFilter,
        limit: u32,
        offset: u32,
    ) -> StoreResult<(Vec<StoredTicket>, bool)> {
        let state = self.lock();
        let mut found: Vec<&StoredTicket> = state
            .tickets
            .values()
            .filter(|t| wanted(filter, t))
            .collect();
        found.sort_unstable_by_key(|t| std::cmp::Reverse((t.updated_at_ms, t.key)));
        let mut page: Vec<StoredTicket> = found
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize + 1)
            .cloned()
            .collect();
        let has_more = page.len() > limit as usize;
        page.truncate(limit as usize);
        Ok((page, has_more))
    }

    async fn desk_entries(
        &self,
        key: ConversationKey,
        before: u64,
        limit: u32,
    ) -> StoreResult<(Vec<DeskEntry>, bool)> {
        let state = self.lock();
        let before = if before == 0 { u64::MAX } else { before };
        let mut entries: Vec<DeskEntry> = state
            .desk_entries
            .range((key, 0)..(key, before))
            .rev()
            .take(limit as usize + 1)
            .map(|(_, entry)| entry.clone())
            .collect();
        let has_more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        entries.reverse();
        Ok((entries, has_more))
    }

    async fn inbox_desk_entries(
        &self,
        inbox: PartyId,
        (from_ms, to_ms): (i64, i64),
        after: Option<(i64, ConversationKey, u64)>,
        limit: u32,
    ) -> StoreResult<Vec<DeskEntry>> {
        let state = self.lock();
        let mut found: Vec<DeskEntry> = state
            .desk_entries
            .values()
            .filter(|e| e.inbox == inbox && (from_ms..to_ms).contains(&e.at_ms))
            .filter(|e| after.is_none_or(|after| (e.at_ms, e.key, e.dseq) > after))
            .cloned()
            .collect();
        found.sort_by_key(|e| (e.at_ms, e.key, e.dseq));
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn find_note(
        &self,
        key: ConversationKey,
        actor: PartyId,
        client_note_id: &str,
    ) -> StoreResult<Option<(u64, i64)>> {
        let state = self.lock();
        let Some(dseq) = state
            .notes
            .get(&(key, actor, client_note_id.to_owned()))
            .copied()
        else {
            return Ok(None);
        };
        Ok(state
            .desk_entries
            .get(&(key, dseq))
            .map(|entry| (dseq, entry.at_ms)))
    }

    async fn can_see(&self, key: ConversationKey, party: PartyId) -> StoreResult<bool> {
        let state = self.lock();
        Ok(state
            .record(key)?
            .is_some_and(|record| state.sees(&record, party)))
    }

    async fn history(
        &self,
        key: ConversationKey,
        before: u64,
        limit: u32,
    ) -> StoreResult<(Vec<Message>, bool)> {
        let state = self.lock();
        let before = if before == 0 { u64::MAX } else { before };
        let mut seqs: Vec<u64> = state
            .messages
            .range((key, 0)..(key, before))
            .rev()
            .take(limit as usize + 1)
            .map(|((_, seq), _)| *seq)
            .collect();
        let has_more = seqs.len() > limit as usize;
        seqs.truncate(limit as usize);
        let messages = seqs
            .into_iter()
            .rev()
            .map(|seq| state.message(key, seq))
            .collect::<StoreResult<_>>()?;
        Ok((messages, has_more))
    }

    async fn events_since(
        &self,
        party: PartyId,
        since: u64,
        limit: u32,
        max_body_bytes: usize,
    ) -> StoreResult<Vec<(u64, Event)>> {
        let state = self.lock();
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut seq = since;
        while events.len() < limit as usize {
            seq += 1;
            let Some(stored) = state.log_entry(party, seq) else {
                break;
            };
            if let EventRef::Message { seq } = stored.what
                && let Some(message) = state.messages.get(&(stored.key, seq))
            {
                bytes += super::body::encode(&message.body).len();
            }
            if let EventRef::Desk { dseq } = stored.what
                && let Some(entry) = state.desk_entries.get(&(stored.key, dseq))
            {
                bytes += entry.payload.len();
            }
            // Past the budget, the page ends (its first event always comes).
            if bytes > max_body_bytes && !events.is_empty() {
                break;
            }
            events.push((seq, state.event(party, seq, stored)?));
        }
        Ok(events)
    }

    async fn conversations_of(
        &self,
        party: PartyId,
        limit: u32,
        offset: u32,
    ) -> StoreResult<(Vec<ConversationView>, bool)> {
        let state = self.lock();
        let mut seen = Vec::new();
        for &key in state.conversations.keys() {
            if let Some(record) = state.record(key)?
                && state.sees(&record, party)
            {
                seen.push((record.last_activity_ms, key));
            }
        }
        seen.sort_unstable_by(|a, b| b.cmp(a));
        let mut views = seen
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize + 1)
            .map(|(_, key)| {
                state
                    .view(key, party)?
                    .ok_or_else(|| StoreError::Corrupt(format!("conversation {key} is missing")))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = views.len() > limit as usize;
        views.truncate(limit as usize);
        Ok((views, has_more))
    }

    async fn conversation_view(
        &self,
        key: ConversationKey,
        viewer: PartyId,
    ) -> StoreResult<Option<ConversationView>> {
        self.lock().view(key, viewer)
    }

    async fn backup(&self, _to: &std::path::Path) -> StoreResult<()> {
        Err(StoreError::Unsupported(
            "the in-memory store keeps nothing to back up",
        ))
    }

    async fn outbox(&self, peer: &str, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>> {
        Ok(self
            .lock()
            .outbox
            .range((peer.to_owned(), after.saturating_add(1))..=(peer.to_owned(), u64::MAX))
            .take(limit as usize)
            .map(|((peer, seq), (payload, enqueued_at_ms))| OutboxRow {
                peer: peer.clone(),
                seq: *seq,
                payload: payload.clone(),
                enqueued_at_ms: *enqueued_at_ms,
            })
            .collect())
    }

    async fn peers(&self) -> StoreResult<Vec<PeerRecord>> {
        Ok(self.lock().peers.values().cloned().collect())
    }

    async fn put_peer(&self, peer: &PeerRecord) -> StoreResult<()> {
        self.lock().peers.insert(peer.domain.clone(), peer.clone());
        Ok(())
    }

    async fn remove_peer(&self, domain: &str) -> StoreResult<bool> {
        Ok(self.lock().peers.remove(domain).is_some())
    }

    async fn outbox_head(&self, peer: &str) -> StoreResult<u64> {
        let state = self.lock();
        let stored = state
            .outbox
            .range((peer.to_owned(), 0)..=(peer.to_owned(), u64::MAX))
            .next_back()
            .map_or(0, |((_, seq), _)| *seq);
        Ok(stored.max(state.cursors(peer).acked))
    }

    async fn outbox_acked(&self, peer: &str) -> StoreResult<u64> {
        Ok(self.lock().cursors(peer).acked)
    }

    async fn ack_outbox(&self, peer: &str, up_to: u64) -> StoreResult<()> {
        let mut state = self.lock();
        let acked: Vec<(String, u64)> = state
            .outbox
            .range((peer.to_owned(), 0)..=(peer.to_owned(), up_to))
            .map(|(at, _)| at.clone())
            .collect();
        for at in acked {
            state.outbox.remove(&at);
        }
        let cursors = state.peer_cursors.entry(peer.to_owned()).or_default();
        cursors.acked = cursors.acked.max(up_to);
        Ok(())
    }

    async fn peer_committed(&self, peer: &str) -> StoreResult<u64> {
        Ok(self.lock().cursors(peer).committed)
    }

    async fn peers_committed_since(&self, since_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        let state = self.lock();
        let mut peers: Vec<(i64, &String)> = state
            .peer_cursors
            .iter()
            .filter(|(_, c)| c.committed > 0 && c.committed_at_ms >= since_ms)
            .map(|(peer, c)| (c.committed_at_ms, peer))
            .collect();
        peers.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        Ok(peers
            .into_iter()
            .take(limit as usize)
            .map(|(_, peer)| peer.clone())
            .collect())
    }

    async fn outbox_peers(&self) -> StoreResult<Vec<String>> {
        let state = self.lock();
        let mut peers: Vec<String> = state.outbox.keys().map(|(peer, _)| peer.clone()).collect();
        peers.dedup();
        Ok(peers)
    }

    async fn submitted(
        &self,
        key: ConversationKey,
        sender: PartyId,
        client_msg_id: &str,
    ) -> StoreResult<bool> {
        let state = self.lock();
        Ok(state
            .submitted
            .contains(&(key, sender, client_msg_id.to_owned())))
    }

    async fn undelivered(&self, peer: &str) -> StoreResult<Vec<Undelivered>> {
        let state = self.lock();
        Ok(state
            .undelivered
            .range((peer.to_owned(), 0)..=(peer.to_owned(), u64::MAX))
            .map(|(_, u)| u.clone())
            .collect())
    }
}

/// The key under which a desk entry is unique as a note, if it is one of
/// a party's (a desk's own entries, or entries without a client note id,
/// are unique by their dseq alone).
fn note_key(entry: &DeskEntry) -> Option<(ConversationKey, PartyId, String)> {
    match entry.actor {
        Some(actor) if !entry.client_note_id.is_empty() => {
            Some((entry.key, actor, entry.client_note_id.clone()))
        }
        _ => None,
    }
}

/// Whether `ticket` is one that `filter` wants.
fn wanted(filter: &TicketFilter, ticket: &StoredTicket) -> bool {
    let (status, _) = ticket.status.as_i64();
    let (owner_kind, owner) = ticket.owner.as_i64();
    filter.inboxes.contains(&ticket.inbox)
        && if filter.statuses.is_empty() {
            !ticket.status.is_resolved()
        } else {
            filter.statuses.contains(&status)
        }
        && filter.owner.is_none_or(|wanted| owner == Some(wanted))
        && (!filter.unowned || owner_kind == Owner::Nobody.as_i64().0)
}

/// Whether an invite still admits a registration at `now_ms`.
fn works(invite: &Invite, now_ms: i64) -> bool {
    invite.uses_left > 0 && invite.expires_at_ms.is_none_or(|at| now_ms < at)
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;

    async fn fresh() -> ((), MemoryStore) {
        ((), MemoryStore::new())
    }

    crate::store_conformance_tests!(fresh);

    #[tokio::test]
    async fn rebasing_keeps_a_shared_log_gapless() {
        let store: std::sync::Arc<dyn crate::store::Store> =
            std::sync::Arc::new(MemoryStore::new());
        crate::store::conformance::rebasing_keeps_a_shared_log_gapless(store.clone(), store).await;
    }

    #[tokio::test]
    async fn several_writers_keep_every_log_gapless() {
        let store: std::sync::Arc<dyn crate::store::Store> =
            std::sync::Arc::new(MemoryStore::new());
        crate::store::conformance::several_writers_keep_every_log_gapless(store.clone(), store)
            .await;
    }
}
