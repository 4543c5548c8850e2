//! One inbox's desk: its tickets, its agents' seats, its waiting queue and
//! its timers, as a sans-IO state machine.
//!
//! Every operation takes `now` and appends the changes it made to `out`,
//! in order, each with its ticket's key; the engine stores the tickets
//! those changes name and tells the agents. Routing re-runs after every
//! change that can free or add room (an agent comes online, a ticket is
//! resolved, snoozed or transferred, a capacity is raised), so a waiting
//! ticket never stays waiting while an agent has room for it.

use std::collections::{BTreeSet, HashMap};

use super::hours::BusinessHours;
use super::queue::Queue;
use super::seats::{Seat, Seats};
use super::sla::{SlaClock, SlaPolicy};
use crate::model::{
    Actor, Availability, ConversationKey, DeskChange, DeskSettings, Owner, PartyId, Priority,
    RequeueReason, Routing, SlaEvent, Status, Ticket,
};

/// Changes made, each with the key of the ticket it changed.
pub(crate) type Changes = Vec<(ConversationKey, DeskChange)>;

/// Where a customer's message belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// In the conversation it was sent to (reopened if it was resolved).
    Here,
    /// In a new conversation continuing this one: it was resolved longer
    /// ago than the inbox's reopen window.
    Continuation,
}

/// Why a desk operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DeskError {
    /// The conversation is not on this desk.
    #[error("the conversation is not on this inbox's desk")]
    NoTicket,
    /// The agent does not answer for the inbox.
    #[error("{0} does not answer for this inbox")]
    NotAnAgent(PartyId),
    /// The team has no agent of this inbox.
    #[error("team `{0}` has no agent of this inbox")]
    EmptyTeam(String),
    /// The change does not apply to a resolved conversation.
    #[error("the conversation is resolved")]
    Resolved,
    /// A snooze must end in the future.
    #[error("a snooze must end after now")]
    SnoozeInPast,
}

/// One inbox's desk. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct InboxDesk {
    inbox: PartyId,
    settings: DeskSettings,
    seats: Seats,
    queue: Queue,
    tickets: HashMap<ConversationKey, Ticket>,
    /// Teams by name, with their members.
    teams: HashMap<String, Vec<PartyId>>,
    /// When the desk is open: the SLA clocks count in these hours.
    hours: BusinessHours,
    /// The SLA targets (none by default).
    sla: SlaPolicy,
    /// Each ticket's SLA clock.
    clocks: HashMap<ConversationKey, SlaClock>,
    /// Every ticket's next timer (snooze end, answer timeout, SLA warning
    /// or breach), in order.
    timers: BTreeSet<(i64, ConversationKey)>,
    timer_of: HashMap<ConversationKey, i64>,
}

impl InboxDesk {
    /// The desk of `inbox`, with no agents and no tickets yet.
    pub(crate) fn new(inbox: PartyId, settings: DeskSettings) -> Self {
        Self {
            inbox,
            settings,
            seats: Seats::default(),
            queue: Queue::default(),
            tickets: HashMap::new(),
            teams: HashMap::new(),
            hours: BusinessHours::always_open(),
            sla: SlaPolicy::default(),
            clocks: HashMap::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
        }
    }

    /// How the desk works.
    #[cfg(test)]
    pub(crate) fn settings(&self) -> &DeskSettings {
        &self.settings
    }

    /// When the inbox opens next, if it is closed at `now`.
    pub(crate) fn closed_until(&self, now: i64) -> Option<i64> {
        if self.hours.is_open(now) {
            return None;
        }
        self.hours.next_opening(now)
    }

    /// The inbox's business hours.
    pub(crate) fn hours(&self) -> &BusinessHours {
        &self.hours
    }

    /// Supplies an agent's seat as stored (its `held` is counted from the
    /// tickets, whatever it says).
    pub(crate) fn load_seat(&mut self, mut seat: Seat) {
        seat.held = self
            .tickets
            .values()
            .filter(|t| t.owner == Owner::Agent(seat.agent) && t.status.holds_a_seat())
            .count() as u32;
        self.seats.add(seat);
    }

    /// Supplies a team's members.
    pub(crate) fn load_team(&mut self, name: String, members: Vec<PartyId>) {
        self.teams.insert(name, members);
    }

    /// The desk's teams are these now; routing runs again (a ticket of a
    /// team that is gone may go to any agent).
    pub(crate) fn set_teams(
        &mut self,
        now: i64,
        teams: impl IntoIterator<Item = (String, Vec<PartyId>)>,
        out: &mut Changes,
    ) {
        self.teams = teams.into_iter().collect();
        self.route(now, out);
    }

    /// Supplies a stored ticket and its SLA clock.
    pub(crate) fn load_ticket(&mut self, ticket: Ticket, clock: SlaClock) {
        let key = ticket.key;
        self.clocks.insert(key, clock);
        if let Some(old) = self.tickets.remove(&key) {
            self.release(&old);
        }
        self.occupy(&ticket);
        if ticket.owner == Owner::Nobody && !ticket.status.is_resolved() {
            let since = ticket.queued_at_ms.unwrap_or(0);
            self.queue.push(key, ticket.priority, since);
        }
        self.tickets.insert(key, ticket);
        self.reschedule(key);
    }

    /// The ticket of conversation `key`, if it is on this desk.
    pub(crate) fn ticket(&self, key: ConversationKey) -> Option<&Ticket> {
        self.tickets.get(&key)
    }

    /// The SLA clock of conversation `key`'s ticket.
    pub(crate) fn clock(&self, key: ConversationKey) -> Option<&SlaClock> {
        self.clocks.get(&key)
    }

    /// Ticket `key`'s next SLA warning or breach, with its target.
    pub(crate) fn sla_due(&self, key: ConversationKey) -> Option<(i64, crate::model::Target)> {
        self.clocks.get(&key)?.next_due(&self.sla, &self.hours)
    }

    /// The seat of `agent`, if it answers for the inbox.
    pub(crate) fn seat(&self, agent: PartyId) -> Option<&Seat> {
        self.seats.get(agent)
    }

    /// The tickets nobody owns, first served first.
    #[cfg(test)]
    pub(crate) fn queue(&self) -> impl Iterator<Item = ConversationKey> + '_ {
        self.queue.in_order()
    }

    /// How many tickets the desk holds in memory.
    pub(crate) fn len(&self) -> usize {
        self.tickets.len()
    }

    /// Drops resolved tickets from memory (they are stored; the engine
    /// loads one again when its conversation is written to).
    pub(crate) fn forget_resolved(&mut self) {
        self.tickets.retain(|_, t| !t.status.is_resolved());
        let tickets = &self.tickets;
        self.clocks.retain(|key, _| tickets.contains_key(key));
    }

    /// An agent now answers for the inbox (offline until it says otherwise).
    pub(crate) fn add_agent(&mut self, agent: PartyId) {
        self.seats.add(Seat::new(agent));
    }

    /// Changes how the desk works; routing re-runs.
    pub(crate) fn set_settings(&mut self, now: i64, settings: DeskSettings, out: &mut Changes) {
        self.settings = settings;
        self.retime(now, out);
    }

    /// Changes the business hours and SLA targets the clocks count by.
    pub(crate) fn set_sla(
        &mut self,
        now: i64,
        hours: BusinessHours,
        sla: SlaPolicy,
        out: &mut Changes,
    ) {
        self.hours = hours;
        self.sla = sla;
        self.retime(now, out);
    }

    /// Every timer again, after the settings changed; routing re-runs.
    fn retime(&mut self, now: i64, out: &mut Changes) {
        let keys: Vec<ConversationKey> = self.tickets.keys().copied().collect();
        for key in keys {
            self.reschedule(key);
        }
        self.route(now, out);
    }

    /// A new conversation of the inbox: its first responder bot owns it,
    /// or it joins the queue and routing runs.
    pub(crate) fn open(&mut self, now: i64, key: ConversationKey, out: &mut Changes) {
        let mut ticket = Ticket::new(key, self.inbox);
        ticket.waiting_since_ms = Some(now);
        self.tickets.insert(key, ticket);
        self.clocks.entry(key).or_default().opened(now);
        match self.settings.first_responder {
            Some(bot) => self.set_owner(now, key, Owner::Bot(bot), Actor::Desk, out),
            None => self.enqueue(now, key, None, out),
        }
        self.route(now, out);
    }

    /// The customer (any party not of the desk) wrote in conversation
    /// `key`: a pending or snoozed ticket opens; a resolved one reopens
    /// inside the window, or its message belongs in a continuation after
    /// it. The customer now waits for an answer.
    pub(crate) fn customer_wrote(
        &mut self,
        now: i64,
        key: ConversationKey,
        out: &mut Changes,
    ) -> Arrival {
        let Some(ticket) = self.tickets.get(&key) else {
            // A conversation from before the desk: it starts here.
            self.open(now, key, out);
            return Arrival::Here;
        };
        let status = ticket.status;
        if let Status::Resolved { at_ms } = status
            && now - at_ms > self.settings.reopen_window_ms
        {
            return Arrival::Continuation;
        }
        if status != Status::Open {
            self.change(key, |t| t.status = Status::Open);
            let clock = self.clocks.entry(key).or_default();
            if status.is_resolved() {
                clock.reopened(now);
            } else {
                clock.resume(now);
            }
            out.push((
                key,
                DeskChange::Status {
                    from: status,
                    to: Status::Open,
                    by: Actor::Desk,
                },
            ));
        }
        self.change(key, |t| {
            t.waiting_since_ms.get_or_insert(now);
        });
        self.clocks.entry(key).or_default().customer_wrote(now);
        self.reopened(now, key, out);
        self.route(now, out);
        Arrival::Here
    }

    /// `sender`, an agent or bot of the desk, wrote in conversation `key`:
    /// the customer no longer waits. An agent answering a ticket nobody
    /// owns takes it.
    pub(crate) fn desk_wrote(
        &mut self,
        now: i64,
        key: ConversationKey,
        sender: PartyId,
        out: &mut Changes,
    ) {
        let Some(ticket) = self.tickets.get(&key) else {
            return;
        };
        if ticket.owner == Owner::Nobody
            && !ticket.status.is_resolved()
            && self.seats.get(sender).is_some()
        {
            self.set_owner(now, key, Owner::Agent(sender), Actor::Party(sender), out);
        }
        let mut met = Vec::new();
        if let Some(clock) = self.clocks.get_mut(&key) {
            clock.desk_answered(now, &self.hours, &mut met);
        }
        let by = Actor::Party(sender);
        out.extend(
            met.into_iter()
                .map(|event| (key, DeskChange::Sla { event, by })),
        );
        self.change(key, |t| t.waiting_since_ms = None);
    }

    /// An agent's availability changed: coming online lets routing give it
    /// waiting tickets; going offline sends its open tickets back to the
    /// queue, for someone online, once the inbox's offline grace has
    /// passed without the agent coming back.
    pub(crate) fn set_availability(
        &mut self,
        now: i64,
        agent: PartyId,
        availability: Availability,
        out: &mut Changes,
    ) -> Result<(), DeskError> {
        let grace = self.settings.offline_grace_ms;
        let seat = self
            .seats
            .get_mut(agent)
            .ok_or(DeskError::NotAnAgent(agent))?;
        let was_offline = seat.availability == Availability::Offline;
        seat.availability = availability;
        match availability {
            Availability::Offline if grace > 0 => {
                if !was_offline || seat.offline_since.is_none() {
                    seat.offline_since = Some(now);
                }
            }
            Availability::Offline => {
                seat.offline_since = None;
                self.requeue_open(now, agent, out);
            }
            Availability::Online | Availability::Away => seat.offline_since = None,
        }
        self.route(now, out);
        Ok(())
    }

    /// Starts the offline grace, at `now`, of every agent that was offline
    /// when the desk was loaded: a restarted server (or a node taking the
    /// desk over) gives them the same grace as a dropped connection.
    pub(crate) fn count_offline_from(&mut self, now: i64) {
        for seat in self.seats.iter_mut() {
            if seat.availability == Availability::Offline && seat.offline_since.is_none() {
                seat.offline_since = Some(now);
            }
        }
    }

    /// Sends `agent`'s open tickets back to the queue, those waiting
    /// longest first.
    fn requeue_open(&mut self, now: i64, agent: PartyId, out: &mut Changes) {
        let mut open: Vec<&Ticket> = self
            .tickets
            .values()
            .filter(|t| t.owner == Owner::Agent(agent) && t.status == Status::Open)
            .collect();
        open.sort_by_key(|t| (t.waiting_since_ms.unwrap_or(i64::MAX), t.key));
        let keys: Vec<ConversationKey> = open.iter().map(|t| t.key).collect();
        for key in keys {
            self.enqueue(now, key, Some(RequeueReason::OwnerOffline), out);
        }
    }

    /// When the first offline grace runs out.
    fn grace_timer(&self) -> Option<i64> {
        let grace = self.settings.offline_grace_ms;
        self.seats
            .iter()
            .filter_map(|s| s.offline_since)
            .map(|since| since.saturating_add(grace))
            .min()
    }

    /// An agent's own capacity changed (`None`: the inbox's); routing re-runs.
    pub(crate) fn set_capacity(
        &mut self,
        now: i64,
        agent: PartyId,
        capacity: Option<u32>,
        out: &mut Changes,
    ) -> Result<(), DeskError> {
        self.seats
            .get_mut(agent)
            .ok_or(DeskError::NotAnAgent(agent))?
            .capacity = capacity;
        self.route(now, out);
        Ok(())
    }

    /// Gives conversation `key` to `owner` by hand (capacity does not
    /// apply to a person's choice), or back to the queue with
    /// [`Owner::Nobody`].
    pub(crate) fn assign(
        &mut self,
        now: i64,
        key: ConversationKey,
        owner: Owner,
        by: Actor,
        out: &mut Changes,
    ) -> Result<(), DeskError> {
        let ticket = self.unresolved(key)?;
        if let Owner::Agent(agent) = owner
            && self.seats.get(agent).is_none()
        {
            return Err(DeskError::NotAnAgent(agent));
        }
        if ticket.owner == owner {
            return Ok(());
        }
        match owner {
            Owner::Nobody => self.enqueue(now, key, None, out),
            owner => {
                self.change(key, |t| t.team = None);
                self.set_owner(now, key, owner, by, out);
            }
        }
        self.route(now, out);
        Ok(())
    }

    /// Transfers conversation `key` to a team: it waits for the first of
    /// the team's agents with room.
    pub(crate) fn transfer_to_team(
        &mut self,
        now: i64,
        key: ConversationKey,
        team: &str,
        out: &mut Changes,
    ) -> Result<(), DeskError> {
        self.unresolved(key)?;
        let has_agent = self
            .teams
            .get(team)
            .is_some_and(|m| m.iter().any(|a| self.seats.get(*a).is_some()));
        if !has_agent {
            return Err(DeskError::EmptyTeam(team.to_owned()));
        }
        self.change(key, |t| {
            t.team = Some(team.to_owned());
            t.passed_over.clear();
        });
        self.enqueue(now, key, Some(RequeueReason::Transfer), out);
        self.route(now, out);
        Ok(())
    }

    /// Changes conversation `key`'s status. Resolving or snoozing frees
    /// its owner's seat; routing re-runs.
    pub(crate) fn set_status(
        &mut self,
        now: i64,
        key: ConversationKey,
        status: Status,
        by: Actor,
        out: &mut Changes,
    ) -> Result<(), DeskError> {
        let ticket = self.tickets.get(&key).ok_or(DeskError::NoTicket)?;
        let from = ticket.status;
        if let Status::Snoozed { until_ms } = status
            && until_ms <= now
        {
            return Err(DeskError::SnoozeInPast);
        }
        if from == status || (from.is_resolved() && status.is_resolved()) {
            return Ok(());
        }
        self.change(key, |t| {
            t.status = status;
            if status.is_resolved() {
                t.waiting_since_ms = None;
                t.passed_over.clear();
            }
        });
        if status.is_resolved() {
            self.queue.remove(key);
        }
        out.push((
            key,
            DeskChange::Status {
                from,
                to: status,
                by,
            },
        ));
        let clock = self.clocks.entry(key).or_default();
        let mut met = Vec::new();
        match status {
            Status::Resolved { .. } => clock.resolved(now, &self.hours, &mut met),
            Status::Pending | Status::Snoozed { .. } => clock.pause(now, &self.hours),
            Status::Open if from.is_resolved() => clock.reopened(now),
            Status::Open => clock.resume(now),
        }
        out.extend(
            met.into_iter()
                .map(|event| (key, DeskChange::Sla { event, by })),
        );
        self.reschedule(key);
        if status == Status::Open {
            self.reopened(now, key, out);
        }
        self.route(now, out);
        Ok(())
    }

    /// Changes conversation `key`'s priority (its place in the queue too).
    pub(crate) fn set_priority(
        &mut self,
        key: ConversationKey,
        priority: Priority,
        by: Actor,
        out: &mut Changes,
    ) -> Result<(), DeskError> {
        let ticket = self.tickets.get(&key).ok_or(DeskError::NoTicket)?;
        if ticket.priority == priority {
            return Ok(());
        }
        let queued = ticket.queued_at_ms;
        self.change(key, |t| t.priority = priority);
        if self.queue.contains(key) {
            self.queue.push(key, priority, queued.unwrap_or(0));
        }
        out.push((key, DeskChange::Priority { to: priority, by }));
        Ok(())
    }

    /// `bot` hands conversation `key` to the agents. Idempotent: unless
    /// `bot` owns it, nothing changes, so a retried or repeated hand-off
    /// happens once. Whether it changed anything.
    pub(crate) fn hand_off(
        &mut self,
        now: i64,
        key: ConversationKey,
        bot: PartyId,
        out: &mut Changes,
    ) -> Result<bool, DeskError> {
        let ticket = self.tickets.get(&key).ok_or(DeskError::NoTicket)?;
        if ticket.owner != Owner::Bot(bot) || ticket.status.is_resolved() {
            return Ok(false);
        }
        self.enqueue(now, key, Some(RequeueReason::HandOff), out);
        self.route(now, out);
        Ok(true)
    }

    /// Sets ticket `key`'s labels (sorted by the caller).
    pub(crate) fn set_labels(&mut self, key: ConversationKey, labels: Vec<String>) {
        self.change(key, |t| t.labels = labels);
    }

    /// Records that ticket `key`'s conversation continues resolved
    /// conversation `old`.
    pub(crate) fn set_continues(&mut self, key: ConversationKey, old: ConversationKey) {
        self.change(key, |t| t.continues = Some(old));
    }

    /// The earliest timer of the desk (ms since the Unix epoch), if any.
    pub(crate) fn poll_timeout(&self) -> Option<i64> {
        let ticket = self.timers.first().map(|&(at, _)| at);
        match (ticket, self.grace_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles every timer due at `now`: agents offline past the grace
    /// lose their open tickets to the queue, snoozes end, owners that let a
    /// customer wait past the answer timeout lose the ticket to the queue,
    /// and SLA clocks warn, breach and escalate. Each due ticket is handled
    /// once per call: a timer its handling sets at or before `now` (an
    /// answer timeout of zero) waits for the next call, so no setting can
    /// keep the desk in here.
    pub(crate) fn handle_timeout(&mut self, now: i64, out: &mut Changes) {
        let grace = self.settings.offline_grace_ms;
        let expired: Vec<PartyId> = self
            .seats
            .iter()
            .filter(|s| {
                s.offline_since
                    .is_some_and(|t| t.saturating_add(grace) <= now)
            })
            .map(|s| s.agent)
            .collect();
        for agent in expired {
            if let Some(seat) = self.seats.get_mut(agent) {
                seat.offline_since = None;
            }
            self.requeue_open(now, agent, out);
        }
        let later = self.timers.split_off(&(now.saturating_add(1), i64::MIN));
        let due = std::mem::replace(&mut self.timers, later);
        for (_, key) in due {
            self.timer_of.remove(&key);
            if self.status_timer(key).is_some_and(|t| t <= now) {
                self.status_timeout(now, key, out);
            }
            self.sla_timeout(now, key, out);
            self.reschedule(key);
        }
        self.route(now, out);
    }

    /// The ticket of conversation `key`, unless it is resolved or missing.
    fn unresolved(&self, key: ConversationKey) -> Result<&Ticket, DeskError> {
        let ticket = self.tickets.get(&key).ok_or(DeskError::NoTicket)?;
        if ticket.status.is_resolved() {
            return Err(DeskError::Resolved);
        }
        Ok(ticket)
    }

    /// A ticket's due snooze end or answer timeout.
    fn status_timeout(&mut self, now: i64, key: ConversationKey, out: &mut Changes) {
        let Some(ticket) = self.tickets.get(&key) else {
            return;
        };
        match (ticket.status, ticket.owner) {
            (Status::Snoozed { .. }, _) => {
                let from = ticket.status;
                self.change(key, |t| t.status = Status::Open);
                self.clocks.entry(key).or_default().resume(now);
                out.push((
                    key,
                    DeskChange::Status {
                        from,
                        to: Status::Open,
                        by: Actor::Desk,
                    },
                ));
                self.reopened(now, key, out);
            }
            (Status::Open, Owner::Agent(agent)) => {
                self.change(key, |t| {
                    if !t.passed_over.contains(&agent) {
                        t.passed_over.push(agent);
                    }
                });
                self.enqueue(now, key, Some(RequeueReason::NoAnswer), out);
            }
            _ => {}
        }
    }

    /// A ticket's due SLA warnings and breaches; a breach escalates as the
    /// policy says.
    fn sla_timeout(&mut self, now: i64, key: ConversationKey, out: &mut Changes) {
        let Some(clock) = self.clocks.get_mut(&key) else {
            return;
        };
        let mut events = Vec::new();
        clock.handle_timeout(now, &self.sla, &self.hours, &mut events);
        for event in events {
            out.push((
                key,
                DeskChange::Sla {
                    event,
                    by: Actor::Desk,
                },
            ));
            if !matches!(event, SlaEvent::Breach(_)) {
                continue;
            }
            let escalation = self.sla.escalation.clone();
            if escalation.raise_priority
                && let Some(priority) = self.tickets.get(&key).map(|t| t.priority.raised())
            {
                // Only fails for a ticket that is gone.
                let _ = self.set_priority(key, priority, Actor::Desk, out);
            }
            if let Some(team) = escalation.to_team
                && self
                    .tickets
                    .get(&key)
                    .is_some_and(|t| t.team.as_ref() != Some(&team))
            {
                // A team without agents here cannot take it: it stays put.
                let _ = self.transfer_to_team(now, key, &team, out);
            }
        }
    }

    /// A ticket open (again): its agent keeps it if online, otherwise it
    /// waits for someone who is; nobody's ticket waits in the queue.
    fn reopened(&mut self, now: i64, key: ConversationKey, out: &mut Changes) {
        let Some(ticket) = self.tickets.get(&key) else {
            return;
        };
        match ticket.owner {
            Owner::Agent(agent)
                if self.seats.get(agent).is_none_or(|s| {
                    s.availability != Availability::Online && s.offline_since.is_none()
                }) =>
            {
                self.enqueue(now, key, Some(RequeueReason::OwnerOffline), out);
            }
            Owner::Nobody if !self.queue.contains(key) => self.enqueue(now, key, None, out),
            _ => {}
        }
    }

    /// Routing: while tickets wait and agents have room, the first waiting
    /// ticket goes to the agent the inbox's routing picks. A ticket only a
    /// busy team may take does not hold up the ones behind it.
    fn route(&mut self, now: i64, out: &mut Changes) {
        let routing = self.settings.routing;
        if routing == Routing::Manual || self.queue.is_empty() {
            return;
        }
        if !self.seats.any_room(self.settings.capacity) {
            return;
        }
        let waiting: Vec<ConversationKey> = self.queue.in_order().collect();
        for key in waiting {
            if !self.seats.any_room(self.settings.capacity) {
                return;
            }
            let Some(ticket) = self.tickets.get(&key) else {
                self.queue.remove(key);
                continue;
            };
            if ticket.status != Status::Open && ticket.status != Status::Pending {
                continue;
            }
            let team = ticket.team.as_ref().and_then(|t| self.teams.get(t));
            let in_team = |agent: PartyId| team.is_none_or(|m| m.contains(&agent));
            let passed = &ticket.passed_over;
            let capacity = self.settings.capacity;
            // Someone who has not let it wait before, if anyone can take it.
            let agent = self
                .seats
                .pick(routing, capacity, |a| in_team(a) && !passed.contains(&a))
                .or_else(|| self.seats.pick(routing, capacity, in_team));
            if let Some(agent) = agent {
                self.set_owner(now, key, Owner::Agent(agent), Actor::Desk, out);
            }
        }
    }

    /// Puts `key` in the queue, owned by nobody.
    fn enqueue(
        &mut self,
        now: i64,
        key: ConversationKey,
        reason: Option<RequeueReason>,
        out: &mut Changes,
    ) {
        self.change(key, |t| {
            t.owner = Owner::Nobody;
            t.assigned_at_ms = None;
            t.queued_at_ms = Some(now);
        });
        if let Some(ticket) = self.tickets.get(&key) {
            self.queue.push(key, ticket.priority, now);
        }
        out.push((key, DeskChange::Queued { reason }));
    }

    /// Gives `key` to `owner` (not nobody: see [`InboxDesk::enqueue`]).
    fn set_owner(
        &mut self,
        now: i64,
        key: ConversationKey,
        owner: Owner,
        by: Actor,
        out: &mut Changes,
    ) {
        self.queue.remove(key);
        self.change(key, |t| {
            t.owner = owner;
            t.assigned_at_ms = Some(now);
            t.queued_at_ms = None;
        });
        if let Some(seat) = owner.agent().and_then(|a| self.seats.get_mut(a)) {
            seat.last_assigned_ms = now;
        }
        out.push((key, DeskChange::Assigned { owner, by }));
    }

    /// Changes ticket `key` by `f`, keeping seat counts and timers right.
    fn change(&mut self, key: ConversationKey, f: impl FnOnce(&mut Ticket)) {
        let Some(mut ticket) = self.tickets.remove(&key) else {
            return;
        };
        self.release(&ticket);
        f(&mut ticket);
        self.occupy(&ticket);
        self.tickets.insert(key, ticket);
        self.reschedule(key);
    }

    fn release(&mut self, ticket: &Ticket) {
        if let (Some(agent), true) = (ticket.owner.agent(), ticket.status.holds_a_seat())
            && let Some(seat) = self.seats.get_mut(agent)
        {
            seat.held = seat.held.saturating_sub(1);
        }
    }

    fn occupy(&mut self, ticket: &Ticket) {
        if let (Some(agent), true) = (ticket.owner.agent(), ticket.status.holds_a_seat())
            && let Some(seat) = self.seats.get_mut(agent)
        {
            seat.held += 1;
        }
    }

    /// Sets ticket `key`'s timer to the earliest its state calls for.
    fn reschedule(&mut self, key: ConversationKey) {
        if let Some(at) = self.timer_of.remove(&key) {
            self.timers.remove(&(at, key));
        }
        let sla = self
            .clocks
            .get(&key)
            .and_then(|c| c.next_instant(&self.sla, &self.hours));
        let at = match (self.status_timer(key), sla) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            self.timers.insert((at, key));
            self.timer_of.insert(key, at);
        }
    }

    /// When ticket `key`'s snooze ends or its answer timeout runs out.
    fn status_timer(&self, key: ConversationKey) -> Option<i64> {
        let ticket = self.tickets.get(&key)?;
        match (ticket.status, ticket.owner) {
            (Status::Snoozed { until_ms }, _) => Some(until_ms),
            (Status::Open, Owner::Agent(_)) => self.settings.answer_timeout_ms.and_then(|wait| {
                let since = ticket.waiting_since_ms?.max(ticket.assigned_at_ms?);
                Some(since.saturating_add(wait))
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "inbox/tests.rs"]
mod tests;
