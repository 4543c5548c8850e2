//! The client library against an in-process server speaking Kanal's wire
//! protocol: Hello, requests, the event stream, typing, and what happens when
//! the connection is lost.

mod support;

use std::time::Duration;

use kanal_client::{Client, ClientError, ClientEvent, Credentials, Events, pb};
use support::{MockServer, PASSWORD};

/// Waits for the next event, failing the test after a few seconds.
async fn next(events: &mut Events) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
}

/// Collects events up to and including the next SyncComplete.
async fn until_caught_up(events: &mut Events) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next(events).await;
        let done = matches!(event, ClientEvent::SyncComplete { .. });
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn seqs(events: &[ClientEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            ClientEvent::Event(event) => Some(event.seq),
            _ => None,
        })
        .collect()
}

fn text_of(event: &ClientEvent) -> Option<&str> {
    match event {
        ClientEvent::Event(pb::Event {
            kind: Some(pb::event::Kind::Message(message)),
            ..
        }) => message.body.as_ref()?.text(),
        _ => None,
    }
}

async fn pair(server: &MockServer) -> (Client, Client, String) {
    let alice = Client::connect(server.config(), MockServer::register("alice"))
        .await
        .expect("alice registers");
    let bob = Client::connect(server.config(), MockServer::register("bob"))
        .await
        .expect("bob registers");
    let conversation = alice
        .create_conversation(&["bob@localhost"], "hello")
        .await
        .expect("create");
    (alice, bob, conversation.id)
}

#[tokio::test]
async fn register_send_and_receive() {
    let server = MockServer::start().await;
    let (alice, bob, conversation) = pair(&server).await;
    assert_eq!(alice.party().address, "alice@localhost");
    assert_eq!(alice.party().display_name, "ALICE");
    assert_eq!(alice.server_domain(), "localhost");
    assert!(!alice.resume_token().is_empty());

    let sent = alice
        .send_text(&conversation, "hi bob")
        .await
        .expect("send");
    assert_eq!((sent.seq, sent.duplicate), (1, false));

    let mut events = bob.subscribe(0).await.expect("subscribe");
    let replay = until_caught_up(&mut events).await;
    assert_eq!(seqs(&replay), [1, 2]);
    assert!(matches!(
        &replay[0],
        ClientEvent::Event(pb::Event { kind: Some(pb::event::Kind::ConversationAdded(c)), .. }) if c.id == conversation
    ));
    assert_eq!(text_of(&replay[1]), Some("hi bob"));
    assert_eq!(replay[2], ClientEvent::SyncComplete { head: 2 });

    alice.send_text(&conversation, "live").await.expect("send");
    let live = next(&mut events).await;
    assert_eq!(seqs(std::slice::from_ref(&live)), [3]);
    assert_eq!(text_of(&live), Some("live"));

    let page = bob.history(&conversation, 0, 50).await.expect("history");
    assert_eq!(page.messages.len(), 2);
    let list = bob.conversations(50, 0).await.expect("list");
    assert_eq!(list.conversations.len(), 1);
    assert_eq!(
        bob.conversation(&conversation).await.expect("get").last_seq,
        2
    );
    bob.mark(&conversation, pb::ReceiptKind::Read, 2)
        .await
        .expect("mark");
    assert!(matches!(
        bob.subscribe(0).await,
        Err(ClientError::AlreadySubscribed)
    ));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn refusals_carry_their_code() {
    let server = MockServer::start().await;
    let (alice, _bob, _) = pair(&server).await;
    let taken = Client::connect(server.config(), MockServer::register("alice")).await;
    assert_eq!(
        taken.expect_err("taken").code(),
        Some(pb::ErrorCode::AddressTaken)
    );
    let wrong = Credentials::Password {
        address: "alice@localhost".into(),
        password: "wrong password".into(),
    };
    let refused = Client::connect(server.config(), wrong)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Some(pb::ErrorCode::Unauthenticated));

    let missing = alice
        .send_text("localhost/nope", "x")
        .await
        .expect_err("404");
    assert_eq!(missing.code(), Some(pb::ErrorCode::NotFound));

    let right = Credentials::Password {
        address: "alice@localhost".into(),
        password: PASSWORD.into(),
    };
    Client::connect(server.config(), right)
        .await
        .expect("password login")
        .close()
        .await;
}

#[tokio::test]
async fn a_wrong_pin_is_refused_by_tls() {
    let server = MockServer::start().await;
    let config = server.config().pin(kanal_client::Fingerprint([0; 32]));
    let error = Client::connect(config, MockServer::register("alice"))
        .await
        .expect_err("pin mismatch");
    assert!(matches!(error, ClientError::Handshake { .. }), "{error:?}");
    assert!(error.to_string().contains("pin"), "{error}");
}

#[tokio::test]
async fn resume_reports_the_acknowledged_seq() {
    let server = MockServer::start().await;
    let (alice, _bob, conversation) = pair(&server).await;
    alice.send_text(&conversation, "one").await.expect("send");
    let mut events = alice.subscribe(0).await.expect("subscribe");
    let replay = until_caught_up(&mut events).await;
    assert_eq!(seqs(&replay), [1, 2]);
    alice.ack(2).await.expect("ack");
    let token = alice.resume_token();
    alice.close().await;
    let again = Client::connect(server.config(), Credentials::Resume { token })
        .await
        .expect("resume");
    assert_eq!(again.party().address, "alice@localhost");
    assert_eq!(again.welcome().acked_seq, 2);
    assert_eq!(again.welcome().event_head, 2);
    again.close().await;
}

#[tokio::test]
async fn events_continue_across_a_lost_connection_without_duplicates() {
    let server = MockServer::start().await;
    let (alice, bob, conversation) = pair(&server).await;
    alice
        .send_text(&conversation, "before")
        .await
        .expect("send");
    let mut events = bob.subscribe(0).await.expect("subscribe");
    let mut delivered = seqs(&until_caught_up(&mut events).await);
    assert_eq!(delivered, [1, 2]);

    server.kill_connections();
    // Requests issued while the client reconnects wait for the new connection.
    alice
        .send_text(&conversation, "during")
        .await
        .expect("send after loss");
    alice.send_text(&conversation, "after").await.expect("send");

    let mut texts = Vec::new();
    let mut reconnected = false;
    while delivered.last() != Some(&4) {
        let event = next(&mut events).await;
        match &event {
            ClientEvent::Reconnected => reconnected = true,
            ClientEvent::Event(e) => {
                delivered.push(e.seq);
                texts.extend(text_of(&event).map(str::to_owned));
            }
            _ => {}
        }
    }
    assert!(reconnected);
    assert_eq!(delivered, [1, 2, 3, 4], "every event once, in order");
    assert_eq!(texts, ["during", "after"]);
    assert_eq!(events.last_seq(), 4);
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_send_lost_with_its_connection_is_retried_once_and_stored_once() {
    let server = MockServer::start().await;
    let (alice, _bob, conversation) = pair(&server).await;
    server.drop_next("send");
    let sent = alice
        .send_text(&conversation, "exactly once")
        .await
        .expect("retried on the new connection");
    assert!(sent.duplicate, "the retry found the stored message");
    assert_eq!(sent.seq, 1);
    assert_eq!(server.message_count(&conversation), 1);
    alice.close().await;
}

#[tokio::test]
async fn create_conversation_is_not_retried() {
    let server = MockServer::start().await;
    let (alice, _bob, _) = pair(&server).await;
    server.drop_next("create");
    let error = alice
        .create_conversation(&["bob@localhost"], "again")
        .await
        .expect_err("not retried");
    assert!(
        matches!(error, ClientError::ConnectionLost { .. }),
        "{error:?}"
    );
    // The client itself recovers.
    alice
        .conversations(10, 0)
        .await
        .expect("works after reconnecting");
    alice.close().await;
}

#[tokio::test]
async fn a_refused_resume_ends_the_session() {
    let server = MockServer::start().await;
    let (alice, _bob, _) = pair(&server).await;
    let mut events = alice.subscribe(0).await.expect("subscribe");
    until_caught_up(&mut events).await;
    server.revoke_tokens();
    server.kill_connections();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Some(ClientEvent::Event(_) | ClientEvent::SyncComplete { .. }) => {
                    panic!("no events after a refused resume")
                }
                Some(_) => {}
                None => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the event stream ends");
    assert_eq!(
        alice.session_error().and_then(|e| e.code()),
        Some(pb::ErrorCode::Unauthenticated)
    );
    let error = alice.conversations(10, 0).await.expect_err("ended");
    assert_eq!(error.code(), Some(pb::ErrorCode::Unauthenticated));
}

#[tokio::test]
async fn typing_is_relayed_with_the_sender() {
    let server = MockServer::start().await;
    let (alice, bob, conversation) = pair(&server).await;
    let mut events = bob.subscribe(0).await.expect("subscribe");
    until_caught_up(&mut events).await;
    // Datagrams may be lost; retry a few times.
    let typing = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            alice.typing(&conversation, true).expect("typing");
            if let Ok(Some(ClientEvent::Typing(typing))) =
                tokio::time::timeout(Duration::from_millis(200), events.next()).await
            {
                return typing;
            }
        }
    })
    .await
    .expect("typing arrives");
    assert_eq!(typing.from, "alice@localhost");
    assert!(typing.active);
    assert_eq!(typing.conversation, conversation);
}

#[tokio::test]
async fn close_ends_events_and_fails_later_calls() {
    let server = MockServer::start().await;
    let (alice, _bob, _) = pair(&server).await;
    let mut events = alice.subscribe(0).await.expect("subscribe");
    until_caught_up(&mut events).await;
    alice.close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("ends promptly");
    assert!(end.is_none());
    assert!(matches!(
        alice.conversations(1, 0).await,
        Err(ClientError::Closed)
    ));
    assert!(matches!(
        alice.typing("localhost/c1", true),
        Err(ClientError::Closed)
    ));
}

#[tokio::test]
async fn clients_can_share_one_endpoint() {
    let server = MockServer::start().await;
    let endpoint = kanal_client::endpoint_for(server.addr).expect("endpoint");
    let config = server.config().endpoint(endpoint.clone());
    let alice = Client::connect(config.clone(), MockServer::register("alice"))
        .await
        .expect("alice registers");
    let bob = Client::connect(config, MockServer::register("bob"))
        .await
        .expect("bob registers");
    assert_eq!(
        endpoint.open_connections(),
        2,
        "both on the shared endpoint"
    );
    let conversation = alice
        .create_conversation(&["bob@localhost"], "shared")
        .await
        .expect("create");
    let mut events = bob.subscribe(0).await.expect("subscribe");
    until_caught_up(&mut events).await;
    alice
        .send_text(&conversation.id, "same socket")
        .await
        .expect("send");
    let received = loop {
        let event = next(&mut events).await;
        if let Some(text) = text_of(&event) {
            break text.to_owned();
        }
    };
    assert_eq!(received, "same socket");

    // Closing one client must neither wait for the other's connection nor
    // take the shared endpoint down with it.
    tokio::time::timeout(Duration::from_millis(1500), alice.close())
        .await
        .expect("close does not wait for the other clients of the endpoint");
    bob.conversations(10, 0)
        .await
        .expect("bob's connection still works");
    // Alice's connection leaves the endpoint once it has drained.
    tokio::time::timeout(Duration::from_secs(10), async {
        while endpoint.open_connections() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("alice's connection drains");
    bob.conversations(10, 0).await.expect("bob is unaffected");
}
