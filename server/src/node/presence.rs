//! Which agents have a session open on this node: an agent's first
//! connection makes it available at its inboxes' desks, its last one
//! ending makes it offline there, so routing never waits on an agent who
//! is not connected.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::model::PartyId;

/// Open sessions per agent.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    sessions: Mutex<HashMap<PartyId, u32>>,
}

impl Presence {
    /// A session of `agent` opened; whether it is the agent's only one.
    pub(crate) fn arrive(&self, agent: PartyId) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let count = sessions.entry(agent).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A session of `agent` ended; whether it was the agent's last one.
    pub(crate) fn leave(&self, agent: PartyId) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get_mut(&agent) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                sessions.remove(&agent);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_arrival_and_the_last_leave_count() {
        let presence = Presence::default();
        assert!(presence.arrive(7));
        assert!(!presence.arrive(7));
        assert!(!presence.leave(7));
        assert!(presence.leave(7));
        assert!(!presence.leave(7), "no session is left to end");
        assert!(presence.arrive(7));
    }
}
