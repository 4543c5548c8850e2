//! Federation between two servers in this process, over real QUIC on
//! 127.0.0.1 (FEDERATION.md): a customer of `a.test` writes to
//! `support@b.test`; B's agent answers; both see the same ordered history.
//! A server that is not a configured peer cannot be reached. What a peer
//! refuses, or what waits past the horizon, comes back to its sender once,
//! and the operator can deliver it again (`kanald peer replay`).

use kanal_proto::pb;
use kanal_server::admin;
use kanal_server::config::Config;
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

async fn server(domain: &str) -> anyhow::Result<TestServer> {
    TestServer::start_with(Config {
        domain: domain.into(),
        ..Config::default()
    })
    .await
}

/// A text body.
fn text(text: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(text.to_owned())),
    }
}

/// Waits for the next delivery-failure event.
async fn next_failure(events: &mut kanal_client::Events) -> anyhow::Result<pb::DeliveryFailed> {
    loop {
        if let Some(pb::event::Kind::DeliveryFailed(failed)) = next_stored(events).await?.kind {
            return Ok(failed);
        }
    }
}

/// Makes `a` and `b` peers of each other.
async fn pair(a: &TestServer, b: &TestServer) -> anyhow::Result<()> {
    for (from, to) in [(a, b), (b, a)] {
        admin::add_peer(
            &from.server.node(),
            to.server.domain(),
            &to.server.federation_addr().to_string(),
            to.server.fingerprint(),
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_customer_of_one_server_converses_with_an_inbox_of_another() -> anyhow::Result<()> {
    let a = server("a.test").await?;
    let b = server("b.test").await?;
    pair(&a, &b).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;

    let conversation = carla
        .create_conversation(&["support@b.test"], "washer leaks")
        .await?;
    assert!(
        conversation.id.starts_with("b.test/"),
        "{}",
        conversation.id
    );
    let sent = carla.send_text(&conversation.id, "my washer leaks").await?;
    assert!(sent.relayed, "queued for the host: {sent:?}");
    assert_eq!(sent.seq, 0);

    // B hosts it: its agent gets the conversation, then the message at seq 1.
    let added = next_stored(&mut ann_events).await?;
    match added.kind {
        Some(pb::event::Kind::ConversationAdded(c)) => assert_eq!(c.id, conversation.id),
        other => panic!("expected ConversationAdded, got {other:?}"),
    }
    let first = next_message(&mut ann_events).await?;
    assert_eq!((first.seq, first.sender.as_str()), (1, "carla@a.test"));
    assert_eq!(text_of(&first), "my washer leaks");

    // The reply is ordered by B and replicated to A.
    let reply = ann.send_text(&conversation.id, "clean the filter").await?;
    assert_eq!((reply.seq, reply.relayed), (2, false));
    let mine = next_message(&mut carla_events).await?;
    assert_eq!((mine.seq, mine.sender.as_str()), (1, "carla@a.test"));
    let answer = next_message(&mut carla_events).await?;
    assert_eq!((answer.seq, answer.sender.as_str()), (2, "ann@b.test"));
    assert_eq!(text_of(&answer), "clean the filter");

    // A second message: the host orders it after the reply, for both sides.
    let more = carla.send_text(&conversation.id, "thanks").await?;
    assert!(more.relayed);
    let third = next_message(&mut ann_events).await?;
    assert_eq!((third.seq, text_of(&third)), (2, "clean the filter"));
    let fourth = next_message(&mut ann_events).await?;
    assert_eq!((fourth.seq, text_of(&fourth)), (3, "thanks"));
    assert_eq!(next_message(&mut carla_events).await?.seq, 3);

    // Both servers hold the same history, in the same order.
    for client in [&carla, &ann] {
        let page = client.history(&conversation.id, 0, 50).await?;
        let seen: Vec<(u64, String)> = page
            .messages
            .iter()
            .map(|m| (m.seq, text_of(m).to_owned()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, "my washer leaks".to_owned()),
                (2, "clean the filter".to_owned()),
                (3, "thanks".to_owned())
            ]
        );
    }

    // Receipts cross too: each side sees the other's, as a local party's.
    ann.mark(&conversation.id, pb::ReceiptKind::Read, 3).await?;
    let read = next_receipt_of(&mut carla_events, "ann@b.test").await?;
    assert_eq!((read.kind(), read.up_to_seq), (pb::ReceiptKind::Read, 3));
    carla
        .mark(&conversation.id, pb::ReceiptKind::Delivered, 3)
        .await?;
    let delivered = next_receipt_of(&mut ann_events, "carla@a.test").await?;
    assert_eq!(
        (delivered.kind(), delivered.up_to_seq),
        (pb::ReceiptKind::Delivered, 3)
    );
    // Typing crosses both ways, best effort (a datagram may be lost, so
    // the typist keeps typing until it shows).
    until_typing_shows(&carla, &conversation.id, &mut ann_events, "carla@a.test").await?;
    until_typing_shows(&ann, &conversation.id, &mut carla_events, "ann@b.test").await?;

    // Stored on the customer's server: a fresh sync replays it.
    let later = a.login("carla@a.test").await?;
    let mut replay = later.subscribe(0).await?;
    let logged = until_caught_up(&mut replay).await?;
    assert!(
        logged.iter().any(|e| matches!(&e.kind,
            Some(pb::event::Kind::Receipt(r)) if r.party == "ann@b.test" && r.up_to_seq == 3)),
        "ann's receipt is in carla's log"
    );
    Ok(())
}

/// Has `typist` type in `conversation` until `events` shows typing from
/// `from` (each try waits half a second for it).
async fn until_typing_shows(
    typist: &kanal_client::Client,
    conversation: &str,
    events: &mut kanal_client::Events,
    from: &str,
) -> anyhow::Result<()> {
    for _ in 0..40 {
        typist.typing(conversation, true)?;
        let shown = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            loop {
                if let kanal_client::ClientEvent::Typing(typing) = next_event(events).await?
                    && typing.from == from
                    && typing.conversation == conversation
                    && typing.active
                {
                    return anyhow::Ok(());
                }
            }
        })
        .await;
        if let Ok(shown) = shown {
            return shown;
        }
    }
    anyhow::bail!("typing from {from} never showed")
}

/// Waits for the next receipt of `party`.
async fn next_receipt_of(
    events: &mut kanal_client::Events,
    party: &str,
) -> anyhow::Result<pb::Receipt> {
    loop {
        if let Some(pb::event::Kind::Receipt(receipt)) = next_stored(events).await?.kind
            && receipt.party == party
        {
            return Ok(receipt);
        }
    }
}

#[tokio::test]
async fn a_server_that_is_not_a_peer_reaches_nobody() -> anyhow::Result<()> {
    let a = server("a.test").await?;
    let carla = a.register("carla").await?;
    let refused = carla
        .create_conversation(&["support@b.test"], "hello")
        .await;
    assert_refused(refused, pb::ErrorCode::RemoteUnreachable)?;
    Ok(())
}

#[tokio::test]
async fn what_a_peer_refuses_comes_back_to_its_sender_and_is_delivered_once_fixed()
-> anyhow::Result<()> {
    let a = server("a.test").await?;
    let b = server("b.test").await?;
    pair(&a, &b).await?;
    let carla = a.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;

    // A mistyped address on another server: only that server can tell.
    let conversation = carla
        .create_conversation(&["nobdy@b.test"], "hello")
        .await?;
    let sent = carla.send_text(&conversation.id, "anyone there?").await?;
    assert!(sent.relayed);

    // Both the start and the message come back, refused, once each.
    let start = next_failure(&mut carla_events).await?;
    assert_eq!(
        (start.conversation.as_str(), start.client_msg_id.as_str()),
        (conversation.id.as_str(), "")
    );
    assert_eq!(start.failure(), pb::DeliveryFailure::Refused);
    assert_eq!(start.server, "b.test");
    assert!(start.reason.contains("nobdy@b.test"), "{}", start.reason);
    let message = next_failure(&mut carla_events).await?;
    assert_eq!(message.failure(), pb::DeliveryFailure::Refused);
    assert!(!message.client_msg_id.is_empty());
    assert_eq!(message.seq, 0, "its host never ordered it");

    // The operator sees both as dead letters, and so does a fresh sync.
    let listed = kanald_output(KANALD, a.path(), &["peer", "undelivered", "b.test"]).await?;
    assert_eq!(listed.matches("refused").count(), 2, "{listed}");
    assert!(listed.contains("told: carla@a.test"), "{listed}");
    let shown = kanald_output(KANALD, a.path(), &["peer", "show", "b.test"]).await?;
    assert!(shown.contains("dead letters 2"), "{shown}");
    let carla_again = a.login("carla@a.test").await?;
    let mut again = carla_again.subscribe(0).await?;
    let replayed = until_caught_up(&mut again).await?;
    let failures = replayed
        .iter()
        .filter(|e| matches!(e.kind, Some(pb::event::Kind::DeliveryFailed(_))))
        .count();
    assert_eq!(failures, 2, "each failure is in the log once");

    // B's operator creates the address; A's delivers both again, in order.
    b.add_user("nobdy").await?;
    let nobdy = b.login("nobdy@b.test").await?;
    let mut nobdy_events = nobdy.subscribe(0).await?;
    until_caught_up(&mut nobdy_events).await?;
    kanald_output(KANALD, a.path(), &["peer", "replay", "b.test"]).await?;
    let arrived = next_message(&mut nobdy_events).await?;
    assert_eq!(
        (arrived.seq, arrived.sender.as_str(), text_of(&arrived)),
        (1, "carla@a.test", "anyone there?")
    );
    let back = next_message(&mut carla_events).await?;
    assert_eq!((back.seq, text_of(&back)), (1, "anyone there?"));

    // Replayed once: a second replay has nothing left to do.
    let listed = kanald_output(KANALD, a.path(), &["peer", "undelivered", "b.test"]).await?;
    assert_eq!(listed.matches("delivered again as").count(), 2, "{listed}");
    let refused = refused_kanald(KANALD, a.path(), &["peer", "replay", "b.test"]).await?;
    assert!(refused.contains("nothing toward b.test"), "{refused}");
    let shown = kanald_output(KANALD, a.path(), &["peer", "show", "b.test"]).await?;
    assert!(shown.contains("dead letters 0"), "{shown}");
    Ok(())
}

#[tokio::test]
async fn a_peer_unreachable_past_the_horizon_gets_each_sender_told_once() -> anyhow::Result<()> {
    let a = TestServer::start_with(Config {
        domain: "a.test".into(),
        // Two seconds.
        federation_horizon_hours: 2.0 / 3600.0,
        ..Config::default()
    })
    .await?;
    // b.test is a peer, but nothing answers where it should listen.
    let gone = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    admin::add_peer(
        &a.server.node(),
        "b.test",
        &gone.to_string(),
        &"0".repeat(64),
    )
    .await?;
    let carla = a.register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "heater")
        .await?;
    let mut sent = Vec::new();
    for n in 0..3 {
        let cmid = format!("m{n}");
        carla.send(&conversation.id, &cmid, text(&cmid)).await?;
        sent.push(cmid);
    }

    // The start and each message come back, expired.
    let mut told = Vec::new();
    for _ in 0..4 {
        let failed = next_failure(&mut carla_events).await?;
        assert_eq!(failed.failure(), pb::DeliveryFailure::Expired);
        assert_eq!(failed.server, "b.test");
        told.push(failed.client_msg_id);
    }
    assert_eq!(told, ["", "m0", "m1", "m2"]);

    // After a restart nothing is told again: the next failure is of the
    // next message, and the log holds each failure once.
    let a = a.restart().await?;
    let carla = a.login("carla@a.test").await?;
    let mut carla_events = carla.subscribe(0).await?;
    let before = until_caught_up(&mut carla_events).await?;
    carla.send(&conversation.id, "m3", text("m3")).await?;
    let failed = next_failure(&mut carla_events).await?;
    assert_eq!(failed.client_msg_id, "m3");
    let failures: Vec<String> = before
        .into_iter()
        .filter_map(|e| match e.kind {
            Some(pb::event::Kind::DeliveryFailed(f)) => Some(f.client_msg_id),
            _ => None,
        })
        .collect();
    assert_eq!(failures, ["", "m0", "m1", "m2"]);
    let listed = kanald_output(KANALD, a.path(), &["peer", "undelivered", "b.test"]).await?;
    assert_eq!(listed.matches("expired").count(), 5, "{listed}");
    Ok(())
}

/// Waits until `kanald peer show DOMAIN` on `server` names a last error
/// containing `wanted`; returns what it showed.
async fn until_last_error(
    server: &TestServer,
    domain: &str,
    wanted: &str,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let shown = kanald_output(KANALD, server.path(), &["peer", "show", domain]).await?;
        if shown
            .lines()
            .any(|line| line.starts_with("last error") && line.contains(wanted))
        {
            return Ok(shown);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no last error with {wanted:?}:\n{shown}"
        );
        // The status is published as delivery goes: look again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_with_another_certificate_is_refused_both_ways() -> anyhow::Result<()> {
    let a = server("a.test").await?;
    let b = server("b.test").await?;
    pair(&a, &b).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;

    // An impostor calls itself a.test, with a certificate of its own, and
    // dials B: B holds a.test to A's certificate and refuses it.
    let impostor = server("a.test").await?;
    admin::add_peer(
        &impostor.server.node(),
        "b.test",
        &b.server.federation_addr().to_string(),
        b.server.fingerprint(),
    )
    .await?;
    let mallory = impostor.register("mallory").await?;
    let forged = mallory
        .create_conversation(&["support@b.test"], "refund me")
        .await?;
    mallory.send_text(&forged.id, "hello").await?;
    let shown = until_last_error(&impostor, "b.test", "refused this server").await?;
    assert!(shown.contains("queued       2"), "{shown}");

    // And a server that dials an address where another certificate
    // answers refuses to deliver there.
    let c = server("c.test").await?;
    admin::add_peer(
        &a.server.node(),
        "c.test",
        &b.server.federation_addr().to_string(),
        c.server.fingerprint(),
    )
    .await?;
    let carla = a.register("carla").await?;
    let to_c = carla
        .create_conversation(&["support@c.test"], "hello")
        .await?;
    carla.send_text(&to_c.id, "hello c").await?;
    let shown = until_last_error(&a, "c.test", "certificate").await?;
    assert!(shown.contains("queued       2"), "{shown}");

    // Nothing reached B from either: its agent's next event is the one
    // real customer's conversation.
    let real = carla
        .create_conversation(&["support@b.test"], "real")
        .await?;
    match next_stored(&mut ann_events).await?.kind {
        Some(pb::event::Kind::ConversationAdded(c)) => assert_eq!(c.id, real.id),
        other => panic!("expected the real conversation, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_peer_past_its_rate_is_read_more_slowly_and_loses_nothing() -> anyhow::Result<()> {
    let a = TestServer::start_with(Config {
        domain: "a.test".into(),
        ..unlimited_sends()
    })
    .await?;
    let b = TestServer::start_with(Config {
        domain: "b.test".into(),
        federation_transactions_per_second_per_peer: 40,
        ..Config::default()
    })
    .await?;
    pair(&a, &b).await?;
    let ann = b.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = a.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "many")
        .await?;
    let started = std::time::Instant::now();
    for n in 0..120 {
        carla
            .send(&conversation.id, &format!("m{n}"), text(&format!("m{n}")))
            .await?;
    }
    let mut received = Vec::new();
    while received.len() < 120 {
        let message = next_message(&mut ann_events).await?;
        received.push((message.seq, message.client_msg_id));
    }
    let expected: Vec<(u64, String)> = (0..120).map(|n| (n + 1, format!("m{n}"))).collect();
    assert_eq!(received, expected, "all of them, once, in order");
    // 121 transactions at 40 a second after a burst of 40: two seconds at
    // least, however fast the machine.
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(1_900), "{took:?}");
    Ok(())
}
