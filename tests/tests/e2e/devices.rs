//! Devices end to end: the real firmware session (`kanal-firmware`, on the
//! host) over real UDP to a running server's device gateway. A device opens
//! a conversation with diagnostics; an agent sees it in the inbox and
//! answers; the device receives the answer on its next poll — with and
//! without datagram loss. And what the gateway must refuse, it refuses
//! without storing anything.

use kanal_proto::pb;
use kanal_server::admin::{self, DeviceSpec};
use kanal_server::datadir;
use kanal_tests::device::TestDevice;
use kanal_tests::{TestServer, next_message, until_caught_up};
use tokio::net::UdpSocket;

/// Registers a device under `serial` in the default inbox.
async fn register(server: &TestServer, serial: &str, key: [u8; 32]) -> anyhow::Result<()> {
    let spec = DeviceSpec {
        serial: serial.into(),
        model: "HP 300".into(),
        key,
        inbox: datadir::DEFAULT_INBOX.into(),
        owner: None,
    };
    admin::add_device(&server.server.node(), spec).await?;
    Ok(())
}

/// The conversation a device opens, as the agent's client sees it, and the
/// device's first message in it.
async fn open_and_answer(loss_per_mille: u64) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;

    let (device, key) = TestDevice::new(&server).await?;
    // Seed 282 loses the first initiation, among others.
    let mut device = device.with_loss(loss_per_mille, 282);
    register(&server, "HP-0001", key).await?;
    let conversation = device
        .open(
            "filter",
            "Filter clogged, error E42",
            &[("err", "E42"), ("fw", "1.4.2")],
        )
        .await?;

    // The agent sees the device's report, with its diagnostics.
    let report = next_message(&mut ann_events).await?;
    assert_eq!(report.sender, "hp-0001@localhost");
    let body = report.body.clone().expect("a body");
    assert_eq!(body.text(), Some("Filter clogged, error E42"));
    let diagnostics: Vec<(&str, &str)> = body
        .diagnostics()
        .iter()
        .map(|d| (d.key.as_str(), d.value.as_str()))
        .collect();
    assert_eq!(diagnostics, [("err", "E42"), ("fw", "1.4.2")]);

    // The agent answers with quick replies; the device gets it on its poll.
    let prompt = pb::Body {
        kind: Some(pb::body::Kind::Prompt(pb::Prompt {
            text: "Replace the filter?".into(),
            replies: vec!["Yes".into(), "No".into()],
        })),
    };
    ann.send(&report.conversation, "answer-1", prompt).await?;
    let (to, text, replies) = device.next_mail().await?;
    assert_eq!((to, text.as_str()), (conversation, "Replace the filter?"));
    assert_eq!(replies, ["Yes", "No"]);

    // The device picks a reply; the agent receives it, once.
    let now = device.now();
    let choice = kanal_firmware::Choice {
        message: 0,
        index: 0,
    };
    let id = device
        .session()
        .append(now, conversation, "Yes", Some(choice))?;
    device
        .until(kanal_tests::PATIENCE, |event| match event {
            kanal_firmware::Event::Accepted { ids } if ids.contains(&id) => Some(()),
            _ => None,
        })
        .await?;
    let mut texts = Vec::new();
    loop {
        let message = next_message(&mut ann_events).await?;
        if message.sender == "hp-0001@localhost" {
            texts.push(kanal_tests::text_of(&message).to_owned());
            break;
        }
    }
    assert_eq!(texts, ["Yes"]);
    let history = ann.history(&report.conversation, 0, 50).await?;
    let from_device: Vec<_> = history
        .messages
        .iter()
        .filter(|m| m.sender == "hp-0001@localhost")
        .map(kanal_tests::text_of)
        .collect();
    assert_eq!(
        from_device,
        ["Filter clogged, error E42", "Yes"],
        "every request stored once, however often it was sent"
    );
    if loss_per_mille > 0 {
        assert!(device.lost.0 + device.lost.1 > 0, "the loss was simulated");
    }
    println!(
        "loss {loss_per_mille}‰: {} datagrams sent, lost {} out and {} in",
        device.sent.len(),
        device.lost.0,
        device.lost.1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_opens_a_conversation_and_receives_the_agents_answer() -> anyhow::Result<()> {
    open_and_answer(0).await
}

/// 10 % of the datagrams lost each way: only latency changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_loss_each_way_changes_nothing_but_latency() -> anyhow::Result<()> {
    open_and_answer(100).await
}

/// Unknown and revoked keys, replayed and tampered datagrams, a replayed
/// initiation and garbage: refused, nothing stored, and a registered
/// device is served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gateway_must_refuse_changes_nothing() -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let server = TestServer::start().await?;
    let counters = server.server.device_counters();
    let attacker = UdpSocket::bind(kanal_tests::loopback(0)).await?;
    let gateway = server.server.device_addr();

    // Garbage, and a datagram longer than any the profile allows.
    attacker.send_to(b"\x01garbage", gateway).await?;
    attacker.send_to(&[0u8; 600], gateway).await?;

    // An unknown key: its initiation is refused silently.
    let (mut stranger, _) = TestDevice::new(&server).await?;
    let now = stranger.now();
    stranger.session().open(now, "x", "let me in", &[])?;
    let silent = stranger
        .until(std::time::Duration::from_millis(300), |_| Some(()))
        .await;
    assert!(silent.is_err(), "an unknown key gets no answer");

    // A revoked key: the same.
    let (mut revoked, revoked_key) = TestDevice::new(&server).await?;
    register(&server, "HP-0002", revoked_key).await?;
    admin::revoke_device(&server.server.node(), "HP-0002").await?;
    let now = revoked.now();
    revoked.session().open(now, "x", "still here", &[])?;
    let silent = revoked
        .until(std::time::Duration::from_millis(300), |_| Some(()))
        .await;
    assert!(silent.is_err(), "a revoked key gets no answer");

    // A registered device works, and its datagrams are captured.
    let (mut device, key) = TestDevice::new(&server).await?;
    register(&server, "HP-0003", key).await?;
    let conversation = device.open("filter", "E42", &[]).await?;
    device.append(conversation, "second", None).await?;
    let initiation = device.sent.first().cloned().expect("an initiation");
    let transport = device.sent.last().cloned().expect("the append");
    let (refused_before, stale_before) = (
        counters.refused_transport.load(Relaxed),
        counters.stale.load(Relaxed),
    );
    let frames_before = counters.frames.load(Relaxed);

    // Replayed and tampered transport datagrams, and a replayed
    // initiation, from another address.
    attacker.send_to(&transport, gateway).await?;
    let mut tampered = transport.clone();
    *tampered.last_mut().expect("bytes") ^= 1;
    attacker.send_to(&tampered, gateway).await?;
    attacker.send_to(&initiation, gateway).await?;
    let mut reply = [0u8; 600];
    // The replayed initiation is answered (StaleInitiation, sealed for the
    // device, unreadable by the attacker) and nothing else happens.
    let (len, _) =
        tokio::time::timeout(kanal_tests::PATIENCE, attacker.recv_from(&mut reply)).await??;
    assert_eq!(reply[0], 2, "handshake message 2 of {len} bytes");

    // The device goes on, and only its own requests were stored.
    device.append(conversation, "third", None).await?;
    assert_eq!(counters.refused_transport.load(Relaxed), refused_before + 2);
    assert_eq!(counters.stale.load(Relaxed), stale_before + 1);
    assert_eq!(
        counters.frames.load(Relaxed),
        frames_before + 1,
        "only the third append"
    );
    assert!(counters.malformed.load(Relaxed) >= 1, "the long datagram");
    assert!(counters.bad_mac.load(Relaxed) + counters.malformed.load(Relaxed) >= 2);
    assert!(
        counters.refused_handshakes.load(Relaxed) >= 2,
        "unknown and revoked keys"
    );

    let ann = server.agent("ann").await?;
    let conversations = ann.conversations(50, 0).await?;
    assert_eq!(
        conversations.conversations.len(),
        1,
        "only the registered device's"
    );
    let history = ann
        .history(&conversations.conversations[0].id, 0, 50)
        .await?;
    let texts: Vec<_> = history.messages.iter().map(kanal_tests::text_of).collect();
    assert_eq!(texts, ["E42", "second", "third"]);
    Ok(())
}

/// The firmware's `std` adapter (a blocking `std::net::UdpSocket` and the
/// monotonic clock), as a product running an operating system uses it:
/// first contact opens the conversation, and the agent's answer arrives on
/// a poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_the_std_adapter_opens_and_reads_its_mail() -> anyhow::Result<()> {
    use kanal_firmware::adapters::udp::{StdClock, StdUdpLink};
    use kanal_firmware::{DeviceConfig, DeviceSession, Event};
    use rand_core::{OsRng, RngCore as _};

    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;

    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let config = DeviceConfig::new(secret, server.server.device_public_key());
    let mut session: DeviceSession<OsRng, 4> = DeviceSession::new(config, OsRng);
    register(&server, "RT-0001", session.public_key()).await?;
    let gateway = server.server.device_addr();

    // The device's own loop, on a thread of its own as on a product.
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let device = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let clock = StdClock::new();
        let mut link = StdUdpLink::connect(gateway)?;
        let id = session.open(clock.now(), "wan", "Uplink lost twice today", &[])?;
        let deadline = std::time::Instant::now() + kanal_tests::PATIENCE;
        let mut opened_tx = Some(opened_tx);
        let mut next_poll = clock.now();
        while std::time::Instant::now() < deadline {
            let step = std::time::Duration::from_millis(200);
            match link.step(&mut session, &clock, step)? {
                Some(Event::Opened { id: opened, .. }) if opened == id => {
                    if let Some(tx) = opened_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Some(Event::Message(message)) => return Ok(message.text.to_owned()),
                _ => {}
            }
            // Wakes to poll every half second, as a device on a timer does.
            if opened_tx.is_none() && session.outbox_len() == 0 && clock.now() >= next_poll {
                session.poll_mailbox(clock.now())?;
                next_poll = kanal_firmware::Instant(clock.now().0 + 500);
            }
        }
        anyhow::bail!("no mail within {:?}", kanal_tests::PATIENCE)
    });

    tokio::time::timeout(kanal_tests::PATIENCE, opened_rx).await??;
    let report = next_message(&mut ann_events).await?;
    assert_eq!(report.sender, "rt-0001@localhost");
    assert_eq!(kanal_tests::text_of(&report), "Uplink lost twice today");
    ann.send_text(
        &report.conversation,
        "We see it too: the line is being repaired.",
    )
    .await?;
    let mail = device.await??;
    assert_eq!(mail, "We see it too: the line is being repaired.");
    Ok(())
}

/// An empty mailbox is answered from what the gateway knows of the
/// device's log (no read of the store); mail committed after such polls,
/// and after the device's own messages, still arrives on the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_after_empty_polls_arrives_on_the_next_poll() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let ann = server.agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let (mut device, key) = TestDevice::new(&server).await?;
    register(&server, "HP-0002", key).await?;
    let conversation = device.open("filter", "Filter clogged", &[]).await?;
    let report = next_message(&mut ann_events).await?;

    async fn empty_polls(device: &mut TestDevice, count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            let now = device.now();
            let id = device.session().poll_mailbox(now)?;
            device
                .until(kanal_tests::PATIENCE, |event| match event {
                    kanal_firmware::Event::Accepted { ids } if ids.contains(&id) => Some(()),
                    kanal_firmware::Event::Message(m) => panic!("unexpected mail {m:?}"),
                    _ => None,
                })
                .await?;
        }
        Ok(())
    }

    empty_polls(&mut device, 3).await?;
    ann.send_text(&report.conversation, "one").await?;
    let (_, text, _) = device.next_mail().await?;
    assert_eq!(text, "one");

    // Its own message grows its log; that is not mail.
    let now = device.now();
    let id = device.session().append(now, conversation, "ok", None)?;
    device
        .until(kanal_tests::PATIENCE, |event| match event {
            kanal_firmware::Event::Accepted { ids } if ids.contains(&id) => Some(()),
            _ => None,
        })
        .await?;
    empty_polls(&mut device, 2).await?;
    ann.send_text(&report.conversation, "two").await?;
    let (_, text, _) = device.next_mail().await?;
    assert_eq!(text, "two");
    Ok(())
}
