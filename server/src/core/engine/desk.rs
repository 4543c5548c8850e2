//! The engine's service desk: each inbox's [`InboxDesk`], fed by what
//! happens in the inbox's conversations and by its agents' requests; what
//! a desk changes is stored (tickets, seats, desk-log entries) in the same
//! batch as the change that caused it, and told to the inbox's agents.
//!
//! A desk-log entry reaches only the agents of the inbox, through the
//! inbox's log: it is fanned out to an audience made of the inbox alone,
//! so by construction no customer, device or other server receives it,
//! and the conversation's message seq stays the customer's.

use std::collections::HashMap;
use std::sync::Arc;

use kanal_proto::address::{Address, ConversationId};
use kanal_proto::pb;
use sha2::{Digest, Sha256};

use super::{Applied, Command, Engine, Need, Reply};
use crate::core::audience::Audience;
use crate::core::desk::{
    AskedSurvey, Changes, DeskConfig, DeskError, Entry, InboxDesk, Seat, TicketState,
};
use crate::model::{
    Actor, Availability, ConversationKey, DeskChange, DeskEntry, EventRef, Owner, Party, PartyId,
    Priority, Refusal, RefusalCode, Status, StoredDesk, StoredSeat, StoredTicket, TicketView,
    Write,
};

use kanal_proto::limits::{MAX_LABELS, MAX_SNOOZE_MS};

/// How many conversations a customer's message may be passed along to (a
/// resolved conversation to the one that continues it, and so on).
pub(super) const MAX_CONTINUATIONS: usize = 8;

/// A change an agent (or the inbox's bot) asks of a conversation's ticket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeskRequest {
    /// Reads the ticket (through the engine: it is what the desk holds now).
    Get,
    /// Gives it to an agent of the inbox, or back to the queue (`None`).
    Assign(Option<Party>),
    /// Gives it to a team of the inbox.
    Transfer(String),
    /// Changes its status (a resolve is stamped with the engine's time).
    Status(Status),
    /// Changes its priority.
    Priority(Priority),
    /// Adds and removes labels (validated by the caller).
    Labels {
        /// To add.
        add: Vec<String>,
        /// To remove.
        remove: Vec<String>,
    },
    /// Adds an internal note (validated by the caller), idempotent by
    /// `client_note_id`.
    Note {
        /// The author's idempotency key.
        client_note_id: String,
        /// What it says.
        text: String,
    },
    /// The bot that owns it hands it to the agents.
    HandOff,
}

/// The engine's hold on one inbox's desk.
#[derive(Debug)]
pub(super) struct DeskState {
    pub(super) desk: InboxDesk,
    /// The inbox.
    inbox: Party,
    config: DeskConfig,
    /// Addresses of the inbox's agents and bot, for the entries that name them.
    names: HashMap<PartyId, Address>,
    /// What the engine keeps of each ticket the desk holds beyond the
    /// desk's own state.
    meta: HashMap<ConversationKey, TicketMeta>,
    /// Loaded, and not yet told the time: its offline agents' grace starts
    /// when it is.
    fresh: bool,
}

#[derive(Debug, Clone)]
struct TicketMeta {
    conversation: ConversationId,
    last_dseq: u64,
    continued_by: Option<ConversationId>,
    continues: Option<ConversationId>,
    /// The opening the last out-of-hours reply named.
    closed_told_until: Option<i64>,
    /// The survey its last resolution asked.
    survey: Option<AskedSurvey>,
    /// The state and last dseq last stored (`None`: not stored yet), so
    /// that a message that changes nothing of the ticket writes nothing,
    /// and an entry that changes only the log (a note, a rating) still
    /// stores where the log ends.
    stored: Option<(String, u64)>,
}

impl TicketMeta {
    fn new(conversation: ConversationId) -> Self {
        Self {
            conversation,
            last_dseq: 0,
            continued_by: None,
            continues: None,
            closed_told_until: None,
            survey: None,
            stored: None,
        }
    }

    fn of(conversation: ConversationId, last_dseq: u64, state: &TicketState) -> Self {
        Self {
            conversation,
            last_dseq,
            continued_by: state.continued_by.as_ref().and_then(|c| c.parse().ok()),
            continues: state.continues.as_ref().and_then(|c| c.parse().ok()),
            closed_told_until: state.closed_told_until,
            survey: state.survey,
            stored: None,
        }
    }
}

/// A desk as the store holds it, with the parties it names.
#[derive(Debug, Clone)]
pub(crate) struct LoadedDesk {
    /// Settings, seats and unresolved tickets.
    pub(crate) stored: StoredDesk,
    /// Each unresolved ticket's state, in the order of `stored.tickets`.
    pub(crate) states: Vec<TicketState>,
    /// Its configuration.
    pub(crate) config: DeskConfig,
    /// The inbox.
    pub(crate) inbox: Party,
    /// Its agents (in the order they were added) and its bot.
    pub(crate) parties: Vec<Party>,
    /// The inbox's agents' ids, in order.
    pub(crate) agents: Vec<PartyId>,
}

/// A stored ticket with its state.
#[derive(Debug, Clone)]
pub(crate) struct LoadedTicket {
    /// As stored.
    pub(crate) stored: StoredTicket,
    /// Its state.
    pub(crate) state: TicketState,
}

impl DeskState {
    /// Drops resolved tickets from memory (they are stored).
    pub(super) fn forget_resolved(&mut self) {
        self.desk.forget_resolved();
        let desk = &self.desk;
        self.meta.retain(|key, _| desk.ticket(*key).is_some());
    }
}

impl Engine {
    /// The inbox whose desk a conversation of `members` is on: its first
    /// member inbox of this server.
    pub(super) fn desk_inbox(&self, members: &[Party]) -> Option<PartyId> {
        Audience::inboxes(&self.domain, members).next()
    }

    /// What the desk needs before a command on a conversation of
    /// `members` (conversation `key`, if it exists) can be applied.
    pub(super) fn desk_needs(
        &self,
        members: &[Party],
        key: Option<ConversationKey>,
        needs: &mut Vec<Need>,
    ) {
        let Some(inbox) = self.desk_inbox(members) else {
            return;
        };
        if self.no_desk.contains(&inbox) {
            return;
        }
        let Some(state) = self.desks.get(&inbox) else {
            needs.push(Need::Desk(inbox));
            return;
        };
        let Some(key) = key else {
            return;
        };
        if state.desk.ticket(key).is_none() && !self.tickets_checked.contains(&key) {
            needs.push(Need::Ticket(key));
            return;
        }
        // A resolved ticket may move the message to its continuation.
        if let Some(ticket) = state.desk.ticket(key)
            && ticket.status.is_resolved()
        {
            match state.meta.get(&key).and_then(|m| m.continued_by.as_ref()) {
                Some(next) if !self.conversations.contains_key(next) => {
                    needs.push(Need::Conversation(next.clone()));
                }
                Some(next) => {
                    if let Some(next_state) = self.conversations.get(next) {
                        let members = next_state.record.members.clone();
                        self.desk_needs(&members, Some(next_state.record.key), needs);
                    }
                }
                None if self.ids_low() => needs.push(Need::Ids),
                None => {}
            }
        }
    }

    /// What a command of the desk's own needs.
    pub(super) fn desk_command_needs(&self, cmd: &Command, needs: &mut Vec<Need>) {
        match cmd {
            Command::SetAvailability { inbox, .. }
            | Command::SetCapacity { inbox, .. }
            | Command::ConfigureDesk { inbox, .. } => {
                if !self.desks.contains_key(&inbox.id) && !self.no_desk.contains(&inbox.id) {
                    needs.push(Need::Desk(inbox.id));
                    return;
                }
                self.desk_audience_needs(inbox.id, needs);
            }
            Command::DeskTick => {
                for (&inbox, _) in self
                    .desks
                    .iter()
                    .filter(|(_, d)| d.desk.poll_timeout().is_some())
                {
                    self.desk_audience_needs(inbox, needs);
                }
            }
            _ => {}
        }
    }

    /// The state a desk-log entry's fan-out needs: the inbox's agents and
    /// where its log and theirs end.
    fn desk_audience_needs(&self, inbox: PartyId, needs: &mut Vec<Need>) {
        let Some(agents) = self.inbox_agents.get(&inbox) else {
            needs.push(Need::InboxAgents(inbox));
            return;
        };
        if !self.inbox_heads.contains_key(&inbox) {
            needs.push(Need::InboxHead(inbox));
        }
        for agent in agents {
            if !self.heads.contains_key(agent) {
                needs.push(Need::Head(*agent));
            }
        }
    }

    /// Supplies a desk as stored (`None`: the inbox does not exist). An
    /// inbox whose operator never set up its desk has none: its agents
    /// all see its conversations, and nothing more happens.
    pub(crate) fn load_desk(&mut self, inbox: PartyId, loaded: Option<LoadedDesk>) {
        let Some(loaded) = loaded else {
            return;
        };
        if loaded.stored.settings.is_none() {
            self.no_desk.insert(inbox);
            return;
        }
        let mut desk = InboxDesk::new(inbox, loaded.config.settings.clone());
        desk.set_sla(
            0,
            loaded.config.hours.clone(),
            loaded.config.sla.clone(),
            &mut Vec::new(),
        );
        for (team, members) in &loaded.config.teams {
            desk.load_team(team.clone(), members.clone());
        }
        let mut meta = HashMap::new();
        for (stored, state) in loaded.stored.tickets.iter().zip(loaded.states) {
            let Ok(conversation) = state.conversation.parse() else {
                continue;
            };
            meta.insert(
                stored.key,
                TicketMeta::of(conversation, stored.last_dseq, &state),
            );
            desk.load_ticket(state.ticket, state.clock);
        }
        for agent in &loaded.agents {
            let mut seat = Seat::new(*agent);
            if let Some(stored) = loaded.stored.seats.iter().find(|s| s.agent == *agent) {
                seat.availability = stored.availability;
                seat.capacity = stored.capacity;
                seat.last_assigned_ms = stored.last_assigned_ms;
            }
            desk.load_seat(seat);
        }
        let names = loaded
            .parties
            .iter()
            .map(|p| (p.id, p.address.clone()))
            .chain(std::iter::once((
                loaded.inbox.id,
                loaded.inbox.address.clone(),
            )))
            .collect();
        self.desks.insert(
            inbox,
            DeskState {
                desk,
                inbox: loaded.inbox,
                config: loaded.config,
                names,
                meta,
                fresh: true,
            },
        );
    }

    /// Tells desks loaded since the last command the time: the offline
    /// grace of the agents offline in them counts from `now_ms`.
    pub(super) fn start_loaded_desks(&mut self, now_ms: i64) {
        for state in self.desks.values_mut().filter(|s| s.fresh) {
            state.fresh = false;
            state.desk.count_offline_from(now_ms);
        }
    }

    /// Supplies a ticket as stored (`None`: the conversation has none yet).
    pub(crate) fn load_desk_ticket(&mut self, key: ConversationKey, loaded: Option<LoadedTicket>) {
        self.tickets_checked.insert(key);
        let Some(loaded) = loaded else {
            return;
        };
        let Some(state) = self.desks.get_mut(&loaded.stored.inbox) else {
            return;
        };
        if state.desk.ticket(key).is_some() {
            return;
        }
        if let Ok(conversation) = loaded.state.conversation.parse() {
            state.meta.insert(
                key,
                TicketMeta::of(conversation, loaded.stored.last_dseq, &loaded.state),
            );
            state
                .desk
                .load_ticket(loaded.state.ticket, loaded.state.clock);
        }
    }

    /// The desks' earliest timer.
    pub(super) fn desk_timeout(&self) -> Option<i64> {
        let due = self
            .desks
            .values()
            .filter_map(|d| d.desk.poll_timeout())
            .min()?;
        Some(due.max(self.desk_retry_at))
    }

    /// A new conversation `key` of `members`: its desk opens a ticket.
    pub(super) fn desk_opened(
        &mut self,
        now_ms: i64,
        key: ConversationKey,
        id: &ConversationId,
        members: &[Party],
        continues: Option<ConversationKey>,
        applied: &mut Applied,
    ) {
        let Some(inbox) = self.desk_inbox(members) else {
            return;
        };
        let Some(state) = self.desks.get_mut(&inbox) else {
            return;
        };
        let mut meta = TicketMeta::new(id.clone());
        let mut entries = Vec::new();
        if let Some(old_id) = continues.and_then(|old| state.meta.get(&old)) {
            meta.continues = Some(old_id.conversation.clone());
            entries.push((key, None, Owned::Continues(old_id.conversation.clone())));
        }
        state.meta.insert(key, meta);
        let mut changes = Changes::new();
        state.desk.open(now_ms, key, &mut changes);
        if let Some(old) = continues {
            state.desk.set_continues(key, old);
        }
        self.desk_commit(inbox, now_ms, entries, key, changes, applied);
    }

    /// `by` wrote in conversation `key` of `inbox`'s desk: the desk hears of it
    /// before the message is stored. `Some(next)`: the message belongs in
    /// conversation `next` instead (the ticket was resolved longer ago than
    /// the reopen window), created here if it has to be.
    #[expect(clippy::too_many_arguments, reason = "a message's whole context")]
    pub(super) fn desk_heard(
        &mut self,
        now_ms: i64,
        conversation: &ConversationId,
        key: ConversationKey,
        inbox: PartyId,
        by: &Party,
        desk_side: bool,
        client_msg_id: &str,
        answer: bool,
        applied: &mut Applied,
    ) -> Result<Option<ConversationId>, Box<Reply>> {
        let Some(state) = self.desks.get_mut(&inbox) else {
            return Ok(None);
        };
        // An answer (to a survey, or to a question asked before the
        // resolve) is no new request: it stays in a resolved conversation.
        if answer
            && !desk_side
            && state
                .desk
                .ticket(key)
                .is_some_and(|t| t.status.is_resolved())
        {
            return Ok(None);
        }
        let mut changes = Changes::new();
        if desk_side
            || state
                .desk
                .ticket(key)
                .is_some_and(|t| t.owner == Owner::Bot(by.id))
        {
            state.desk.desk_wrote(now_ms, key, by.id, &mut changes);
            self.desk_commit(inbox, now_ms, Vec::new(), key, changes, applied);
            return Ok(None);
        }
        if let Some(next) = state.meta.get(&key).and_then(|m| m.continued_by.clone())
            && state
                .desk
                .ticket(key)
                .is_some_and(|t| t.status.is_resolved())
        {
            return Ok(Some(next));
        }
        if state.desk.ticket(key).is_none() {
            // A conversation from before the desk: its ticket starts now.
            state
                .meta
                .insert(key, TicketMeta::new(conversation.clone()));
        }
        match state.desk.customer_wrote(now_ms, key, &mut changes) {
            crate::core::desk::Arrival::Here => {
                self.tell_if_closed(inbox, now_ms, key, conversation);
                self.desk_commit(inbox, now_ms, Vec::new(), key, changes, applied);
                Ok(None)
            }
            crate::core::desk::Arrival::Continuation => {
                let next = self.continue_conversation(
                    now_ms,
                    conversation,
                    key,
                    by,
                    client_msg_id,
                    applied,
                )?;
                if let Some(state) = self.desks.get_mut(&inbox)
                    && let Some(meta) = state.meta.get_mut(&key)
                {
                    meta.continued_by = Some(next.clone());
                }
                // The old ticket records where its conversation went on.
                self.desk_commit(inbox, now_ms, Vec::new(), key, Changes::new(), applied);
                Ok(Some(next))
            }
        }
    }

    /// Creates the conversation that continues resolved conversation
    /// `key`, with its members and subject. Its id is derived from the
    /// message that starts it, so the same message never starts two.
    fn continue_conversation(
        &mut self,
        now_ms: i64,
        conversation: &ConversationId,
        key: ConversationKey,
        by: &Party,
        client_msg_id: &str,
        applied: &mut Applied,
    ) -> Result<ConversationId, Box<Reply>> {
        let Some(old) = self.conversations.get(conversation) else {
            return Err(Box::new(Reply::Refused(Refusal::internal(
                "the conversation is not loaded",
            ))));
        };
        let (members, subject, old_id) = (
            old.record.members.clone(),
            old.record.subject.clone(),
            old.record.id.clone(),
        );
        let mut hash = Sha256::new();
        hash.update(old_id.as_str().as_bytes());
        hash.update(by.id.to_be_bytes());
        hash.update(client_msg_id.as_bytes());
        let opaque = opaque_of(&hash.finalize());
        let others: Vec<Party> = members.iter().filter(|m| m.id != by.id).cloned().collect();
        match self.create_continuing(now_ms, by, &others, &subject, &opaque, Some(key), applied) {
            Reply::Conversation(view) => Ok(view.id),
            other => Err(Box::new(other)),
        }
    }

    /// Applies a desk request of `by` on `conversation`.
    pub(super) fn desk_request(
        &mut self,
        now_ms: i64,
        by: &Party,
        conversation: &ConversationId,
        request: &DeskRequest,
        applied: &mut Applied,
    ) -> Reply {
        let Some((state, _)) = self.visible(conversation, by.id) else {
            return super::not_found(conversation);
        };
        let key = state.record.key;
        let members = state.record.members.clone();
        let Some(inbox) = self.desk_inbox(&members) else {
            return invalid("the conversation is on no inbox's desk");
        };
        if self.no_desk.contains(&inbox) {
            return invalid("the conversation's inbox has no desk set up");
        }
        let Some(desk) = self.desks.get(&inbox) else {
            return Reply::Refused(Refusal::internal("the desk could not be read"));
        };
        let is_agent = self
            .inbox_agents
            .get(&inbox)
            .is_some_and(|agents| agents.contains(&by.id));
        let is_bot = desk.config.settings.first_responder == Some(by.id);
        if !is_agent && !is_bot {
            return Reply::Refused(Refusal::new(
                RefusalCode::NotAnAgent,
                format!("{} does not answer for {}", by.address, desk.inbox.address),
            ));
        }
        if desk.desk.ticket(key).is_none() {
            // A conversation from before the desk: its ticket starts now.
            self.desk_opened(now_ms, key, conversation, &members, None, applied);
        }
        let actor = Actor::Party(by.id);
        let Some(state) = self.desks.get_mut(&inbox) else {
            return Reply::Refused(Refusal::internal("the desk could not be read"));
        };
        let mut changes = Changes::new();
        let mut entries = Vec::new();
        let result = match request {
            DeskRequest::Get => Ok(()),
            DeskRequest::Assign(agent) => {
                let owner = agent.as_ref().map_or(Owner::Nobody, |a| Owner::Agent(a.id));
                if let Some(agent) = agent {
                    state.names.insert(agent.id, agent.address.clone());
                }
                state.desk.assign(now_ms, key, owner, actor, &mut changes)
            }
            DeskRequest::Transfer(team) => {
                let result = state.desk.transfer_to_team(now_ms, key, team, &mut changes);
                if result.is_ok() {
                    entries.push((key, Some(by.id), Owned::Team(team.clone())));
                }
                result
            }
            DeskRequest::Status(status) => {
                let status = match *status {
                    Status::Resolved { .. } => Status::Resolved { at_ms: now_ms },
                    Status::Snoozed { until_ms } if until_ms > now_ms + MAX_SNOOZE_MS => {
                        return Reply::Refused(Refusal::new(
                            RefusalCode::BadRequest,
                            "a snooze ends at most a year from now",
                        ));
                    }
                    other => other,
                };
                state
                    .desk
                    .set_status(now_ms, key, status, actor, &mut changes)
            }
            DeskRequest::Priority(priority) => {
                state.desk.set_priority(key, *priority, actor, &mut changes)
            }
            DeskRequest::Labels { add, remove } => {
                let Some(ticket) = state.desk.ticket(key) else {
                    return invalid("the conversation has no ticket");
                };
                let mut labels = ticket.labels.clone();
                labels.retain(|l| !remove.contains(l));
                for label in add {
                    if !labels.contains(label) {
                        labels.push(label.clone());
                    }
                }
                labels.sort();
                if labels.len() > MAX_LABELS {
                    return Reply::Refused(Refusal::new(
                        RefusalCode::TooLarge,
                        format!("a ticket has at most {MAX_LABELS} labels"),
                    ));
                }
                if labels != ticket.labels {
                    state.desk.set_labels(key, labels.clone());
                    entries.push((key, Some(by.id), Owned::Labels(labels)));
                }
                Ok(())
            }
            DeskRequest::Note {
                client_note_id,
                text,
            } => {
                return self.note(now_ms, inbox, key, by, client_note_id, text, applied);
            }
            DeskRequest::HandOff => {
                if !is_bot {
                    return invalid("only the inbox's bot hands conversations off");
                }
                state
                    .desk
                    .hand_off(now_ms, key, by.id, &mut changes)
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            return desk_refusal(&e);
        }
        self.desk_commit(inbox, now_ms, entries, key, changes, applied);
        self.ticket_view(inbox, key).map_or_else(
            || invalid("the conversation has no ticket"),
            |t| Reply::Ticket(Box::new(t)),
        )
    }

    /// Adds a note to conversation `key`'s desk log, once per
    /// `client_note_id` of its author.
    #[expect(clippy::too_many_arguments, reason = "one note's whole context")]
    fn note(
        &mut self,
        now_ms: i64,
        inbox: PartyId,
        key: ConversationKey,
        by: &Party,
        client_note_id: &str,
        text: &str,
        applied: &mut Applied,
    ) -> Reply {
        let conversation = match self.desks.get(&inbox).and_then(|d| d.meta.get(&key)) {
            Some(meta) => meta.conversation.clone(),
            None => return invalid("the conversation has no ticket"),
        };
        let triple = (key, by.id, client_note_id.to_owned());
        if let Some(&(dseq, at_ms)) = self.notes.get(&triple) {
            return Reply::NoteAdded {
                conversation,
                dseq,
                at_ms,
                duplicate: true,
            };
        }
        let entries = vec![(
            key,
            Some(by.id),
            Owned::Note(text.to_owned(), client_note_id.to_owned()),
        )];
        let dseq = self.desk_commit(inbox, now_ms, entries, key, Changes::new(), applied);
        self.notes.insert(triple, (dseq, now_ms));
        Reply::NoteAdded {
            conversation,
            dseq,
            at_ms: now_ms,
            duplicate: false,
        }
    }

    /// Supplies the result of a note lookup.
    pub(crate) fn load_prior_note(
        &mut self,
        key: ConversationKey,
        author: PartyId,
        client_note_id: String,
        prior: Option<(u64, i64)>,
    ) {
        if let Some(prior) = prior {
            self.notes
                .insert((key, author, client_note_id.clone()), prior);
        }
        self.notes_checked.insert((key, author, client_note_id));
    }

    /// `inbox`'s desk, with `agent` seated at it if it answers for the
    /// inbox (an agent added since the desk was loaded gets its seat
    /// here); `None` if the inbox has no desk.
    fn seated(&mut self, agent: &Party, inbox: &Party) -> Option<&mut DeskState> {
        let answers = self
            .inbox_agents
            .get(&inbox.id)
            .is_some_and(|a| a.contains(&agent.id));
        let state = self.desks.get_mut(&inbox.id)?;
        state.names.insert(agent.id, agent.address.clone());
        if state.desk.seat(agent.id).is_none() && answers {
            state.desk.add_agent(agent.id);
        }
        Some(state)
    }

    /// An agent's availability at one inbox.
    pub(super) fn set_availability(
        &mut self,
        now_ms: i64,
        agent: &Party,
        inbox: &Party,
        availability: Availability,
        applied: &mut Applied,
    ) -> Reply {
        let Some(state) = self.seated(agent, inbox) else {
            return super::not_found_party(&inbox.address);
        };
        let was = state.desk.seat(agent.id).map(|s| s.availability);
        let mut changes = Changes::new();
        if let Err(e) = state
            .desk
            .set_availability(now_ms, agent.id, availability, &mut changes)
        {
            return desk_refusal(&e);
        }
        if was != Some(availability) {
            self.write_seat(inbox.id, agent.id, applied);
        }
        self.desk_commit_all(inbox.id, now_ms, changes, applied);
        Reply::Done
    }

    /// Sets `agent`'s own capacity at `inbox`'s desk (`None`: the
    /// inbox's); routing runs again, so raising it drains the queue.
    pub(super) fn set_capacity(
        &mut self,
        now_ms: i64,
        agent: &Party,
        inbox: &Party,
        capacity: Option<u32>,
        applied: &mut Applied,
    ) -> Reply {
        let Some(state) = self.seated(agent, inbox) else {
            return super::not_found_party(&inbox.address);
        };
        let mut changes = Changes::new();
        if let Err(e) = state
            .desk
            .set_capacity(now_ms, agent.id, capacity, &mut changes)
        {
            return desk_refusal(&e);
        }
        self.write_seat(inbox.id, agent.id, applied);
        self.desk_commit_all(inbox.id, now_ms, changes, applied);
        Reply::Done
    }

    /// Sets up (or changes) `inbox`'s desk.
    pub(super) fn configure_desk(
        &mut self,
        now_ms: i64,
        inbox: &Party,
        config: &DeskConfig,
        applied: &mut Applied,
    ) -> Reply {
        if !self.desks.contains_key(&inbox.id) {
            self.no_desk.remove(&inbox.id);
            let agents = self
                .inbox_agents
                .get(&inbox.id)
                .cloned()
                .unwrap_or_default();
            let mut names: HashMap<PartyId, Address> = HashMap::new();
            names.insert(inbox.id, inbox.address.clone());
            let mut state = DeskState {
                desk: InboxDesk::new(inbox.id, config.settings.clone()),
                inbox: inbox.clone(),
                config: config.clone(),
                names,
                meta: HashMap::new(),
                fresh: false,
            };
            for agent in agents {
                state.desk.add_agent(agent);
            }
            self.desks.insert(inbox.id, state);
        }
        let Some(state) = self.desks.get_mut(&inbox.id) else {
            return Reply::Refused(Refusal::internal("the desk could not be read"));
        };
        let mut changes = Changes::new();
        state.desk.set_teams(
            now_ms,
            config.teams.iter().map(|(t, m)| (t.clone(), m.clone())),
            &mut changes,
        );
        state
            .desk
            .set_settings(now_ms, config.settings.clone(), &mut changes);
        state.desk.set_sla(
            now_ms,
            config.hours.clone(),
            config.sla.clone(),
            &mut changes,
        );
        state.config = config.clone();
        applied.writes.push(Write::DeskSettings {
            inbox: inbox.id,
            settings: config.to_json(),
        });
        self.desk_commit_all(inbox.id, now_ms, changes, applied);
        Reply::Done
    }

    /// Names a party the desk may mention (its bot, a team's member).
    pub(super) fn desk_knows(&mut self, inbox: PartyId, party: &Party) {
        if let Some(state) = self.desks.get_mut(&inbox) {
            state.names.insert(party.id, party.address.clone());
        }
    }

    /// Handles every desk timer due at `now_ms`.
    pub(super) fn desk_tick(&mut self, now_ms: i64, applied: &mut Applied) -> Reply {
        let due: Vec<PartyId> = self
            .desks
            .iter()
            .filter(|(_, d)| d.desk.poll_timeout().is_some_and(|at| at <= now_ms))
            .map(|(&inbox, _)| inbox)
            .collect();
        for inbox in due {
            let Some(state) = self.desks.get_mut(&inbox) else {
                continue;
            };
            let mut changes = Changes::new();
            state.desk.handle_timeout(now_ms, &mut changes);
            self.desk_commit_all(inbox, now_ms, changes, applied);
        }
        Reply::Done
    }

    /// An agent now answers for an inbox: its desk gives it a seat.
    pub(super) fn desk_agent_added(&mut self, inbox: PartyId, agent: &Party) {
        if let Some(state) = self.desks.get_mut(&inbox) {
            state.names.insert(agent.id, agent.address.clone());
            if state.desk.seat(agent.id).is_none() {
                state.desk.add_agent(agent.id);
            }
        }
    }

    /// [`Engine::desk_commit`] for changes with no one ticket in focus.
    fn desk_commit_all(
        &mut self,
        inbox: PartyId,
        now_ms: i64,
        changes: Changes,
        applied: &mut Applied,
    ) {
        let Some(&(first, _)) = changes.first() else {
            return;
        };
        self.desk_commit(inbox, now_ms, Vec::new(), first, changes, applied);
    }

    /// Stores and tells what the desk of `inbox` changed: an entry for each
    /// change (after `entries`, the request's own), the tickets it touched
    /// (`key` among them) and the seats of agents it gave tickets to.
    /// Returns the dseq of `key`'s last entry.
    fn desk_commit(
        &mut self,
        inbox: PartyId,
        now_ms: i64,
        mut entries: Vec<(ConversationKey, Option<PartyId>, Owned)>,
        key: ConversationKey,
        changes: Changes,
        applied: &mut Applied,
    ) -> u64 {
        let Some(state) = self.desks.get(&inbox) else {
            return 0;
        };
        let mut touched = vec![key];
        let mut seats = Vec::new();
        for (ticket, change) in changes {
            let actor = match &change {
                DeskChange::Assigned { by, .. }
                | DeskChange::Status { by, .. }
                | DeskChange::Priority { by, .. }
                | DeskChange::Sla { by, .. } => match by {
                    Actor::Party(id) => Some(*id),
                    Actor::Desk => None,
                },
                DeskChange::Queued { .. } => None,
            };
            if let DeskChange::Assigned {
                owner: Owner::Agent(agent),
                ..
            } = change
                && !seats.contains(&agent)
            {
                seats.push(agent);
            }
            if !touched.contains(&ticket) {
                touched.push(ticket);
            }
            entries.push((ticket, actor, Owned::Change(change)));
        }
        if entries.is_empty() {
            for ticket in touched {
                self.write_ticket(inbox, ticket, now_ms, applied);
            }
            for agent in seats {
                self.write_seat(inbox, agent, applied);
            }
            return 0;
        }
        let audience = Arc::new(Audience::of(
            &self.domain,
            std::slice::from_ref(&state.inbox),
            |i| self.inbox_agents.get(&i).map_or(&[], Vec::as_slice),
        ));
        let mut last = 0;
        let mut resolved = Vec::new();
        for (ticket, actor, entry) in entries {
            let Some(state) = self.desks.get_mut(&inbox) else {
                break;
            };
            let Some(meta) = state.meta.get_mut(&ticket) else {
                continue;
            };
            meta.last_dseq += 1;
            let dseq = meta.last_dseq;
            let conversation = meta.conversation.clone();
            let names = &state.names;
            let payload = crate::core::desk::wire::encode(
                &conversation,
                dseq,
                now_ms,
                match &entry {
                    // A customer is no name the desk keeps.
                    Owned::Rating(_, customer) => Some(customer),
                    _ => actor.and_then(|id| names.get(&id)),
                },
                entry.as_entry(),
                |id| names.get(&id).cloned(),
            );
            let client_note_id = match &entry {
                Owned::Note(_, id) => id.clone(),
                _ => String::new(),
            };
            if let Owned::Change(DeskChange::Status { to, .. }) = &entry
                && to.is_resolved()
            {
                resolved.push((ticket, conversation.clone(), dseq, actor));
            }
            applied.writes.push(Write::DeskEntry(DeskEntry {
                key: ticket,
                dseq,
                inbox,
                at_ms: now_ms,
                actor,
                client_note_id,
                payload: payload.clone(),
            }));
            let event = crate::model::Event::Desk(crate::model::DeskRecord {
                conversation,
                dseq,
                payload,
            });
            self.fan_out(
                ticket,
                &audience,
                EventRef::Desk { dseq },
                now_ms,
                event,
                applied,
            );
            if ticket == key {
                last = dseq;
            }
        }
        for ticket in touched {
            self.write_ticket(inbox, ticket, now_ms, applied);
        }
        for agent in seats {
            self.write_seat(inbox, agent, applied);
        }
        for (ticket, conversation, dseq, by) in resolved {
            self.ask_survey(inbox, now_ms, ticket, &conversation, (dseq, by), applied);
        }
        last
    }

    /// Queues the inbox's out-of-hours reply to a customer who wrote while
    /// it is closed, unless this conversation was told so for this closed
    /// period already; the send appends it after the customer's message.
    fn tell_if_closed(
        &mut self,
        inbox: PartyId,
        now_ms: i64,
        key: ConversationKey,
        conversation: &ConversationId,
    ) {
        let Some(state) = self.desks.get_mut(&inbox) else {
            return;
        };
        let Some(words) = state.config.settings.out_of_hours_reply.clone() else {
            return;
        };
        let Some(opens) = state.desk.closed_until(now_ms) else {
            return;
        };
        let Some(meta) = state.meta.get_mut(&key) else {
            return;
        };
        if meta.closed_told_until.is_some_and(|until| now_ms < until) {
            return;
        }
        meta.closed_told_until = Some(opens);
        let text = crate::core::desk::closed_reply(&words, state.desk.hours(), opens);
        let asker = state.inbox.clone();
        self.desk_replies
            .push((conversation.clone(), asker, crate::model::Body::Text(text)));
    }

    /// Sends the inbox's satisfaction survey, if it has one, into
    /// `conversation` (ticket `ticket`), resolved by desk entry `dseq` of
    /// `resolved_by`: once per resolution (its `client_msg_id` is the
    /// entry's), from the inbox itself, and as a thumbs question when a
    /// device is the customer. The ticket remembers it, so that the
    /// answer becomes the resolution's rating.
    fn ask_survey(
        &mut self,
        inbox: PartyId,
        now_ms: i64,
        ticket: ConversationKey,
        conversation: &ConversationId,
        (dseq, resolved_by): (u64, Option<PartyId>),
        applied: &mut Applied,
    ) {
        let Some(state) = self.desks.get(&inbox) else {
            return;
        };
        let Some(csat) = state.config.settings.csat.clone() else {
            return;
        };
        let asker = state.inbox.clone();
        let Some((conv, audience)) = self.loaded(conversation) else {
            tracing::warn!(%conversation, "a resolved conversation is not loaded: no survey");
            return;
        };
        let key = conv.record.key;
        let device = conv
            .record
            .members
            .iter()
            .any(|m| m.kind == crate::model::PartyKind::Device);
        let scale = if device {
            crate::model::CsatScale::Thumbs
        } else {
            csat.scale
        };
        let body = crate::core::desk::survey(scale, &csat.text);
        let cmid = format!("csat-{dseq}");
        let Some(sent) = self.append(
            now_ms,
            key,
            conversation,
            &audience,
            &asker,
            &cmid,
            &body,
            applied,
        ) else {
            tracing::warn!(%conversation, "the survey could not be sent");
            return;
        };
        if let Some(meta) = self
            .desks
            .get_mut(&inbox)
            .and_then(|state| state.meta.get_mut(&ticket))
        {
            meta.survey = Some(AskedSurvey {
                seq: sent.seq,
                resolution_dseq: dseq,
                resolved_by,
                scale,
            });
        }
        self.write_ticket(inbox, ticket, now_ms, applied);
    }

    /// `by`, the customer of conversation `key` on `inbox`'s desk, sent
    /// `answer`: an answer to the survey its last resolution asked is
    /// that resolution's rating, an entry of the desk log (the reports
    /// read it). A later answer to the same survey is a newer rating.
    pub(super) fn desk_rated(
        &mut self,
        inbox: PartyId,
        now_ms: i64,
        key: ConversationKey,
        by: &Party,
        answer: &pb::Answer,
        applied: &mut Applied,
    ) {
        let Some(state) = self.desks.get(&inbox) else {
            return;
        };
        let Some(survey) = state.meta.get(&key).and_then(|m| m.survey) else {
            return;
        };
        let Some(pb::answer::Value::Rating(rating)) = &answer.value else {
            return;
        };
        if survey.seq != answer.question_seq {
            return;
        }
        let rating = pb::DeskRating {
            question_seq: survey.seq,
            resolution_dseq: survey.resolution_dseq,
            resolved_by: survey
                .resolved_by
                .and_then(|id| state.names.get(&id))
                .map(ToString::to_string)
                .unwrap_or_default(),
            scale: crate::core::desk::wire::rating_scale(survey.scale) as i32,
            score: rating.score,
            comment: rating.comment.clone(),
        };
        let entries = vec![(key, Some(by.id), Owned::Rating(rating, by.address.clone()))];
        self.desk_commit(inbox, now_ms, entries, key, Changes::new(), applied);
    }

    /// Stores ticket `key` of `inbox`'s desk as it stands, unless it is
    /// stored so already.
    fn write_ticket(
        &mut self,
        inbox: PartyId,
        key: ConversationKey,
        now_ms: i64,
        applied: &mut Applied,
    ) {
        let Some(state) = self.desks.get_mut(&inbox) else {
            return;
        };
        let (Some(ticket), Some(meta)) = (state.desk.ticket(key), state.meta.get(&key)) else {
            return;
        };
        let full = TicketState {
            conversation: meta.conversation.to_string(),
            ticket: ticket.clone(),
            clock: state.desk.clock(key).copied().unwrap_or_default(),
            continued_by: meta.continued_by.as_ref().map(ToString::to_string),
            continues: meta.continues.as_ref().map(ToString::to_string),
            sla_due: state.desk.sla_due(key),
            closed_told_until: meta.closed_told_until,
            survey: meta.survey,
        };
        let json = full.to_json();
        if meta
            .stored
            .as_ref()
            .is_some_and(|(stored, dseq)| *stored == json && *dseq == meta.last_dseq)
        {
            return;
        }
        let row = StoredTicket {
            key,
            inbox,
            status: ticket.status,
            owner: ticket.owner,
            priority: ticket.priority,
            last_dseq: meta.last_dseq,
            updated_at_ms: now_ms,
            state: json.clone(),
        };
        if let Some(meta) = state.meta.get_mut(&key) {
            meta.stored = Some((json, meta.last_dseq));
        }
        applied.writes.push(Write::Ticket(row));
    }

    /// Stores `agent`'s seat at `inbox`'s desk as it stands.
    fn write_seat(&self, inbox: PartyId, agent: PartyId, applied: &mut Applied) {
        let Some(seat) = self.desks.get(&inbox).and_then(|d| d.desk.seat(agent)) else {
            return;
        };
        applied.writes.push(Write::Seat(StoredSeat {
            inbox,
            agent,
            availability: seat.availability,
            capacity: seat.capacity,
            last_assigned_ms: seat.last_assigned_ms,
        }));
    }

    /// Ticket `key` of `inbox`'s desk as an agent sees it.
    fn ticket_view(&self, inbox: PartyId, key: ConversationKey) -> Option<TicketView> {
        let state = self.desks.get(&inbox)?;
        let ticket = state.desk.ticket(key)?;
        let meta = state.meta.get(&key)?;
        let (owner, owner_is_bot) = match ticket.owner {
            Owner::Nobody => (None, false),
            Owner::Agent(id) => (state.names.get(&id).cloned(), false),
            Owner::Bot(id) => (state.names.get(&id).cloned(), true),
        };
        let continues = meta.continues.clone();
        Some(TicketView {
            conversation: meta.conversation.clone(),
            inbox: state.inbox.address.clone(),
            status: ticket.status,
            owner,
            owner_is_bot,
            team: ticket.team.clone(),
            priority: ticket.priority,
            labels: ticket.labels.clone(),
            waiting_since_ms: ticket.waiting_since_ms,
            queued_at_ms: ticket.queued_at_ms,
            continues,
            last_dseq: meta.last_dseq,
            sla_due: state.desk.sla_due(key),
        })
    }
}

/// An entry the engine makes, before it is encoded.
#[derive(Debug, Clone)]
enum Owned {
    Change(DeskChange),
    /// Text and the author's client_note_id.
    Note(String, String),
    Labels(Vec<String>),
    Team(String),
    Continues(ConversationId),
    /// The rating and the customer who gave it.
    Rating(pb::DeskRating, Address),
}

impl Owned {
    fn as_entry(&self) -> Entry<'_> {
        match self {
            Owned::Change(change) => Entry::Change(change),
            Owned::Note(text, _) => Entry::Note(text),
            Owned::Labels(labels) => Entry::Labels(labels),
            Owned::Team(team) => Entry::Team(team),
            Owned::Continues(old) => Entry::Continues(old),
            Owned::Rating(rating, _) => Entry::Rating(rating),
        }
    }
}

fn invalid(message: &str) -> Reply {
    Reply::Refused(Refusal::new(RefusalCode::InvalidState, message))
}

fn desk_refusal(error: &DeskError) -> Reply {
    Reply::Refused(Refusal::new(RefusalCode::InvalidState, error.to_string()))
}

/// A conversation id's opaque part from a digest: 20 characters of
/// lower-case base 32.
fn opaque_of(digest: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bits: u64 = 0;
    let mut have = 0;
    let mut out = String::with_capacity(20);
    for &byte in digest {
        bits = (bits << 8) | u64::from(byte);
        have += 8;
        while have >= 5 && out.len() < 20 {
            have -= 5;
            out.push(char::from(ALPHABET[((bits >> have) & 31) as usize]));
        }
        if out.len() == 20 {
            break;
        }
    }
    out
}
