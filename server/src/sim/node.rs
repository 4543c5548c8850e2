//! A simulated node: the real sequencer and engine on the in-memory store,
//! with a hub reduced to "which client listens for which party".

use std::sync::Arc;

use kanal_proto::address::Address;

use super::client::ToClient;
use super::ready;
use crate::core::engine::{Command, Published, Reply};
use crate::model::{NewParty, Party, PartyId, PartyKind};
use crate::node::sequencer::Sequencer;
use crate::store::Store;
use crate::store::memory::MemoryStore;

/// Events a node replays per Sync answer (a client syncs again for more).
const REPLAY_LIMIT: u32 = 512;

/// Bytes of message bodies per Sync answer, past its first event.
const REPLAY_BYTES: usize = 64 * 1024;

/// What a client asks its node.
#[derive(Debug, Clone)]
pub(crate) enum ToNode {
    /// Order a command; answer with [`ToClient::Replied`] for `request`.
    Command {
        /// The client's request number.
        request: u64,
        /// The command.
        command: Command,
    },
    /// Replay `party`'s log after `since`, then keep the client listening
    /// for its live events.
    Sync {
        /// Whose log (the client's authenticated party).
        party: PartyId,
        /// The last seq the client holds.
        since: u64,
    },
}

/// A node of the simulation.
pub(crate) struct SimNode {
    /// The domain it serves.
    pub domain: String,
    /// Its store, which outlives restarts.
    pub store: Arc<MemoryStore>,
    sequencer: Sequencer,
    /// `(party, client)`: who listens for live events.
    listeners: Vec<(PartyId, usize)>,
    /// Virtual times at which the node's deadlines were handled.
    pub fired: Vec<i64>,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl SimNode {
    pub(super) fn new(domain: &str) -> Self {
        let store = Arc::new(MemoryStore::new());
        let sequencer = ready(Sequencer::new(store.clone(), domain.to_owned())).expect("sequencer");
        Self {
            domain: domain.to_owned(),
            store,
            sequencer,
            listeners: Vec::new(),
            fired: Vec::new(),
        }
    }

    pub(super) fn add_party(&mut self, local: &str, kind: PartyKind, now: i64) -> Party {
        let address = Address::new(local, &self.domain).expect("valid address");
        let party = NewParty {
            address,
            kind,
            display_name: local.to_owned(),
            password_hash: None,
        };
        let (mut replies, _) = ready(self.sequencer.order(&[Command::AddParty(party)], now));
        match replies.pop() {
            Some(Reply::Party(party)) => party,
            other => panic!("adding {local} failed: {other:?}"),
        }
    }

    /// Makes `agent` answer `inbox`.
    pub(crate) fn add_inbox_agent(&mut self, inbox: &Party, agent: &Party, now: i64) {
        let command = Command::AddInboxAgent {
            inbox: inbox.clone(),
            agent: agent.clone(),
        };
        let (replies, _) = ready(self.sequencer.order(&[command], now));
        assert_eq!(replies, vec![Reply::Done]);
    }

    pub(super) fn restart(&mut self) {
        self.sequencer =
            ready(Sequencer::new(self.store.clone(), self.domain.clone())).expect("sequencer");
        self.listeners.clear();
    }

    pub(super) fn poll_timeout(&self) -> Option<i64> {
        self.sequencer.poll_timeout()
    }

    /// Handles the node's deadlines due at `now`; returns the events its
    /// timers published, for the clients listening.
    pub(super) fn handle_timeout(&mut self, now: i64) -> Vec<(usize, ToClient)> {
        let published = ready(self.sequencer.handle_timeout(now));
        self.fired.push(now);
        self.deliver(published)
    }

    /// Each published event, for each client listening to a recipient.
    fn deliver(&self, published: Vec<Published>) -> Vec<(usize, ToClient)> {
        let mut out = Vec::new();
        for published in published {
            for &(party, seq) in &published.recipients {
                for &(listening, client) in &self.listeners {
                    if listening == party {
                        let event = published.event.clone();
                        out.push((client, ToClient::Event { seq, event }));
                    }
                }
            }
        }
        out
    }

    /// Handles what arrived at `now`: every command in one batch, as the
    /// writer would take them, then the syncs. Returns what to send back.
    pub(super) fn receive(
        &mut self,
        arrived: Vec<(usize, ToNode)>,
        now: i64,
    ) -> Vec<(usize, ToClient)> {
        let mut out = Vec::new();
        let mut asked = Vec::new();
        let mut commands = Vec::new();
        let mut syncs = Vec::new();
        for (client, message) in arrived {
            match message {
                ToNode::Command { request, command } => {
                    asked.push((client, request));
                    commands.push(command);
                }
                ToNode::Sync { party, since } => syncs.push((client, party, since)),
            }
        }
        if !commands.is_empty() {
            let (replies, published) = ready(self.sequencer.order(&commands, now));
            for ((client, request), reply) in asked.into_iter().zip(replies) {
                out.push((client, ToClient::Replied { request, reply }));
            }
            out.extend(self.deliver(published));
        }
        for (client, party, since) in syncs {
            out.extend(self.sync(client, party, since));
        }
        out
    }

    /// The client's party's events after `since`, then SyncComplete.
    fn sync(&mut self, client: usize, party: PartyId, since: u64) -> Vec<(usize, ToClient)> {
        if !self.listeners.contains(&(party, client)) {
            self.listeners.push((party, client));
        }
        let events = ready(
            self.store
                .events_since(party, since, REPLAY_LIMIT, REPLAY_BYTES),
        )
        .expect("replay");
        let head = ready(self.store.event_head(party)).expect("head");
        let mut out: Vec<(usize, ToClient)> = events
            .into_iter()
            .map(|(seq, event)| (client, ToClient::Event { seq, event }))
            .collect();
        out.push((client, ToClient::SyncComplete { head }));
        out
    }
}
