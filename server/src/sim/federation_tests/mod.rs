//! Federation between nodes on virtual time, the whole chain: a commit
//! queues the outbox row, the sender's outbox sends it over a path that
//! loses, doubles and reorders, the receiver's peer inbox puts it in
//! order, the receiving engine applies it, and the host replicates back to
//! the customer's server. Every outcome is read from the nodes' stores and
//! the clients' logs.

mod outages;

use kanal_proto::address::ConversationId;

use super::*;
use crate::core::engine::Reply;
use crate::model::{Event, Message, PartyKind};
use crate::store::Store;

const SECOND: i64 = 1_000;
const DAY: i64 = 24 * 3_600 * SECOND;

/// A path that loses and doubles one packet in ten and reorders freely.
const BAD: Conditions = Conditions {
    loss: 0.10,
    duplicate: 0.10,
    min_delay_ms: 1,
    max_delay_ms: 40,
};

/// A customer on one node writing to an inbox on another, answered by an
/// agent there.
struct Service {
    sim: Sim,
    /// The customer's node.
    a: usize,
    /// The inbox's node (the conversation's host).
    b: usize,
    /// The customer's client, on `a`.
    customer: usize,
    /// The agent's client, on `b`.
    agent: usize,
    conversation: ConversationId,
}

/// carla@a.example starts a conversation with support@b.example (ann
/// answers it), over a federation path in `conditions`; client links are
/// perfect.
fn service(conditions: Conditions, seed: u64) -> Service {
    let mut sim = Sim::new(Conditions::PERFECT, seed);
    let a = sim.add_node("a.example");
    let b = sim.add_node("b.example");
    sim.federate(a, b, conditions);
    let carla = sim.add_party(a, "carla", PartyKind::User);
    let support = sim.add_party(b, "support", PartyKind::Inbox);
    let ann = sim.add_party(b, "ann", PartyKind::Agent);
    let now = sim.now();
    sim.nodes[b].add_inbox_agent(&support, &ann, now);
    let support_on_a = sim.remote(a, &support.address);
    let customer = sim.add_client(a, carla);
    let agent = sim.add_client(b, ann);
    sim.create(customer, vec![support_on_a], "washer");
    sim.drive();
    let conversation = match sim.clients[customer].replies.values().next() {
        Some(Reply::Conversation(view)) => view.id.clone(),
        other => panic!("no conversation created: {other:?}"),
    };
    assert_eq!(
        conversation.host(),
        "b.example",
        "hosted by the inbox's server"
    );
    Service {
        sim,
        a,
        b,
        customer,
        agent,
        conversation,
    }
}

impl Service {
    /// The conversation's messages as `node` stores them.
    fn history(&self, node: usize) -> Vec<Message> {
        let store = &self.sim.nodes[node].store;
        let Some(key) = ready(store.conversation_key(&self.conversation)).expect("key") else {
            return Vec::new();
        };
        ready(store.history(key, 0, 100_000)).expect("history").0
    }

    /// The conversation's messages as `client` received them, with when.
    fn received(&self, client: usize) -> Vec<(&Message, i64)> {
        let held = &self.sim.clients[client];
        held.events
            .iter()
            .zip(&held.received_at)
            .filter_map(|((_, event), at)| match event {
                Event::Message(m) if m.conversation == self.conversation => Some((m, *at)),
                _ => None,
            })
            .collect()
    }
}

/// `(seq, sender, client_msg_id, body)` of a message: what both sides
/// must agree on.
type Shown = (u64, String, String, crate::model::Body);

/// Each message as [`Shown`].
fn shown(messages: &[Message]) -> Vec<Shown> {
    messages
        .iter()
        .map(|m| {
            (
                m.seq,
                m.sender.to_string(),
                m.client_msg_id.clone(),
                m.body.clone(),
            )
        })
        .collect()
}

/// How many messages the first test sends, and how many of them at once.
const MESSAGES: usize = 10_000;
const BURST: usize = 100;

#[test]
fn ten_thousand_messages_over_a_bad_federation_path_arrive_once_each_in_order_both_ways() {
    let mut service = service(BAD, 42);
    let (customer, agent, id) = (
        service.customer,
        service.agent,
        service.conversation.clone(),
    );
    let sim = &mut service.sim;
    // A burst every 100 ms of virtual time (1,000 messages a second), and
    // an answer from the agent with each.
    for burst in 0..MESSAGES / BURST {
        for n in burst * BURST..(burst + 1) * BURST {
            sim.send(customer, &id, &format!("c{n}"), &format!("customer {n}"));
        }
        sim.send(agent, &id, &format!("a{burst}"), &format!("agent {burst}"));
        let next = sim.now() + 100;
        sim.run_until(next);
    }
    sim.drive_bounded(2_000_000).expect("the run goes idle");

    let route = sim.route(service.a, service.b).clone();
    eprintln!(
        "{MESSAGES} messages: {} packets between the servers, {} lost, {} doubled; \
         {} transaction frames sent a→b, {} b→a; done at {} s of virtual time",
        route.sent,
        route.lost,
        route.doubled,
        sim.nodes[service.a].deliveries["b.example"].sent,
        sim.nodes[service.b].deliveries["a.example"].sent,
        (sim.now() - 1_000_000) / SECOND,
    );
    assert!(
        route.lost > 1_000 && route.doubled > 1_000,
        "the path was bad: {route:?}"
    );
    let host = service.history(service.b);
    let replica = service.history(service.a);
    let customers: Vec<&str> = host
        .iter()
        .map(|m| m.client_msg_id.as_str())
        .filter(|id| id.starts_with('c'))
        .collect();
    let sent: Vec<String> = (0..MESSAGES).map(|n| format!("c{n}")).collect();
    assert_eq!(customers, sent, "none lost, none doubled, in order");
    let answers = host
        .iter()
        .filter(|m| m.client_msg_id.starts_with('a'))
        .count();
    assert_eq!(answers, MESSAGES / BURST, "every answer once");
    assert_eq!(
        host.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=(MESSAGES + MESSAGES / BURST) as u64).collect::<Vec<_>>(),
        "gapless"
    );
    assert_eq!(
        shown(&replica),
        shown(&host),
        "both servers hold the same conversation"
    );
    for client in [customer, agent] {
        let received: Vec<Message> = service
            .received(client)
            .into_iter()
            .map(|(m, _)| m.clone())
            .collect();
        assert_eq!(
            shown(&received),
            shown(&host),
            "client {client} saw each once, in order"
        );
    }
    for (node, peer) in [(service.a, "b.example"), (service.b, "a.example")] {
        let delivery = &service.sim.nodes[node].deliveries[peer];
        assert_eq!(delivery.acked(), delivery.last(), "everything acknowledged");
        let stored = ready(service.sim.nodes[node].store.outbox(peer, 0, 10)).expect("outbox");
        assert!(stored.is_empty(), "acknowledged rows are deleted");
    }
}

#[test]
fn restarting_either_server_mid_transfer_loses_and_doubles_nothing() {
    let mut service = service(BAD, 77);
    let (a, b, customer, agent) = (service.a, service.b, service.customer, service.agent);
    let id = service.conversation.clone();
    let messages = 2_000;
    for burst in 0..messages / BURST {
        for n in burst * BURST..(burst + 1) * BURST {
            service
                .sim
                .send(customer, &id, &format!("c{n}"), &format!("customer {n}"));
        }
        service
            .sim
            .send(agent, &id, &format!("a{burst}"), &format!("agent {burst}"));
        let next = service.sim.now() + 100;
        service.sim.run_until(next);
        // Each restart comes while both directions have transactions in
        // flight.
        if [5, 9, 14].contains(&burst) {
            for (node, peer) in [(a, "b.example"), (b, "a.example")] {
                let delivery = &service.sim.nodes[node].deliveries[peer];
                assert!(
                    delivery.last() > delivery.acked(),
                    "mid-transfer at {burst}"
                );
            }
        }
        match burst {
            5 => service.sim.restart_node(a),
            9 => service.sim.restart_node(b),
            14 => {
                service.sim.restart_node(a);
                service.sim.restart_node(b);
            }
            _ => {}
        }
    }
    service
        .sim
        .drive_bounded(1_000_000)
        .expect("the run goes idle");

    let host = service.history(b);
    let customers: Vec<&str> = host
        .iter()
        .map(|m| m.client_msg_id.as_str())
        .filter(|id| id.starts_with('c'))
        .collect();
    let sent: Vec<String> = (0..messages).map(|n| format!("c{n}")).collect();
    assert_eq!(customers, sent, "none lost, none doubled, in order");
    assert_eq!(
        host.iter()
            .filter(|m| m.client_msg_id.starts_with('a'))
            .count(),
        messages / BURST
    );
    assert_eq!(
        host.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=(messages + messages / BURST) as u64).collect::<Vec<_>>(),
        "gapless"
    );
    assert_eq!(shown(&service.history(a)), shown(&host));
    for client in [customer, agent] {
        let received: Vec<Message> = service
            .received(client)
            .into_iter()
            .map(|(m, _)| m.clone())
            .collect();
        assert_eq!(
            shown(&received),
            shown(&host),
            "client {client} saw each once, in order"
        );
    }
    let failed = service.sim.clients[customer]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::DeliveryFailed(_)))
        .count();
    assert_eq!(failed, 0, "nothing given up");
}

/// What a run of the restart scenario ends with: its route's counts, its
/// end in virtual time, and the host's conversation.
fn fingerprint(seed: u64) -> (u64, u64, u64, i64, Vec<Shown>) {
    let mut service = service(BAD, seed);
    let id = service.conversation.clone();
    for n in 0..300 {
        service
            .sim
            .send(service.customer, &id, &format!("c{n}"), "again");
        if n == 150 {
            service.sim.restart_node(service.a);
        }
    }
    service.sim.drive_bounded(1_000_000).expect("idle");
    let host = shown(&service.history(service.b));
    let route = service.sim.route(service.a, service.b).clone();
    (
        route.sent,
        route.lost,
        route.doubled,
        service.sim.now(),
        host,
    )
}

#[test]
fn a_federated_run_is_the_same_run_for_the_same_seed() {
    let first = fingerprint(21);
    assert_eq!(first.4.len(), 300);
    assert_eq!(fingerprint(21), first, "deterministic");
    assert_ne!(
        fingerprint(22).0..=fingerprint(22).2,
        first.0..=first.2,
        "and the seed matters"
    );
}
