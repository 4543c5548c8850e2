//! A node's receiving side, as `links/federation/accept.rs` does it
//! without sockets: a peer's connection opens with `Ready` (what the store
//! says this node committed of the peer's), each transaction goes through
//! the real [`PeerInbox`] (once each, in the peer's sequence order), what
//! it lets through is applied through the node's sequencer, and only what
//! was committed is acknowledged. A restarted node knows none of its
//! earlier connections (it resets them) and takes the peer's sequence up
//! again from the store.

use std::collections::{BTreeMap, BTreeSet};

use kanal_proto::fed;

use super::federation::FedPacket;
use super::ready;
use crate::core::engine::{Command, Published};
use crate::core::federation::inbox::{Offered, PeerInbox};
use crate::core::federation::receive::{self, Answer, Received};
use crate::core::federation::wire::Malformed;
use crate::node::sequencer::Sequencer;
use crate::store::Store;
use crate::store::memory::MemoryStore;

/// How far ahead of the last applied transaction a peer may send (the
/// link's `WINDOW`).
const WINDOW: u64 = 1024;

/// What a node's receiving side answers, and whom it heard from.
#[derive(Debug, Default)]
pub(crate) struct Answered {
    /// Packets to send back, by peer.
    pub packets: Vec<(String, FedPacket)>,
    /// Events the applied transactions published, for local clients.
    pub published: Vec<Published>,
    /// Peers that showed a sign of life (connected, or sent a
    /// transaction): the deliveries toward them end a backoff.
    pub alive: BTreeSet<String>,
}

/// One node's receiving state, from every peer. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Reception {
    /// The receiving state from each peer, shared by its connections.
    inboxes: BTreeMap<String, PeerInbox<Received>>,
    /// Connections accepted in this run, by (peer, session).
    accepted: BTreeSet<(String, u64)>,
    /// Transactions applied (refused ones and tombstones included), from
    /// every peer.
    pub(crate) applied: u64,
}

impl Reception {
    /// Handles every packet that arrived at `now`: the transactions they
    /// let through are applied in one batch, as the writer would take
    /// them, then each connection hears its refusals and one
    /// acknowledgement of what is committed.
    pub(crate) fn receive(
        &mut self,
        arrived: Vec<(String, FedPacket)>,
        now: i64,
        store: &MemoryStore,
        sequencer: &mut Sequencer,
    ) -> Answered {
        let mut answered = Answered::default();
        // Connections to acknowledge on, in order of first need.
        let mut to_ack: Vec<(String, u64)> = Vec::new();
        let mut commands: Vec<Command> = Vec::new();
        let mut applying: Vec<(String, u64, u64, Option<Malformed>)> = Vec::new();
        for (peer, packet) in arrived {
            match packet {
                FedPacket::Open { session } => {
                    answered.alive.insert(peer.clone());
                    self.accepted.insert((peer.clone(), session));
                    let committed = self.inbox(store, &peer).ack();
                    let ready = fed::receipt::Kind::Ready(fed::Ready { committed });
                    answered.packets.push((
                        peer,
                        FedPacket::Receipts {
                            session,
                            receipts: vec![receipt(ready)],
                        },
                    ));
                }
                FedPacket::Transaction { session, frame } => {
                    if !self.accepted.contains(&(peer.clone(), session)) {
                        answered.packets.push((peer, FedPacket::Reset { session }));
                        continue;
                    }
                    answered.alive.insert(peer.clone());
                    let Ok((seq, received)) = receive::frame(frame) else {
                        // An undecodable frame closes the connection.
                        self.close(&peer, session, &mut answered);
                        continue;
                    };
                    match self.inbox(store, &peer).offer(seq, received) {
                        Offered::Duplicate => push_once(&mut to_ack, (peer, session)),
                        Offered::Held => {}
                        Offered::OutOfWindow => self.close(&peer, session, &mut answered),
                        Offered::Apply(run) => {
                            for (seq, received) in run {
                                let (command, malformed) = receive::command(&peer, seq, received);
                                commands.push(command);
                                applying.push((peer.clone(), session, seq, malformed));
                            }
                            push_once(&mut to_ack, (peer, session));
                        }
                    }
                }
                FedPacket::Receipts { .. } | FedPacket::Reset { .. } => {
                    unreachable!("a dialler's packet reached the receiving side")
                }
            }
        }
        let mut refusals: BTreeMap<(String, u64), Vec<fed::Receipt>> = BTreeMap::new();
        let mut not_stored: BTreeSet<String> = BTreeSet::new();
        if !commands.is_empty() {
            let (replies, published) = ready(sequencer.order(&commands, now));
            answered.published = published;
            for ((peer, session, seq, malformed), reply) in applying.into_iter().zip(&replies) {
                if not_stored.contains(&peer) {
                    continue;
                }
                match receive::answer(seq, malformed, reply) {
                    Answer::Consumed(refuse) => {
                        self.applied += 1;
                        if let Some(refuse) = refuse {
                            let refuse = receipt(fed::receipt::Kind::Refuse(refuse));
                            refusals
                                .entry((peer.clone(), session))
                                .or_default()
                                .push(refuse);
                        }
                        self.inbox(store, &peer).committed(seq);
                    }
                    Answer::NotStored(_) => {
                        // Not committed: the peer sends it again.
                        self.inbox(store, &peer).abandon();
                        not_stored.insert(peer.clone());
                        self.close(&peer, session, &mut answered);
                    }
                }
            }
        }
        for (peer, session) in to_ack {
            if !self.accepted.contains(&(peer.clone(), session)) {
                continue;
            }
            let mut receipts = refusals
                .remove(&(peer.clone(), session))
                .unwrap_or_default();
            let up_to = self.inbox(store, &peer).ack();
            receipts.push(receipt(fed::receipt::Kind::Ack(fed::Ack { up_to })));
            answered
                .packets
                .push((peer, FedPacket::Receipts { session, receipts }));
        }
        answered
    }

    /// The receiving state from `peer`, made from what the store says was
    /// committed.
    fn inbox(&mut self, store: &MemoryStore, peer: &str) -> &mut PeerInbox<Received> {
        self.inboxes.entry(peer.to_owned()).or_insert_with(|| {
            let committed = ready(store.peer_committed(peer)).expect("peer cursor");
            PeerInbox::new(committed, WINDOW)
        })
    }

    /// Ends a connection: the dialler learns of it at its next packet.
    fn close(&mut self, peer: &str, session: u64, answered: &mut Answered) {
        self.accepted.remove(&(peer.to_owned(), session));
        answered
            .packets
            .push((peer.to_owned(), FedPacket::Reset { session }));
    }
}

fn push_once<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn receipt(kind: fed::receipt::Kind) -> fed::Receipt {
    fed::Receipt { kind: Some(kind) }
}
