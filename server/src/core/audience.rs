//! The audience rule: who receives a conversation's events and who may see
//! it. One pure function, used by the engine's fan-out, the typing relay,
//! visibility checks and (tested against it) the SQL behind listings.

use crate::model::{Party, PartyId};

/// Who a conversation's events reach.
///
/// The rule: a conversation is seen by its members that are not inboxes
/// (people, bots, devices, wherever their home server is) and by the agents
/// of its member inboxes. Those of them whose home is this server receive
/// its events in their own logs; every other server with members receives
/// the events for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience {
    /// Parties that see the conversation, each once, in member order.
    viewers: Vec<PartyId>,
    /// The viewers whose home is this server: they receive the events in
    /// their own logs.
    recipients: Vec<PartyId>,
    /// For each recipient, the member inbox it receives the events through
    /// (the first, in member order, that it answers for), or `None` for a
    /// recipient that is a member itself and answers for none of them.
    routes: Vec<Option<PartyId>>,
    /// Other servers whose members take part: each receives the
    /// conversation's events for its own parties.
    servers: Vec<String>,
}

impl Audience {
    /// The audience of a conversation of `members` on the server for
    /// `domain`, where `agents_of(inbox)` gives an inbox's agents.
    pub fn of<'a>(
        domain: &str,
        members: &'a [Party],
        agents_of: impl Fn(PartyId) -> &'a [PartyId],
    ) -> Self {
        let viewers = routed_viewers(members, agents_of);
        let remote = |party: &PartyId| {
            members
                .iter()
                .any(|m| m.id == *party && !m.is_local(domain))
        };
        let (recipients, routes) = viewers.iter().filter(|(v, _)| !remote(v)).copied().unzip();
        let viewers = viewers.into_iter().map(|(v, _)| v).collect();
        let mut servers: Vec<String> = Vec::new();
        for member in members.iter().filter(|m| !m.is_local(domain)) {
            let server = member.address.domain();
            if !servers.iter().any(|s| s == server) {
                servers.push(server.to_owned());
            }
        }
        Self {
            viewers,
            recipients,
            routes,
            servers,
        }
    }

    /// The members whose agents the rule needs: local inboxes.
    pub fn inboxes<'a>(
        domain: &'a str,
        members: &'a [Party],
    ) -> impl Iterator<Item = PartyId> + 'a {
        members
            .iter()
            .filter(move |m| m.is_local(domain) && !m.kind.has_session())
            .map(|m| m.id)
    }

    /// Local parties that receive the events, each once, in member order.
    pub fn recipients(&self) -> &[PartyId] {
        &self.recipients
    }

    /// Each local recipient with the member inbox it receives the events
    /// through, if any: the engine writes an event once to that inbox's
    /// log rather than once per agent.
    pub fn routes(&self) -> impl Iterator<Item = (PartyId, Option<PartyId>)> + '_ {
        self.recipients
            .iter()
            .copied()
            .zip(self.routes.iter().copied())
    }

    /// Other servers that receive the events for their own members.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Whether `party` may see the conversation.
    pub fn sees(&self, party: PartyId) -> bool {
        self.viewers.contains(&party)
    }
}

/// The parties that see a conversation of `members`, each once, in member
/// order: its members that are not inboxes, and the agents of its member
/// inboxes (`agents_of(inbox)`). Where they live does not matter here.
pub(crate) fn viewers<'a>(
    members: &'a [Party],
    agents_of: impl Fn(PartyId) -> &'a [PartyId],
) -> Vec<PartyId> {
    routed_viewers(members, agents_of)
        .into_iter()
        .map(|(viewer, _)| viewer)
        .collect()
}

/// [`viewers`], each with the first member inbox it answers for, if any.
fn routed_viewers<'a>(
    members: &'a [Party],
    agents_of: impl Fn(PartyId) -> &'a [PartyId],
) -> Vec<(PartyId, Option<PartyId>)> {
    let mut viewers = Vec::with_capacity(members.len() + 2);
    for member in members {
        if member.kind.has_session() {
            push_unique(&mut viewers, member.id, None);
        } else {
            for agent in agents_of(member.id) {
                push_unique(&mut viewers, *agent, Some(member.id));
            }
        }
    }
    viewers
}

/// Adds `party` once; a party already there keeps the first inbox it was
/// reached through.
fn push_unique(out: &mut Vec<(PartyId, Option<PartyId>)>, party: PartyId, via: Option<PartyId>) {
    match out.iter_mut().find(|(p, _)| *p == party) {
        Some((_, route)) => {
            if route.is_none() {
                *route = via;
            }
        }
        None => out.push((party, via)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartyKind;

    fn party(id: PartyId, address: &str, kind: PartyKind) -> Party {
        Party {
            id,
            address: address.parse().expect("valid address"),
            kind,
            display_name: String::new(),
        }
    }

    #[test]
    fn members_with_sessions_and_inbox_agents_receive_each_once() {
        let members = [
            party(1, "carla@acme.example", PartyKind::User),
            party(2, "support@acme.example", PartyKind::Inbox),
            party(3, "alice@acme.example", PartyKind::Agent),
        ];
        let agents = [3, 4];
        let audience = Audience::of("acme.example", &members, |inbox| {
            assert_eq!(inbox, 2);
            &agents
        });
        assert_eq!(audience.recipients(), &[1, 3, 4]);
        let routes: Vec<_> = audience.routes().collect();
        assert_eq!(routes, vec![(1, None), (3, Some(2)), (4, Some(2))]);
        assert!(audience.sees(4));
        assert!(!audience.sees(2), "an inbox has no log of its own");
        assert!(audience.servers().is_empty());
    }

    #[test]
    fn remote_members_are_reached_through_their_servers() {
        let members = [
            party(1, "carla@home.example", PartyKind::User),
            party(2, "support@acme.example", PartyKind::Inbox),
            party(5, "dora@home.example", PartyKind::User),
        ];
        let audience = Audience::of("acme.example", &members, |_| &[7]);
        assert_eq!(audience.recipients(), &[7]);
        assert_eq!(audience.servers(), &["home.example".to_string()]);
        assert!(
            audience.sees(1),
            "a remote member sees, through its own server"
        );
        assert!(audience.sees(7));
        assert!(!audience.sees(2));
        let inboxes: Vec<_> = Audience::inboxes("acme.example", &members).collect();
        assert_eq!(inboxes, vec![2]);
    }
}
