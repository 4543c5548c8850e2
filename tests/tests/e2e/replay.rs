//! An event replayed by Sync is the very event the party received live:
//! for every kind, and however the conversation changed since.

use anyhow::{Result, ensure};
use kanal_proto::pb;
use kanal_tests::*;

/// Reads `count` stored events from a live stream.
async fn take(events: &mut kanal_client::Events, count: usize) -> Result<Vec<pb::Event>> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        seen.push(next_stored(events).await?);
    }
    Ok(seen)
}

#[tokio::test]
async fn every_kind_of_event_replays_as_it_was_delivered_live() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.agent("alice").await?;
    let carla = server.register("carla").await?;
    let mut alice_live = alice.subscribe(0).await?;
    let mut carla_live = carla.subscribe(0).await?;
    until_caught_up(&mut alice_live).await?;
    until_caught_up(&mut carla_live).await?;

    // ConversationAdded, Message, and both kinds of Receipt.
    let conversation = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;
    carla.send_text(&conversation.id, "error E42").await?;
    alice
        .mark(&conversation.id, pb::ReceiptKind::Delivered, 1)
        .await?;
    alice
        .mark(&conversation.id, pb::ReceiptKind::Read, 1)
        .await?;
    alice
        .send_text(&conversation.id, "Please clean the filter.")
        .await?;
    carla
        .mark(&conversation.id, pb::ReceiptKind::Read, 2)
        .await?;
    let live = take(&mut carla_live, 6).await?;
    let alice_seen = take(&mut alice_live, 6).await?;

    // The conversation moves on after those events; their replay must not.
    carla.send_text(&conversation.id, "done, thanks").await?;
    take(&mut carla_live, 1).await?;

    let kinds: Vec<&str> = live
        .iter()
        .map(|e| match e.kind {
            Some(pb::event::Kind::ConversationAdded(_)) => "added",
            Some(pb::event::Kind::Message(_)) => "message",
            Some(pb::event::Kind::Receipt(_)) => "receipt",
            Some(pb::event::Kind::Desk(_)) => "desk",
            Some(pb::event::Kind::DeliveryFailed(_)) => "delivery failed",
            None => "none",
        })
        .collect();
    ensure!(
        kinds
            == [
                "added", "message", "receipt", "receipt", "message", "receipt"
            ],
        "{kinds:?}"
    );
    for (client, live) in [(&carla, live), (&alice, alice_seen)] {
        let again = server.resume(&client.resume_token()).await?;
        let mut replay = again.subscribe(0).await?;
        let replayed = until_caught_up(&mut replay).await?;
        ensure!(
            replayed[..live.len()] == live[..],
            "replayed {replayed:#?}\nlive {live:#?}"
        );
    }
    Ok(())
}
