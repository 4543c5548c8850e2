//! A client that stops reading its event stream falls behind the server's
//! bounded live queue; when it reads again it still gets every event, once,
//! in order (the server replays what it dropped from the store).

use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use kanal_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_lagged_still_gets_every_event_in_order() -> anyhow::Result<()> {
    // 16 KiB messages: QUIC flow control stops the server's writer after
    // about 80 of them, so the session's 1,024-event live queue overflows.
    const MESSAGES: u64 = 1_200;
    let server = TestServer::start_with(unlimited_sends()).await?;
    let mut slow = raw_session(&server, "slow").await?;
    let sync = pb::ClientControl {
        kind: Some(pb::client_control::Kind::Sync(pb::Sync { since: 0 })),
    };
    write_frame(&mut slow.control, &sync).await?;
    let events = slow.connection.accept_uni().await?;
    let mut events = FrameReader::new(events, limits::MAX_PUSH_FRAME);
    // Caught up with an empty log; now stop reading.
    let first: pb::Push = events
        .next()
        .await?
        .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
    assert!(matches!(first.kind, Some(pb::push::Kind::SyncComplete(_))));

    let sender = server.register("fast").await?;
    let conversation = sender.create_conversation(&["slow@localhost"], "").await?;
    let big = "x".repeat(limits::MAX_TEXT);
    let mut sends = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let (client, id, big) = (sender.clone(), conversation.id.clone(), big.clone());
        sends.spawn(async move {
            for i in 0..MESSAGES / 8 {
                client
                    .send(&id, &format!("{chunk}-{i}"), text(&big))
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = sends.join_next().await {
        done??;
    }

    // Read again: conversation_added, then every message, gapless.
    let mut seqs = Vec::new();
    let mut messages = 0;
    while messages < MESSAGES {
        let push: pb::Push = tokio::time::timeout(PATIENCE, events.next())
            .await
            .map_err(|_| anyhow::anyhow!("events stopped after seq {:?}", seqs.last()))??
            .ok_or_else(|| anyhow::anyhow!("stream ended"))?;
        if let Some(pb::push::Kind::Event(event)) = push.kind {
            if matches!(event.kind, Some(pb::event::Kind::Message(_))) {
                messages += 1;
            }
            seqs.push(event.seq);
        }
    }
    let expected: Vec<u64> = (1..=MESSAGES + 1).collect();
    assert_eq!(seqs, expected, "every event exactly once, in order");
    Ok(())
}

fn text(s: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(s.into())),
    }
}
