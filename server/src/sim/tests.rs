//! Protocol properties on virtual time, over links that lose, double and
//! reorder.

use kanal_proto::address::ConversationId;

use super::*;
use crate::core::engine::Reply;
use crate::model::{Event, PartyKind};
use crate::store::Store;

/// The conversation a client's first request created.
fn created(sim: &Sim, client: usize) -> ConversationId {
    match sim.clients[client].replies.values().next() {
        Some(Reply::Conversation(view)) => view.id.clone(),
        other => panic!("no conversation created: {other:?}"),
    }
}

#[test]
fn over_a_lossy_reordering_link_every_acked_message_arrives_once_and_in_order() {
    let lossy = Conditions {
        loss: 0.2,
        duplicate: 0.1,
        min_delay_ms: 1,
        max_delay_ms: 40,
    };
    let mut sim = Sim::new(lossy, 7);
    let node = sim.add_node("acme.example");
    let carla = sim.add_party(node, "carla", PartyKind::User);
    let support = sim.add_party(node, "support", PartyKind::Inbox);
    let ann = sim.add_party(node, "ann", PartyKind::Agent);
    let ben = sim.add_party(node, "ben", PartyKind::Agent);
    let now = sim.now();
    sim.nodes[node].add_inbox_agent(&support, &ann, now);
    sim.nodes[node].add_inbox_agent(&support, &ben, now);
    let c = sim.add_client(node, carla);
    let a = sim.add_client(node, ann);
    let b = sim.add_client(node, ben);

    sim.create(c, vec![support], "washer");
    sim.drive();
    let id = created(&sim, c);
    for n in 0..40 {
        sim.send(c, &id, &format!("c{n}"), &format!("customer {n}"));
        if n % 4 == 0 {
            sim.send(a, &id, &format!("a{n}"), &format!("agent {n}"));
        }
    }
    sim.drive();
    // Clients that were idle when the last events were lost learn of them
    // when they next connect.
    sim.resync_all();
    sim.drive();

    assert!(
        sim.lost > 50 && sim.doubled > 20,
        "{} lost, {} doubled",
        sim.lost,
        sim.doubled
    );
    let store = sim.nodes[node].store.clone();
    let (history, _) = ready(store.history(1, 0, 500)).expect("history");
    assert_eq!(
        history.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<u64>>(),
        "every send stored once, however often it was retried"
    );
    for client in [c, a, b] {
        let held = &sim.clients[client];
        assert!(held.is_settled(), "client {client} still waits");
        let log = ready(store.events_since(held.party.id, 0, 1_000, usize::MAX)).expect("log");
        assert_eq!(held.events, log, "client {client} holds its log exactly");
        let messages: Vec<u64> = held
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect();
        assert_eq!(messages, (1..=50).collect::<Vec<u64>>(), "client {client}");
    }
    // Every send was answered Sent, each with a seq of its own (a retry
    // whose first answer was lost hears `duplicate` and the same seq).
    let mut seqs: Vec<u64> = [c, a]
        .iter()
        .flat_map(|client| sim.clients[*client].replies.values())
        .filter_map(|r| match r {
            Reply::Sent(sent) => Some(sent.seq),
            _ => None,
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
}

#[test]
fn a_deadline_fires_at_exactly_its_virtual_time() {
    let mut sim = Sim::new(Conditions::PERFECT, 1);
    let node = sim.add_node("acme.example");
    let carla = sim.add_party(node, "carla", PartyKind::User);
    let support = sim.add_party(node, "support", PartyKind::Inbox);
    let c = sim.add_client(node, carla);
    sim.create(c, vec![support], "heater");
    sim.drive();
    let id = created(&sim, c);
    sim.send(c, &id, "once", "hello");
    sim.drive();

    // After a restart the engine has no memory of the send; its retry is
    // caught by the store, and the engine looks sends up for a while: a
    // deadline.
    sim.restart_node(node);
    sim.drive();
    assert_eq!(sim.nodes[node].poll_timeout(), None);
    sim.send(c, &id, "once", "hello");
    sim.drive_until(|sim| sim.clients[c].replies.len() == 3);
    match sim.clients[c].replies.values().last() {
        Some(Reply::Sent(sent)) => assert!(sent.duplicate && sent.seq == 1, "{sent:?}"),
        other => panic!("unexpected {other:?}"),
    }
    let deadline = sim.nodes[node].poll_timeout().expect("a deadline");
    assert!(deadline > sim.now());
    sim.drive();
    assert_eq!(sim.nodes[node].fired, vec![deadline]);
    assert_eq!(sim.now(), deadline, "nothing else was left to do");
    assert_eq!(sim.nodes[node].poll_timeout(), None);
}

#[test]
fn drive_reports_a_run_that_never_goes_idle() {
    let mut sim = Sim::new(Conditions::PERFECT, 3);
    let node = sim.add_node("acme.example");
    let dora = sim.add_party(node, "dora", PartyKind::Device);
    let d = sim.add_client(node, dora);
    sim.poll_every(d, 100);
    let livelock = sim.drive_bounded(1_000).expect_err("it never goes idle");
    assert_eq!(livelock.steps, 1_000);
    assert!(livelock.now > 1_000_000, "virtual time moved on");
}
