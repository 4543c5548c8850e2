//! The simulator: nodes (the sequencer and engine on the in-memory store)
//! and clients in one process, on virtual time, joined by links that can
//! drop, delay, duplicate and reorder what they carry. Protocol tests of
//! federation, devices and the desk are written on it, as quinn-proto's are
//! on its `Pair`: build a [`Sim`], add nodes and clients, act, [`Sim::drive`]
//! until nothing is left to do, and check what everyone holds.
//!
//! Federated nodes ([`Sim::federate`]) deliver to each other as servers do,
//! with the real outbox and peer inbox of `core::federation` (see
//! `deliver.rs` and `accept.rs`), over a [`Route`] per pair whose
//! conditions a test may change, or take down.
//!
//! Nothing here reads a clock or waits: the store answers at once, time is
//! a number the simulator advances to the next packet or deadline, and a
//! run that never goes idle is reported as a livelock rather than hanging.

mod accept;
mod client;
mod deliver;
mod federation;
#[cfg(test)]
mod federation_tests;
mod link;
mod node;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use kanal_proto::address::ConversationId;

pub(crate) use client::{SimClient, ToClient};
pub(crate) use federation::{FedPacket, Route};
pub(crate) use link::{Conditions, Rng, arrivals};
pub(crate) use node::{SimNode, ToNode};

use crate::model::{Body, Party};

/// Steps [`Sim::drive`] takes before it calls the run a livelock.
pub(crate) const MAX_STEPS: usize = 100_000;

/// The output of `future`, which must be ready at its first poll: the
/// in-memory store never waits, so everything the simulator drives is.
///
/// # Panics
/// If `future` is pending: something the simulator drives waited on I/O.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the simulator drove a future that waits"),
    }
}

/// A run that did not go idle within its steps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("still busy after {steps} steps, at {now} ms of virtual time")]
pub(crate) struct Livelock {
    /// Steps taken.
    pub steps: usize,
    /// Virtual time reached, ms.
    pub now: i64,
}

/// Something in flight between a client and its node, or between nodes.
#[derive(Debug, Clone)]
enum Payload {
    ToNode {
        client: usize,
        message: ToNode,
    },
    ToClient {
        client: usize,
        message: ToClient,
    },
    Federation {
        from: usize,
        to: usize,
        packet: FedPacket,
    },
}

/// Nodes, clients and the packets between them. See the module docs.
#[derive(Debug)]
pub(crate) struct Sim {
    now: i64,
    rng: Rng,
    /// The conditions of every client's link (both directions).
    pub conditions: Conditions,
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    /// The clients, by index.
    pub clients: Vec<SimClient>,
    /// In flight, by (arrival time, sending order).
    packets: BTreeMap<(i64, u64), Payload>,
    sent: u64,
    /// Packets the links lost.
    pub lost: u64,
    /// Packets the links delivered twice.
    pub doubled: u64,
    /// The path between each pair of federated nodes, by (lower, higher)
    /// index.
    routes: BTreeMap<(usize, usize), Route>,
}

impl Sim {
    /// An empty simulation at virtual time 1,000,000 ms whose links behave
    /// as `conditions`, deciding by a generator seeded with `seed`.
    pub(crate) fn new(conditions: Conditions, seed: u64) -> Self {
        Self {
            now: 1_000_000,
            rng: Rng::new(seed),
            conditions,
            nodes: Vec::new(),
            clients: Vec::new(),
            packets: BTreeMap::new(),
            sent: 0,
            lost: 0,
            doubled: 0,
            routes: BTreeMap::new(),
        }
    }

    /// The virtual time, ms.
    pub(crate) fn now(&self) -> i64 {
        self.now
    }

    /// Adds a node for `domain` on an empty store; returns its index.
    pub(crate) fn add_node(&mut self, domain: &str) -> usize {
        let seed = self.rng.next_u64();
        self.nodes.push(SimNode::new(domain, seed));
        self.nodes.len() - 1
    }

    /// Makes nodes `a` and `b` peers of each other, over a path in
    /// `conditions`.
    pub(crate) fn federate(&mut self, a: usize, b: usize, conditions: Conditions) {
        let (domain_a, domain_b) = (self.nodes[a].domain.clone(), self.nodes[b].domain.clone());
        self.nodes[a].add_peer(&domain_b, self.now);
        self.nodes[b].add_peer(&domain_a, self.now);
        self.routes.insert(pair(a, b), Route::new(conditions));
    }

    /// The path between nodes `a` and `b`: to read what it did, or to
    /// change its conditions or take it down.
    ///
    /// # Panics
    /// If they are not federated.
    pub(crate) fn route(&mut self, a: usize, b: usize) -> &mut Route {
        self.routes.get_mut(&pair(a, b)).expect("federated nodes")
    }

    /// The party `node` records for `address` of another node (which need
    /// not exist there).
    pub(crate) fn remote(&mut self, node: usize, address: &kanal_proto::address::Address) -> Party {
        self.nodes[node].remote_party(address, self.now)
    }

    /// Creates an account on `node`; returns the party.
    pub(crate) fn add_party(
        &mut self,
        node: usize,
        local: &str,
        kind: crate::model::PartyKind,
    ) -> Party {
        self.nodes[node].add_party(local, kind, self.now)
    }

    /// Adds a client of `party` on `node`, which syncs its event log at
    /// once; returns its index.
    pub(crate) fn add_client(&mut self, node: usize, party: Party) -> usize {
        let index = self.clients.len();
        self.clients.push(SimClient::new(node, party));
        let out = self.clients[index].start_sync(self.now);
        self.transmit_to_node(index, out);
        index
    }

    /// Has `client` start a conversation with `to`.
    pub(crate) fn create(&mut self, client: usize, to: Vec<Party>, subject: &str) {
        let out = self.clients[client].create(to, subject, self.now);
        self.transmit_to_node(client, out);
    }

    /// Has `client` send `text` to `conversation` under `client_msg_id`;
    /// the client retries until the node answers.
    pub(crate) fn send(
        &mut self,
        client: usize,
        conversation: &ConversationId,
        client_msg_id: &str,
        text: &str,
    ) {
        let body = Body::Text(text.to_owned());
        let out = self.clients[client].send(conversation, client_msg_id, body, self.now);
        self.transmit_to_node(client, out);
    }

    /// Has every client sync its log again, as after a reconnection.
    pub(crate) fn resync_all(&mut self) {
        for client in 0..self.clients.len() {
            let out = self.clients[client].start_sync(self.now);
            self.transmit_to_node(client, out);
        }
    }

    /// Restarts `node`: its engine forgets everything it cached and its
    /// connections are gone; its store keeps what was committed. Its
    /// clients reconnect and sync.
    pub(crate) fn restart_node(&mut self, node: usize) {
        self.nodes[node].restart(self.now);
        for client in 0..self.clients.len() {
            if self.clients[client].node == node {
                let out = self.clients[client].start_sync(self.now);
                self.transmit_to_node(client, out);
            }
        }
    }

    /// Has `client` also sync every `every_ms`, forever (as a device that
    /// polls its mailbox would): the simulation never goes idle.
    pub(crate) fn poll_every(&mut self, client: usize, every_ms: i64) {
        self.clients[client].poll_every(every_ms, self.now);
    }

    /// Runs until `done` holds, one due instant at a time.
    ///
    /// # Panics
    /// When the simulation goes idle first, or after [`MAX_STEPS`] instants.
    pub(crate) fn drive_until(&mut self, done: impl Fn(&Sim) -> bool) {
        for _ in 0..MAX_STEPS {
            if done(self) {
                return;
            }
            let next = self.next_due().expect("the simulation went idle first");
            self.now = self.now.max(next);
            self.step();
        }
        panic!("not done after {MAX_STEPS} steps");
    }

    /// Runs every instant due up to `until`, then stands at `until`
    /// (virtual time passes whether or not anything happens).
    ///
    /// # Panics
    /// After [`MAX_STEPS`] instants.
    pub(crate) fn run_until(&mut self, until: i64) {
        for _ in 0..MAX_STEPS {
            match self.next_due() {
                Some(next) if next <= until => {
                    self.now = self.now.max(next);
                    self.step();
                }
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
        }
        panic!("not at {until} after {MAX_STEPS} steps");
    }

    /// Runs until nothing is in flight and no deadline is pending.
    ///
    /// # Panics
    /// On a livelock (see [`Sim::drive_bounded`]).
    pub(crate) fn drive(&mut self) {
        if let Err(livelock) = self.drive_bounded(MAX_STEPS) {
            panic!("{livelock}");
        }
    }

    /// Runs until idle, or fails after `max_steps` steps (each step one
    /// instant of virtual time at which something was due).
    pub(crate) fn drive_bounded(&mut self, max_steps: usize) -> Result<(), Livelock> {
        for _ in 0..max_steps {
            let Some(next) = self.next_due() else {
                return Ok(());
            };
            self.now = self.now.max(next);
            self.step();
        }
        match self.next_due() {
            None => Ok(()),
            Some(_) => Err(Livelock {
                steps: max_steps,
                now: self.now,
            }),
        }
    }

    /// The earliest instant at which a packet arrives or a deadline is due.
    fn next_due(&self) -> Option<i64> {
        let packet = self.packets.keys().next().map(|(at, _)| *at);
        let nodes = self.nodes.iter().filter_map(SimNode::poll_timeout);
        let clients = self.clients.iter().filter_map(SimClient::poll_timeout);
        packet.into_iter().chain(nodes).chain(clients).min()
    }

    /// Delivers everything that arrives now and handles what is due now.
    fn step(&mut self) {
        let now = self.now;
        let mut to_nodes: Vec<Vec<(usize, ToNode)>> = vec![Vec::new(); self.nodes.len()];
        let mut federated: Vec<Vec<(String, FedPacket)>> = vec![Vec::new(); self.nodes.len()];
        while let Some(entry) = self.packets.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Payload::ToNode { client, message } => {
                    to_nodes[self.clients[client].node].push((client, message));
                }
                Payload::ToClient { client, message } => {
                    let out = self.clients[client].receive(message, now);
                    self.transmit_to_node(client, out);
                }
                Payload::Federation { from, to, packet } => {
                    let route = self.routes.get_mut(&pair(from, to)).expect("a route");
                    if route.down {
                        route.unreachable += 1;
                    } else {
                        federated[to].push((self.nodes[from].domain.clone(), packet));
                    }
                }
            }
        }
        for (node, (arrived, federated)) in to_nodes.into_iter().zip(federated).enumerate() {
            if self.nodes[node].poll_timeout().is_some_and(|at| at <= now) {
                for (client, message) in self.nodes[node].handle_timeout(now) {
                    self.transmit_to_client(client, message);
                }
            }
            for (client, message) in self.nodes[node].receive(arrived, now) {
                self.transmit_to_client(client, message);
            }
            let (to_clients, answers) = self.nodes[node].receive_federation(federated, now);
            for (client, message) in to_clients {
                self.transmit_to_client(client, message);
            }
            self.transmit_federation(node, answers);
            let sends = self.nodes[node].federate(now);
            self.transmit_federation(node, sends);
        }
        for client in 0..self.clients.len() {
            if self.clients[client]
                .poll_timeout()
                .is_some_and(|at| at <= now)
            {
                let out = self.clients[client].handle_timeout(now);
                self.transmit_to_node(client, out);
            }
        }
    }

    fn transmit_to_node(&mut self, client: usize, messages: Vec<ToNode>) {
        for message in messages {
            self.transmit(Payload::ToNode { client, message });
        }
    }

    fn transmit_to_client(&mut self, client: usize, message: ToClient) {
        self.transmit(Payload::ToClient { client, message });
    }

    fn transmit_federation(&mut self, from: usize, packets: Vec<(String, FedPacket)>) {
        for (peer, packet) in packets {
            let Some(to) = self.nodes.iter().position(|n| n.domain == peer) else {
                continue; // A peer no node serves: nothing answers.
            };
            let Some(route) = self.routes.get_mut(&pair(from, to)) else {
                continue; // Not federated: no path.
            };
            route.sent += 1;
            if route.down {
                route.unreachable += 1;
                continue;
            }
            let arrivals = link::arrivals(&route.conditions, &mut self.rng, self.now);
            match arrivals.len() {
                0 => route.lost += 1,
                2 => route.doubled += 1,
                _ => {}
            }
            for at in arrivals {
                self.sent += 1;
                let packet = packet.clone();
                self.packets
                    .insert((at, self.sent), Payload::Federation { from, to, packet });
            }
        }
    }

    fn transmit(&mut self, payload: Payload) {
        let arrivals = link::arrivals(&self.conditions, &mut self.rng, self.now);
        match arrivals.len() {
            0 => self.lost += 1,
            2 => self.doubled += 1,
            _ => {}
        }
        for at in arrivals {
            self.sent += 1;
            self.packets.insert((at, self.sent), payload.clone());
        }
    }
}

/// The key of the route between two nodes.
fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}
