//! The agents of an inbox as its routing sees them: who is online, how
//! many open conversations each holds against its capacity, and whose turn
//! it is.

use crate::model::{Availability, PartyId, Routing};

/// One agent's seat at an inbox's desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seat {
    /// The agent.
    pub(crate) agent: PartyId,
    /// Whether it takes new conversations.
    pub(crate) availability: Availability,
    /// Its own limit of open conversations, over the inbox's.
    pub(crate) capacity: Option<u32>,
    /// Conversations it holds that occupy a seat (open or pending).
    pub(crate) held: u32,
    /// When it was last given a conversation (ms since the Unix epoch; 0:
    /// never), the balanced routing's tie-break.
    pub(crate) last_assigned_ms: i64,
    /// While it is offline with open conversations that it keeps for the
    /// inbox's offline grace: since when (ms since the Unix epoch).
    pub(crate) offline_since: Option<i64>,
}

impl Seat {
    /// A seat for `agent`, offline and holding nothing.
    pub(crate) fn new(agent: PartyId) -> Self {
        Self {
            agent,
            availability: Availability::Offline,
            capacity: None,
            held: 0,
            last_assigned_ms: 0,
            offline_since: None,
        }
    }

    /// Whether it can take one more conversation now, with the inbox's
    /// capacity `default` for agents without their own.
    fn has_room(&self, default: Option<u32>) -> bool {
        self.availability == Availability::Online
            && self.capacity.or(default).is_none_or(|cap| self.held < cap)
    }
}

/// The seats of one inbox, in the order its agents were added.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seats {
    seats: Vec<Seat>,
    /// Round robin: the index the next turn starts looking at.
    turn: usize,
}

impl Seats {
    /// The seat of `agent`, if it answers for the inbox.
    pub(crate) fn get(&self, agent: PartyId) -> Option<&Seat> {
        self.seats.iter().find(|s| s.agent == agent)
    }

    /// The seat of `agent`, if it answers for the inbox.
    pub(crate) fn get_mut(&mut self, agent: PartyId) -> Option<&mut Seat> {
        self.seats.iter_mut().find(|s| s.agent == agent)
    }

    /// Adds a seat (last in turn), unless `agent` has one.
    pub(crate) fn add(&mut self, seat: Seat) {
        if self.get(seat.agent).is_none() {
            self.seats.push(seat);
        }
    }

    /// Every seat, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Seat> {
        self.seats.iter()
    }

    /// Every seat, in order, to change.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Seat> {
        self.seats.iter_mut()
    }

    /// Whether any agent could take a conversation now.
    pub(crate) fn any_room(&self, default: Option<u32>) -> bool {
        self.seats.iter().any(|s| s.has_room(default))
    }

    /// The agent that gets the next conversation by `routing`, among those
    /// with room for which `eligible` holds; `None` if nobody can take it.
    /// Round robin moves the turn past the agent chosen.
    pub(crate) fn pick(
        &mut self,
        routing: Routing,
        default: Option<u32>,
        eligible: impl Fn(PartyId) -> bool,
    ) -> Option<PartyId> {
        let can = |s: &Seat| s.has_room(default) && eligible(s.agent);
        match routing {
            Routing::Manual => None,
            Routing::RoundRobin => {
                let n = self.seats.len();
                let start = self.turn % n.max(1);
                let index = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&i| can(&self.seats[i]))?;
                self.turn = index + 1;
                Some(self.seats[index].agent)
            }
            Routing::Balanced => self
                .seats
                .iter()
                .enumerate()
                .filter(|(_, s)| can(s))
                .min_by_key(|(i, s)| (s.held, s.last_assigned_ms, *i))
                .map(|(_, s)| s.agent),
        }
    }
}
