//! Federation between two servers in this process, over real QUIC on
//! 127.0.0.1 (FEDERATION.md): a customer of `a.test` writes to
//! `support@b.test`; B's agent answers; both see the same ordered history.
//! A server that is not a configured peer cannot be reached.

use kanal_proto::pb;
use kanal_server::admin;
use kanal_server::config::Config;
use kanal_tests::*;

async fn server(domain: &str) -> anyhow::Result<TestServer> {
    TestServer::start_with(Config {
        domain: domain.into(),
        ..Config::default()
    })
    .await
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
    Ok(())
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
