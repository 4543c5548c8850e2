//! Retrying a send with the same client message id never makes a second message.

use kanal_proto::pb;
use kanal_tests::*;

fn text(s: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(s.into())),
    }
}

#[tokio::test]
async fn resending_a_client_msg_id_yields_one_message() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let customer = server.register("carla").await?;
    let conversation = customer
        .create_conversation(&["support@localhost"], "")
        .await?;

    let first = customer
        .send(&conversation.id, "retry-me", text("once"))
        .await?;
    assert!(!first.duplicate);
    let again = customer
        .send(&conversation.id, "retry-me", text("once"))
        .await?;
    assert!(again.duplicate);
    assert_eq!((again.seq, again.sent_at_ms), (first.seq, first.sent_at_ms));

    // Concurrent retries (as after a lost connection) also collapse to one.
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, id) = (customer.clone(), conversation.id.clone());
        tries.spawn(async move { client.send(&id, "burst", text("burst")).await });
    }
    let mut seqs = Vec::new();
    while let Some(sent) = tries.join_next().await {
        seqs.push(sent??.seq);
    }
    seqs.dedup();
    assert_eq!(seqs, vec![2], "one seq for every retry");

    // After a restart the id is still known (the server reads it from disk).
    let server = server.restart().await?;
    let customer = server.login("carla@localhost").await?;
    let after = customer
        .send(&conversation.id, "retry-me", text("once"))
        .await?;
    assert_eq!((after.seq, after.duplicate), (1, true));

    let history = customer.history(&conversation.id, 0, 100).await?;
    let seqs: Vec<u64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    Ok(())
}
