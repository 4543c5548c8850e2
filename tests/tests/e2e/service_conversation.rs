//! A customer writes to a company's service inbox; its agents receive the
//! conversation and answer; the customer receives the answer, with receipts
//! and typing along the way.

use kanal_client::ClientEvent;
use kanal_proto::pb;
use kanal_tests::*;

#[tokio::test]
async fn customer_to_support_inbox_and_back() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.agent("alice").await?;
    let bruno = server.agent("bruno").await?;
    let mut alice_events = alice.subscribe(0).await?;
    let mut bruno_events = bruno.subscribe(0).await?;
    until_caught_up(&mut alice_events).await?;
    until_caught_up(&mut bruno_events).await?;

    let carla = server.register("carla").await?;
    assert_eq!(carla.party().address, "carla@localhost");
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;

    let conversation = carla
        .create_conversation(&["support@localhost"], "washer leaks")
        .await?;
    assert!(
        conversation.id.starts_with("localhost/"),
        "{}",
        conversation.id
    );
    let sent = carla
        .send_text(&conversation.id, "my washer leaks, error E42")
        .await?;
    assert_eq!(sent.seq, 1);

    // Every agent of the inbox learns of the conversation, then the message.
    for events in [&mut alice_events, &mut bruno_events] {
        let added = next_stored(events).await?;
        match added.kind {
            Some(pb::event::Kind::ConversationAdded(c)) => assert_eq!(c.id, conversation.id),
            other => panic!("expected ConversationAdded, got {other:?}"),
        }
        let message = next_message(events).await?;
        assert_eq!(message.sender, "carla@localhost");
        assert_eq!(text_of(&message), "my washer leaks, error E42");
    }

    let reply = alice
        .send_text(&conversation.id, "Please clean the filter.")
        .await?;
    assert_eq!(reply.seq, 2);
    let first = next_message(&mut carla_events).await?;
    assert_eq!(first.seq, 1, "the customer sees her own message in order");
    let answer = next_message(&mut carla_events).await?;
    assert_eq!((answer.seq, answer.sender.as_str()), (2, "alice@localhost"));
    assert_eq!(text_of(&answer), "Please clean the filter.");

    // Read receipt: the agent learns the customer read the answer.
    carla
        .mark(&conversation.id, pb::ReceiptKind::Read, 2)
        .await?;
    let receipt = loop {
        if let Some(pb::event::Kind::Receipt(r)) = next_stored(&mut alice_events).await?.kind {
            break r;
        }
    };
    assert_eq!(receipt.party, "carla@localhost");
    assert_eq!(receipt.up_to_seq, 2);
    assert_eq!(receipt.kind, pb::ReceiptKind::Read as i32);
    let view = carla.conversation(&conversation.id).await?;
    assert_eq!((view.read_up_to, view.last_seq), (2, 2));

    // Both sides list the conversation.
    let listed = alice.conversations(10, 0).await?;
    assert_eq!(listed.conversations.len(), 1);
    assert_eq!(listed.conversations[0].id, conversation.id);
    Ok(())
}

#[tokio::test]
async fn typing_is_relayed_to_the_other_party_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let agent = server.agent("alice").await?;
    let customer = server.register("dora").await?;
    let conversation = customer
        .create_conversation(&["support@localhost"], "")
        .await?;
    let mut agent_events = agent.subscribe(0).await?;
    until_caught_up(&mut agent_events).await?;

    // Datagrams are unreliable by design; resend until one arrives.
    let typing = loop {
        customer.typing(&conversation.id, true)?;
        match tokio::time::timeout(std::time::Duration::from_millis(200), agent_events.next()).await
        {
            Ok(Some(ClientEvent::Typing(typing))) => break typing,
            Ok(Some(_)) | Err(_) => continue,
            Ok(None) => anyhow::bail!("event stream ended"),
        }
    };
    assert_eq!(typing.from, "dora@localhost");
    assert_eq!(typing.conversation, conversation.id);
    assert!(typing.active);
    Ok(())
}

#[tokio::test]
async fn direct_conversation_between_two_users() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let erik = server.register("erik").await?;
    let fay = server.register("fay").await?;
    let mut fay_events = fay.subscribe(0).await?;
    let conversation = erik.create_conversation(&["fay@localhost"], "hi").await?;
    erik.send_text(&conversation.id, "hello fay").await?;
    let message = next_message(&mut fay_events).await?;
    assert_eq!(text_of(&message), "hello fay");
    Ok(())
}
