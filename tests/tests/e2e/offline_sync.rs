//! A client that was away receives everything it missed, in order, exactly
//! once, then live events continue; a dropped connection reconnects by itself.

use kanal_client::ClientEvent;
use kanal_proto::pb;
use kanal_tests::*;

#[tokio::test]
async fn offline_client_gets_every_missed_event_once_in_order() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let agent = server.agent("alice").await?;
    let customer = server.register("carla").await?;
    let conversation = customer
        .create_conversation(&["support@localhost"], "")
        .await?;

    // The agent reads the first part, remembers where it was, and leaves.
    let mut events = agent.subscribe(0).await?;
    let first = until_caught_up(&mut events).await?;
    let seen = first.last().map(|e| e.seq).unwrap_or(0);
    agent.ack(seen).await?;
    let token = agent.resume_token();
    agent.close().await;
    drop(events);

    for i in 1..=200 {
        customer
            .send_text(&conversation.id, &format!("message {i}"))
            .await?;
    }

    let agent = server.resume(&token).await?;
    assert_eq!(
        agent.welcome().acked_seq,
        seen,
        "the server kept the session's ack"
    );
    let mut events = agent.subscribe(seen).await?;
    let missed = until_caught_up(&mut events).await?;
    let seqs: Vec<u64> = missed.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (seen + 1..=seen + 200).collect();
    assert_eq!(seqs, expected, "gapless, in order, no duplicates");
    for (i, event) in missed.iter().enumerate() {
        match &event.kind {
            Some(pb::event::Kind::Message(m)) => {
                assert_eq!(text_of(m), format!("message {}", i + 1))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // Live events continue on the same stream.
    customer.send_text(&conversation.id, "live").await?;
    let live = next_message(&mut events).await?;
    assert_eq!(text_of(&live), "live");
    Ok(())
}

#[tokio::test]
async fn client_reconnects_after_a_server_restart_and_misses_nothing() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let agent = server.agent("alice").await?;
    let customer = server.register("carla").await?;
    let conversation = customer
        .create_conversation(&["support@localhost"], "")
        .await?;
    let mut events = agent.subscribe(0).await?;
    until_caught_up(&mut events).await?;
    customer.send_text(&conversation.id, "before").await?;
    assert_eq!(text_of(&next_message(&mut events).await?), "before");

    let server = server.restart().await?;
    // The customer's own client reconnects too; its send waits for that.
    customer.send_text(&conversation.id, "during").await?;
    customer.send_text(&conversation.id, "after").await?;

    let mut texts = Vec::new();
    let mut reconnected = false;
    while texts.len() < 2 {
        match next_event(&mut events).await? {
            ClientEvent::Reconnected => reconnected = true,
            ClientEvent::Event(pb::Event {
                kind: Some(pb::event::Kind::Message(m)),
                ..
            }) => texts.push(text_of(&m).to_string()),
            _ => {}
        }
    }
    assert!(reconnected, "the client said it reconnected");
    assert_eq!(texts, ["during", "after"]);
    drop(server);
    Ok(())
}
