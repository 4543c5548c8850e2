//! A simulated node: the real sequencer and engine on the in-memory store,
//! with a hub reduced to "which client listens for which party", and
//! federation with other nodes: a delivery toward each peer and the
//! receiving side from all of them, holding nothing the store does not.

use std::collections::BTreeMap;
use std::sync::Arc;

use kanal_proto::address::Address;

use super::accept::Reception;
use super::client::ToClient;
use super::deliver::Delivery;
use super::federation::FedPacket;
use super::link::Rng;
use super::ready;
use crate::core::engine::{Command, Published, Reply};
use crate::core::federation::outbox::Policy;
use crate::model::{NewParty, Party, PartyId, PartyKind, PeerRecord};
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

/// A federation packet and the peer it goes to.
pub(crate) type ToPeer = (String, FedPacket);

/// A node of the simulation.
pub(crate) struct SimNode {
    /// The domain it serves.
    pub domain: String,
    /// Its store, which outlives restarts.
    pub store: Arc<MemoryStore>,
    sequencer: Sequencer,
    /// `(party, client)`: who listens for live events.
    listeners: Vec<(PartyId, usize)>,
    /// Virtual times at which the engine's deadlines were handled.
    pub fired: Vec<i64>,
    /// How delivery to peers retries and gives up.
    pub policy: Policy,
    /// The delivery toward each peer, by domain.
    pub deliveries: BTreeMap<String, Delivery>,
    /// The receiving side, from every peer.
    pub reception: Reception,
    /// The last connection number used; never reused, across restarts
    /// too, as QUIC connection ids are not.
    sessions: u64,
    /// Jitters backoffs.
    rng: Rng,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl SimNode {
    pub(super) fn new(domain: &str, seed: u64) -> Self {
        let store = Arc::new(MemoryStore::new());
        let sequencer = ready(Sequencer::new(store.clone(), domain.to_owned())).expect("sequencer");
        Self {
            domain: domain.to_owned(),
            store,
            sequencer,
            listeners: Vec::new(),
            fired: Vec::new(),
            policy: Policy::default(),
            deliveries: BTreeMap::new(),
            reception: Reception::default(),
            sessions: 0,
            rng: Rng::new(seed),
        }
    }

    /// Configures `peer` (as `kanald peer add` does) and starts delivering
    /// toward it.
    pub(super) fn add_peer(&mut self, peer: &str, now: i64) {
        let record = PeerRecord {
            domain: peer.to_owned(),
            address: format!("{peer}:7449"),
            fingerprint: String::new(),
            added_at_ms: now,
        };
        ready(self.store.put_peer(&record)).expect("peer stored");
        let delivery = Delivery::resume(&self.store, peer, self.policy, false, now);
        self.deliveries.insert(peer.to_owned(), delivery);
    }

    /// The party this node records for `address` of another node: found,
    /// or created as a remote party (as the `kanal-fed/1` link's
    /// `remote_party` does when a conversation first names it).
    pub(crate) fn remote_party(&mut self, address: &Address, now: i64) -> Party {
        assert_ne!(address.domain(), self.domain, "{address} is local");
        if let Some(party) = ready(self.store.party_by_address(address)).expect("directory") {
            return party;
        }
        let new = NewParty {
            address: address.clone(),
            kind: PartyKind::User,
            display_name: address.local().to_owned(),
            password_hash: None,
        };
        let (mut replies, _) = ready(self.sequencer.order(&[Command::AddParty(new)], now));
        match replies.pop() {
            Some(Reply::Party(party)) => party,
            other => panic!("recording {address} failed: {other:?}"),
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

    /// Starts again from the store alone: a new engine, no connections,
    /// a delivery toward every configured peer and every peer rows are
    /// queued for (each greets its peer once), nothing received yet.
    pub(super) fn restart(&mut self, now: i64) {
        self.sequencer =
            ready(Sequencer::new(self.store.clone(), self.domain.clone())).expect("sequencer");
        self.listeners.clear();
        let configured = ready(self.store.peers()).expect("peers");
        let queued = ready(self.store.outbox_peers()).expect("outbox peers");
        self.deliveries = configured
            .into_iter()
            .map(|p| p.domain)
            .chain(queued)
            .map(|peer| {
                let delivery = Delivery::resume(&self.store, &peer, self.policy, true, now);
                (peer, delivery)
            })
            .collect();
        self.reception = Reception::default();
    }

    pub(super) fn poll_timeout(&self) -> Option<i64> {
        let deliveries = self.deliveries.values().filter_map(Delivery::poll_timeout);
        self.sequencer
            .poll_timeout()
            .into_iter()
            .chain(deliveries)
            .min()
    }

    /// Handles the node's deadlines due at `now` (the engine's and each
    /// delivery's); returns the events they published, for the clients
    /// listening.
    pub(super) fn handle_timeout(&mut self, now: i64) -> Vec<(usize, ToClient)> {
        let mut published = Vec::new();
        if self.sequencer.poll_timeout().is_some_and(|at| at <= now) {
            published.extend(ready(self.sequencer.handle_timeout(now)));
            self.fired.push(now);
        }
        for delivery in self.deliveries.values_mut() {
            if delivery.poll_timeout().is_some_and(|at| at <= now) {
                published.extend(delivery.handle_timeout(
                    now,
                    &self.store,
                    &mut self.sequencer,
                    &mut self.rng,
                ));
            }
        }
        self.deliver(published)
    }

    /// Handles the federation packets that arrived at `now`, by the peer
    /// they came from: receipts go to the delivery toward it, the rest to
    /// the receiving side. Returns what to tell clients and what to send.
    pub(super) fn receive_federation(
        &mut self,
        arrived: Vec<(String, FedPacket)>,
        now: i64,
    ) -> (Vec<(usize, ToClient)>, Vec<ToPeer>) {
        let mut published = Vec::new();
        let mut inbound = Vec::new();
        for (peer, packet) in arrived {
            match packet {
                FedPacket::Receipts { .. } | FedPacket::Reset { .. } => {
                    if let Some(delivery) = self.deliveries.get_mut(&peer) {
                        published.extend(delivery.receive(
                            packet,
                            now,
                            &self.store,
                            &mut self.sequencer,
                            &mut self.rng,
                        ));
                    }
                }
                FedPacket::Open { .. } | FedPacket::Transaction { .. } => {
                    inbound.push((peer, packet));
                }
            }
        }
        let mut answered = self
            .reception
            .receive(inbound, now, &self.store, &mut self.sequencer);
        for peer in &answered.alive {
            if let Some(delivery) = self.deliveries.get_mut(peer) {
                delivery.sign_of_life();
            }
        }
        published.append(&mut answered.published);
        (self.deliver(published), answered.packets)
    }

    /// After everything at `now`: each delivery reads the rows committed
    /// since, and sends what it may. Returns the packets, by peer.
    pub(super) fn federate(&mut self, now: i64) -> Vec<ToPeer> {
        let mut out = Vec::new();
        for (peer, delivery) in &mut self.deliveries {
            delivery.catch_up(&self.store);
            let mut packets = Vec::new();
            delivery.poll(now, &self.store, &mut self.sessions, &mut packets);
            out.extend(packets.into_iter().map(|p| (peer.clone(), p)));
        }
        out
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
