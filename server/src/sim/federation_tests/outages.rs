//! Federation when a peer is away, slow or refuses: what senders are
//! told, once, and that no peer's trouble holds up another.

use super::*;

#[test]
fn a_peer_down_for_six_days_gets_each_undelivered_message_told_once_at_the_horizon_and_its_sequence_stays_gapless()
 {
    let mut service = service(Conditions::PERFECT, 5);
    let (a, b, customer) = (service.a, service.b, service.customer);
    let id = service.conversation.clone();
    for n in 0..3 {
        service
            .sim
            .send(customer, &id, &format!("c{n}"), &format!("customer {n}"));
    }
    service.sim.drive();
    assert_eq!(service.history(b).len(), 3);

    service.sim.route(a, b).down = true;
    let sent_at = service.sim.now();
    for n in 3..23 {
        service
            .sim
            .send(customer, &id, &format!("c{n}"), &format!("customer {n}"));
    }
    // A restarts while B is unreachable: delivery resumes from the store,
    // the horizon counted from when each was queued.
    service.sim.run_until(sent_at + 2 * DAY);
    service.sim.restart_node(a);
    let horizon = service.sim.nodes[a].policy.horizon_ms;
    service
        .sim
        .run_until(sent_at + horizon + 12 * 3_600 * SECOND);

    let failures = |service: &Service| -> Vec<(String, i64)> {
        let held = &service.sim.clients[customer];
        held.events
            .iter()
            .zip(&held.received_at)
            .filter_map(|((_, event), at)| match event {
                Event::DeliveryFailed(f) => {
                    assert_eq!(f.conversation, id);
                    assert_eq!(f.server, "b.example");
                    assert!(!f.refused, "expired, not refused: {f:?}");
                    assert_eq!(f.reason, "b.example could not be reached for 120 hours");
                    Some((f.client_msg_id.clone(), *at))
                }
                _ => None,
            })
            .collect()
    };
    let told = failures(&service);
    assert_eq!(
        told.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
        (3..23).map(|n| format!("c{n}")).collect::<Vec<_>>(),
        "one failure per undelivered message, in order"
    );
    for (message, at) in &told {
        // Queued a client hop after `sent_at`, told one more hop later.
        let late = at - (sent_at + horizon);
        assert!(
            (0..=2).contains(&late),
            "{message} told {late} ms after the horizon"
        );
    }
    let store = service.sim.nodes[a].store.clone();
    let kept = ready(store.undelivered("b.example")).expect("undelivered");
    assert_eq!(kept.len(), 20, "each kept once");
    assert!(kept.iter().all(|u| u.told.is_some() && !u.refused));

    // Another restart after the horizon tells nobody again.
    service.sim.restart_node(a);
    service.sim.run_until(sent_at + 6 * DAY);
    assert_eq!(failures(&service), told, "none told twice");
    let tries = service.sim.nodes[a].deliveries["b.example"].connections;
    eprintln!(
        "the last half day down: {tries} connections tried, {} packets dropped unreachable",
        service.sim.route(a, b).unreachable
    );
    assert!(
        (72..=400).contains(&tries),
        "it kept trying, backing off to minutes: {tries} tries in 12 hours"
    );

    // B is reachable again: the expired ones travel as tombstones, B
    // applies none of them, and the peer's sequence has no hole.
    service.sim.route(a, b).down = false;
    service.sim.drive();
    let delivery = &service.sim.nodes[a].deliveries["b.example"];
    assert_eq!(delivery.acked(), delivery.last());
    let head = ready(store.outbox_head("b.example")).expect("head");
    let committed = ready(service.sim.nodes[b].store.peer_committed("a.example")).expect("cursor");
    assert_eq!(
        committed, head,
        "B consumed every transaction of A's sequence"
    );
    assert_eq!(
        service
            .history(b)
            .iter()
            .map(|m| m.client_msg_id.as_str())
            .collect::<Vec<_>>(),
        ["c0", "c1", "c2"],
        "nothing of the expired ones applied"
    );

    service.sim.send(customer, &id, "after", "are you back?");
    service.sim.drive();
    let host = service.history(b);
    assert_eq!(
        host.iter()
            .map(|m| (m.seq, m.client_msg_id.as_str()))
            .collect::<Vec<_>>(),
        [(1, "c0"), (2, "c1"), (3, "c2"), (4, "after")]
    );
    assert_eq!(shown(&service.history(a)), shown(&host));
    assert_eq!(failures(&service), told, "and nothing more failed");
}

#[test]
fn a_slow_peer_does_not_delay_a_healthy_one() {
    let mut sim = Sim::new(Conditions::PERFECT, 9);
    let a = sim.add_node("a.example");
    let b = sim.add_node("b.example");
    let c = sim.add_node("c.example");
    let healthy = Conditions {
        loss: 0.0,
        duplicate: 0.0,
        min_delay_ms: 1,
        max_delay_ms: 20,
    };
    let slow = Conditions {
        loss: 0.5,
        duplicate: 0.1,
        min_delay_ms: 500,
        max_delay_ms: 3_000,
    };
    sim.federate(a, b, healthy);
    sim.federate(a, c, slow);
    let carla = sim.add_party(a, "carla", PartyKind::User);
    let dora = sim.add_party(a, "dora", PartyKind::User);
    let support = sim.add_party(b, "support", PartyKind::Inbox);
    let help = sim.add_party(c, "help", PartyKind::Inbox);
    let ann = sim.add_party(b, "ann", PartyKind::Agent);
    let cy = sim.add_party(c, "cy", PartyKind::Agent);
    let now = sim.now();
    sim.nodes[b].add_inbox_agent(&support, &ann, now);
    sim.nodes[c].add_inbox_agent(&help, &cy, now);
    let (support_on_a, help_on_a) = (
        sim.remote(a, &support.address),
        sim.remote(a, &help.address),
    );
    let to_b = sim.add_client(a, carla);
    let to_c = sim.add_client(a, dora);
    let at_b = sim.add_client(b, ann);
    let at_c = sim.add_client(c, cy);
    sim.create(to_b, vec![support_on_a], "washer");
    sim.create(to_c, vec![help_on_a], "dryer");
    sim.drive_until(|sim| {
        sim.clients[at_b].events.len() == 1 && sim.clients[at_c].events.len() == 1
    });
    let id = |client: usize| match sim.clients[client].replies.values().next() {
        Some(Reply::Conversation(view)) => view.id.clone(),
        other => panic!("no conversation: {other:?}"),
    };
    let (to_b_id, to_c_id) = (id(to_b), id(to_c));

    // Both customers write at once, 1,000 messages a second each.
    let mut sent_at = Vec::new();
    for burst in 0..20 {
        sent_at.push(sim.now());
        for n in burst * 50..(burst + 1) * 50 {
            sim.send(to_b, &to_b_id, &format!("b{n}"), "for b");
            sim.send(to_c, &to_c_id, &format!("c{n}"), "for c");
        }
        let next = sim.now() + 50;
        sim.run_until(next);
    }
    sim.drive_until(|sim| {
        sim.clients[at_b]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Message(_)))
            .count()
            == 1_000
    });
    let done = sim.now();
    let latencies: Vec<i64> = sim.clients[at_b]
        .events
        .iter()
        .zip(&sim.clients[at_b].received_at)
        .filter_map(|((_, event), at)| match event {
            Event::Message(m) => {
                let n: usize = m.client_msg_id[1..].parse().expect("numbered");
                Some(at - sent_at[n / 50])
            }
            _ => None,
        })
        .collect();
    let worst = latencies.iter().max().copied().unwrap_or(0);
    let pending_c = {
        let delivery = &sim.nodes[a].deliveries["c.example"];
        delivery.last() - delivery.acked()
    };
    eprintln!(
        "b got all 1,000 within {worst} ms of sending, {} ms after the first; c still waits for {pending_c} of its transactions",
        done - sent_at[0]
    );
    assert!(
        worst <= 50,
        "every message reached b's agent within {worst} ms"
    );
    assert!(
        pending_c > 500,
        "c's delivery is far behind ({pending_c} pending)"
    );

    // The slow peer catches up in its own time, without loss or doubling.
    sim.drive_bounded(1_000_000).expect("the run goes idle");
    let at_c_messages: Vec<String> = sim.clients[at_c]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Message(m) => Some(m.client_msg_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        at_c_messages,
        (0..1_000).map(|n| format!("c{n}")).collect::<Vec<_>>()
    );
}

#[test]
fn a_start_the_host_refuses_is_told_to_its_sender_once_as_refused_and_consumed_on_both_sides() {
    let mut sim = Sim::new(Conditions::PERFECT, 13);
    let a = sim.add_node("a.example");
    let b = sim.add_node("b.example");
    sim.federate(a, b, BAD);
    let carla = sim.add_party(a, "carla", PartyKind::User);
    let nobody = sim.remote(a, &"nobody@b.example".parse().expect("address"));
    let customer = sim.add_client(a, carla);
    sim.create(customer, vec![nobody], "lost");
    sim.drive();

    let failures: Vec<&crate::model::DeliveryFailure> = sim.clients[customer]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DeliveryFailed(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "told once: {failures:?}");
    let failure = failures[0];
    assert!(
        failure.refused && failure.client_msg_id.is_empty(),
        "{failure:?}"
    );
    assert_eq!(failure.server, "b.example");
    assert_eq!(failure.reason, "no party nobody@b.example");
    let kept = ready(sim.nodes[a].store.undelivered("b.example")).expect("undelivered");
    assert_eq!(kept.len(), 1);
    assert!(kept[0].refused && kept[0].told.is_some());
    let delivery = &sim.nodes[a].deliveries["b.example"];
    assert_eq!((delivery.acked(), delivery.last()), (1, 1), "consumed");
    let committed = ready(sim.nodes[b].store.peer_committed("a.example")).expect("cursor");
    assert_eq!(committed, 1, "the host moved past it");
    let hosted = ready(sim.nodes[b].store.conversation_key(&failure.conversation)).expect("key");
    assert_eq!(hosted, None, "and holds nothing of it");

    // A restart neither tells it again nor sends it again.
    sim.restart_node(a);
    sim.drive();
    let told = sim.clients[customer]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::DeliveryFailed(_)))
        .count();
    assert_eq!(told, 1);
    assert_eq!(sim.nodes[a].deliveries["b.example"].sent, 0);
}
