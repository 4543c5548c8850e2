//! The conversation engine: the one place that orders conversations.
//!
//! Sans-IO, as quinn-proto is: no sockets, no clock, no database. The driver
//! ([`crate::node::writer`]) asks what state a command [`needs`](Engine::needs),
//! loads it from the store, then [`applies`](Engine::apply) the command at a
//! given time and receives the rows to commit, the reply for the requester,
//! and the live deliveries to publish once the commit is durable. Because the
//! engine is the only writer of conversations and event logs, its cached
//! sequence numbers are authoritative, so assigning the next seq never needs a
//! round trip to the database.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::{Bytes, BytesMut};
use kanal_proto::address::ConversationId;
use kanal_proto::pb;
use prost::Message as _;

use crate::model::{
    ConversationKey, ConversationRecord, EventRef, Party, PartyId, ReceiptKind, StoredSend, Write,
};

/// Most conversations (and, separately, event-log heads) the engine keeps
/// cached. Past it the cache is dropped between batches and refilled from
/// the store on demand: memory stays bounded whatever the database holds.
pub const MAX_CACHED: usize = 100_000;

/// How many recent `(conversation, sender, client_msg_id)` triples the
/// engine remembers, so retries within a batch or shortly after need no lookup.
const RECENT_SENDS: usize = 65_536;

/// Something a requester asks the engine to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Start a conversation between `by` and `to`.
    CreateConversation {
        /// The party starting it.
        by: Party,
        /// The other parties (resolved, local).
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
        conversation: ConversationId,
        /// The sender's idempotency key.
        client_msg_id: String,
        /// The content (validated by the caller); the engine encodes it once.
        body: pb::Body,
    },
    /// Raise the caller's delivery or read watermark.
    MarkReceipt {
        /// Whose watermark.
        by: Party,
        /// Which conversation.
        conversation: ConversationId,
        /// Delivered or read.
        kind: ReceiptKind,
        /// New watermark.
        up_to: u64,
    },
}

/// State the engine must have before it can apply a command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Need {
    /// The conversation's record (`None` from the store means it does not exist).
    Conversation(ConversationId),
    /// The highest seq of a party's event log.
    Head(PartyId),
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
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The conversation as the requester sees it.
    Conversation(pb::Conversation),
    /// The message is stored.
    Sent(pb::Sent),
    /// Done, nothing to return.
    Done,
    /// Refused with a protocol error code.
    Refused(pb::ErrorCode, String),
}

/// One event for one party's live sessions: `kind` is the encoded
/// `pb::Event.kind` oneof field, shared by every recipient of the same event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The recipient.
    pub party: PartyId,
    /// The event's seq in the recipient's log.
    pub seq: u64,
    /// Encoded oneof field of `pb::Event`.
    pub kind: Bytes,
}

/// What applying a command produced.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Rows to commit before anything else happens.
    pub writes: Vec<Write>,
    /// Events to publish after the commit.
    pub deliveries: Vec<Delivery>,
}

/// The engine's state of one conversation.
#[derive(Debug, Clone)]
struct ConversationState {
    record: ConversationRecord,
    watermarks: HashMap<(PartyId, ReceiptKind), u64>,
}

/// The conversation engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    domain: String,
    next_key: ConversationKey,
    conversations: HashMap<ConversationId, ConversationState>,
    heads: HashMap<PartyId, u64>,
    inbox_agents: HashMap<PartyId, Vec<PartyId>>,
    recent_sends: HashMap<(ConversationKey, PartyId, String), StoredSend>,
    recent_order: VecDeque<(ConversationKey, PartyId, String)>,
    /// Lookups answered "never sent" that are not in `recent_sends`.
    checked_sends: HashSet<(ConversationKey, PartyId, String)>,
    /// Conversations whose every client message id is in `recent_sends`
    /// (created here, or loaded while empty, and nothing evicted since):
    /// their sends need no lookup.
    complete: HashSet<ConversationKey>,
    /// Whether sends missing from memory are looked up in the store before
    /// they are applied. Off, the engine assumes such a send is new and the
    /// store's uniqueness of (conversation, sender, client_msg_id) catches
    /// the rare retry of a send older than its memory: the driver then
    /// resets the engine and applies the batch again with this on.
    verify_sends: bool,
}

impl Engine {
    /// An engine for `domain` whose next conversation gets key `max_key + 1`.
    pub fn new(domain: impl Into<String>, max_key: ConversationKey) -> Self {
        Self {
            domain: domain.into(),
            next_key: max_key + 1,
            conversations: HashMap::new(),
            heads: HashMap::new(),
            inbox_agents: HashMap::new(),
            // Sized for their bound up front: growing a table of tens of
            // thousands of sends rehashes it all inside one command, a stall
            // of milliseconds for every send queued behind it.
            recent_sends: HashMap::with_capacity(RECENT_SENDS + 1),
            recent_order: VecDeque::with_capacity(RECENT_SENDS + 1),
            checked_sends: HashSet::new(),
            complete: HashSet::new(),
            verify_sends: false,
        }
    }

    /// Sets whether sends not in memory need a [`Need::PriorSend`] lookup
    /// (see the field's docs). Off by default.
    pub fn verify_sends(&mut self, verify: bool) {
        self.verify_sends = verify;
    }

    /// What must be loaded before `cmd` can be applied. Loading everything
    /// returned and asking again converges in at most three rounds
    /// (conversation, then inbox agents and prior sends, then heads).
    pub fn needs(&self, cmd: &Command) -> Vec<Need> {
        let mut needs = Vec::new();
        match cmd {
            Command::CreateConversation { by, to, .. } => {
                let members: Vec<&Party> = std::iter::once(by).chain(to).collect();
                self.recipient_needs(members.into_iter(), &mut needs);
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
                if self.verify_sends
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
                self.recipient_needs(state.record.members.iter(), &mut needs);
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
                    self.recipient_needs(state.record.members.iter(), &mut needs);
                }
            },
        }
        needs
    }

    /// Supplies a conversation record.
    pub fn load_conversation(&mut self, record: ConversationRecord) {
        if record.last_seq == 0 {
            self.complete.insert(record.key);
        }
        self.conversations.insert(
            record.id.clone(),
            ConversationState {
                record,
                watermarks: HashMap::new(),
            },
        );
    }

    /// Supplies a party's stored watermark.
    pub fn load_watermark(
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

    /// Supplies a party's event head.
    pub fn load_head(&mut self, party: PartyId, head: u64) {
        self.heads.insert(party, head);
    }

    /// Supplies an inbox's agents.
    pub fn load_inbox_agents(&mut self, inbox: PartyId, agents: Vec<PartyId>) {
        self.inbox_agents.insert(inbox, agents);
    }

    /// Supplies the result of a prior-send lookup.
    pub fn load_prior_send(
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

    /// Ends a batch: "never sent" answers were only valid for its commands
    /// (any triple they sent is in the recent set now).
    pub fn finish_batch(&mut self) {
        self.checked_sends.clear();
        // Dropping cached state is always safe between batches: needs()
        // asks for it again. Sends stay deduplicated: `recent_sends` and
        // `complete` are kept.
        if self.conversations.len() > MAX_CACHED {
            self.conversations.clear();
        }
        if self.heads.len() > MAX_CACHED {
            self.heads.clear();
        }
    }

    /// Forgets cached inbox memberships (the directory changed).
    pub fn invalidate_directory(&mut self) {
        self.inbox_agents.clear();
    }

    /// Forgets everything cached, after a failed commit left the cache ahead
    /// of the database. `max_key` is the store's highest conversation key.
    pub fn reset(&mut self, max_key: ConversationKey) {
        let verify_sends = self.verify_sends;
        *self = Self::new(std::mem::take(&mut self.domain), max_key);
        self.verify_sends = verify_sends;
    }

    /// Applies `cmd` at `now_ms` (ms since the Unix epoch). Needs that were
    /// not supplied make the command fail as if the state did not exist.
    pub fn apply(&mut self, now_ms: i64, cmd: &Command) -> (Reply, Applied) {
        let mut applied = Applied::default();
        let reply = match cmd {
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
            } => self.send(now_ms, by, conversation, client_msg_id, body, &mut applied),
            Command::MarkReceipt {
                by,
                conversation,
                kind,
                up_to,
            } => self.mark(now_ms, by, conversation, *kind, *up_to, &mut applied),
        };
        (reply, applied)
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
        let id = match ConversationId::new(&self.domain, opaque) {
            Ok(id) => id,
            Err(e) => return Reply::Refused(pb::ErrorCode::Internal, e.to_string()),
        };
        let mut members = vec![by.clone()];
        for party in to {
            if !members.iter().any(|m| m.id == party.id) {
                members.push(party.clone());
            }
        }
        if members.len() < 2 {
            return Reply::Refused(
                pb::ErrorCode::BadRequest,
                "a conversation needs at least one other party".into(),
            );
        }
        let key = self.next_key;
        self.next_key += 1;
        let record = ConversationRecord {
            key,
            id: id.clone(),
            subject: subject.to_owned(),
            created_at_ms: now_ms,
            last_seq: 0,
            last_activity_ms: now_ms,
            members: members.clone(),
        };
        applied.writes.push(Write::NewConversation {
            key,
            id: id.clone(),
            subject: subject.to_owned(),
            created_by: by.id,
            created_at_ms: now_ms,
            members: members.iter().map(|m| m.id).collect(),
        });
        let view = conversation_view(&record, &HashMap::new(), by.id);
        let kind = encode_kind(&pb::event::Kind::ConversationAdded(view.clone()));
        self.load_conversation(record);
        self.fan_out(&id, key, EventRef::ConversationAdded, now_ms, kind, applied);
        Reply::Conversation(view)
    }

    fn send(
        &mut self,
        now_ms: i64,
        by: &Party,
        conversation: &ConversationId,
        client_msg_id: &str,
        body: &pb::Body,
        applied: &mut Applied,
    ) -> Reply {
        let Some(state) = self.visible(conversation, by.id) else {
            return not_found(conversation);
        };
        let key = state.record.key;
        let triple = (key, by.id, client_msg_id.to_owned());
        if let Some(stored) = self.recent_sends.get(&triple) {
            return Reply::Sent(pb::Sent {
                conversation: conversation.to_string(),
                seq: stored.seq,
                sent_at_ms: stored.sent_at_ms,
                duplicate: true,
            });
        }
        let Some(state) = self.conversations.get_mut(conversation) else {
            return not_found(conversation);
        };
        let seq = state.record.last_seq + 1;
        state.record.last_seq = seq;
        state.record.last_activity_ms = now_ms;
        let encoded_body: Bytes = body.encode_to_vec().into();
        let message = pb::Message {
            conversation: conversation.to_string(),
            seq,
            sender: by.address.to_string(),
            client_msg_id: triple.2.clone(),
            sent_at_ms: now_ms,
            body: Some(body.clone()),
        };
        applied.writes.push(Write::Message {
            key,
            seq,
            sender: by.id,
            client_msg_id: triple.2.clone(),
            sent_at_ms: now_ms,
            body: encoded_body,
        });
        self.remember_send(
            triple,
            StoredSend {
                seq,
                sent_at_ms: now_ms,
            },
        );
        let kind = encode_kind(&pb::event::Kind::Message(message));
        self.fan_out(
            conversation,
            key,
            EventRef::Message { seq },
            now_ms,
            kind,
            applied,
        );
        Reply::Sent(pb::Sent {
            conversation: conversation.to_string(),
            seq,
            sent_at_ms: now_ms,
            duplicate: false,
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
        let Some(state) = self.visible(conversation, by.id) else {
            return not_found(conversation);
        };
        if up_to > state.record.last_seq {
            return Reply::Refused(
                pb::ErrorCode::BadRequest,
                format!(
                    "up_to_seq {up_to} is beyond the conversation's last seq {}",
                    state.record.last_seq
                ),
            );
        }
        let key = state.record.key;
        let Some(state) = self.conversations.get_mut(conversation) else {
            return not_found(conversation);
        };
        let current = state.watermarks.entry((by.id, kind)).or_insert(0);
        if up_to <= *current {
            return Reply::Done;
        }
        *current = up_to;
        applied.writes.push(Write::Watermark {
            key,
            party: by.id,
            kind,
            up_to,
        });
        let receipt = pb::Receipt {
            conversation: conversation.to_string(),
            party: by.address.to_string(),
            kind: kind.to_pb() as i32,
            up_to_seq: up_to,
        };
        let encoded = encode_kind(&pb::event::Kind::Receipt(receipt));
        let what = EventRef::Receipt {
            party: by.id,
            kind,
            up_to,
        };
        self.fan_out(conversation, key, what, now_ms, encoded, applied);
        Reply::Done
    }

    /// The conversation, if it is loaded and `party` may see it.
    fn visible(&self, conversation: &ConversationId, party: PartyId) -> Option<&ConversationState> {
        let state = self.conversations.get(conversation)?;
        self.recipients(&state.record.members)
            .contains(&party)
            .then_some(state)
    }

    /// Appends one event per recipient and the matching deliveries.
    fn fan_out(
        &mut self,
        conversation: &ConversationId,
        key: ConversationKey,
        what: EventRef,
        now_ms: i64,
        kind: Bytes,
        applied: &mut Applied,
    ) {
        let Some(state) = self.conversations.get(conversation) else {
            return;
        };
        for party in self.recipients(&state.record.members) {
            let head = self.heads.entry(party).or_insert(0);
            *head += 1;
            applied.writes.push(Write::Event {
                party,
                seq: *head,
                key,
                what,
                at_ms: now_ms,
            });
            applied.deliveries.push(Delivery {
                party,
                seq: *head,
                kind: kind.clone(),
            });
        }
    }

    /// Parties that receive a conversation's events: members with sessions,
    /// and the agents of member inboxes; each once, in member order.
    fn recipients(&self, members: &[Party]) -> Vec<PartyId> {
        let mut out = Vec::with_capacity(members.len() + 2);
        for member in members {
            if member.kind.has_session() {
                push_unique(&mut out, member.id);
            } else if let Some(agents) = self.inbox_agents.get(&member.id) {
                for agent in agents {
                    push_unique(&mut out, *agent);
                }
            }
        }
        out
    }

    fn recipient_needs<'a>(&self, members: impl Iterator<Item = &'a Party>, needs: &mut Vec<Need>) {
        let members: Vec<Party> = members.cloned().collect();
        for member in &members {
            if !member.kind.has_session() && !self.inbox_agents.contains_key(&member.id) {
                needs.push(Need::InboxAgents(member.id));
            }
        }
        for party in self.recipients(&members) {
            if !self.heads.contains_key(&party) {
                needs.push(Need::Head(party));
            }
        }
    }

    fn remember_send(&mut self, triple: (ConversationKey, PartyId, String), stored: StoredSend) {
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

/// The conversation as `viewer` sees it.
fn conversation_view(
    record: &ConversationRecord,
    watermarks: &HashMap<(PartyId, ReceiptKind), u64>,
    viewer: PartyId,
) -> pb::Conversation {
    let mark = |kind| watermarks.get(&(viewer, kind)).copied().unwrap_or(0);
    pb::Conversation {
        id: record.id.to_string(),
        subject: record.subject.clone(),
        members: record.members.iter().map(Party::to_pb).collect(),
        last_seq: record.last_seq,
        created_at_ms: record.created_at_ms,
        delivered_up_to: mark(ReceiptKind::Delivered),
        read_up_to: mark(ReceiptKind::Read),
        last_activity_ms: record.last_activity_ms,
    }
}

fn encode_kind(kind: &pb::event::Kind) -> Bytes {
    let mut buf = BytesMut::with_capacity(kind.encoded_len());
    kind.encode(&mut buf);
    buf.freeze()
}

fn not_found(conversation: &ConversationId) -> Reply {
    Reply::Refused(
        pb::ErrorCode::NotFound,
        format!("no conversation {conversation}"),
    )
}

fn push_unique(out: &mut Vec<PartyId>, party: PartyId) {
    if !out.contains(&party) {
        out.push(party);
    }
}

#[cfg(test)]
mod tests;
