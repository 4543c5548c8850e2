//! The device session (clatter) against the snow responder: the IK
//! handshake with the first request in message 1 and the answer in
//! message 2, then transport both ways with explicit nonces.

mod support;

use kanal_firmware::Diagnostic;
use kanal_firmware::profile::limits::MAX_DATAGRAM;
use kanal_firmware::profile::wire::{self, Datagram};
use support::{DEVICE_SECRET, Pair, Seen, device, opened_pair, public_of, server};

#[test]
fn first_contact_opens_a_conversation_in_one_round_trip_within_256_bytes() {
    let mut device = device(7);
    let mut server = server();
    let diagnostics = [
        Diagnostic {
            key: "err",
            value: "E42",
        },
        Diagnostic {
            key: "fw",
            value: "1.4.2",
        },
    ];
    let now = kanal_firmware::Instant(0);
    let id = device
        .open(now, "filter", "Filter clogged, error E42", &diagnostics)
        .expect("queued");

    let mut buf = [0u8; MAX_DATAGRAM];
    let len = device
        .poll_transmit(now, &mut buf)
        .expect("ok")
        .expect("an initiation");
    assert!(matches!(
        wire::parse(&buf[..len]),
        Ok(Datagram::Initiation(_))
    ));
    assert_eq!(
        device.poll_transmit(now, &mut buf),
        Ok(None),
        "one datagram out"
    );

    // The request decrypts on the snow side: the conversation exists.
    let from = "192.0.2.1:5000".parse().expect("address");
    let answers = server.handle(from, &buf[..len]);
    assert_eq!(answers.len(), 1, "one datagram back");
    let record = server.device(&public_of(&DEVICE_SECRET));
    assert_eq!(record.conversations.len(), 1);
    assert_eq!(record.conversations[0].topic, "filter");
    assert_eq!(
        record.conversations[0].diagnostics,
        vec![("err".into(), "E42".into()), ("fw".into(), "1.4.2".into())]
    );

    // Snow's answer in message 2 decrypts on the device.
    let (_, response) = &answers[0];
    let event = device
        .handle_datagram(now, response)
        .expect("authentic")
        .map(Seen::from);
    let Some(Seen::Opened {
        id: opened,
        conversation,
    }) = event
    else {
        panic!("expected Opened, got {event:?}");
    };
    assert_eq!(opened, id);
    assert_eq!(conversation, record.conversations[0].id);
    assert!(device.is_established());
    assert_eq!(device.outbox_len(), 0);

    let round_trip = len + response.len();
    println!(
        "first contact: {len} + {} = {round_trip} bytes",
        response.len()
    );
    assert!(round_trip <= 256, "first contact took {round_trip} bytes");
}

#[test]
fn transport_frames_flow_both_ways_and_decrypt_out_of_order() {
    let (mut pair, conversation) = opened_pair();
    let device_key = public_of(&DEVICE_SECRET);
    for text in ["one", "two", "three"] {
        pair.device
            .append(pair.now, conversation, text, None)
            .expect("queued");
    }
    pair.flush_device();
    pair.deliver_to_server();
    assert_eq!(
        pair.server.device(&device_key).conversations[0].texts,
        vec!["Filter clogged", "one", "two", "three"]
    );
    // The three acks arrive in reverse order: explicit counters decrypt anyway.
    let mut answers: Vec<_> = pair.to_device.drain(..).collect();
    answers.reverse();
    pair.to_device.extend(answers);
    pair.deliver_to_device();
    let mut accepted: Vec<u32> = pair
        .events
        .iter()
        .flat_map(|e| match e {
            Seen::Accepted { ids } => ids.clone(),
            _ => Vec::new(),
        })
        .collect();
    accepted.sort_unstable();
    assert_eq!(accepted, vec![2, 3, 4]);
    assert_eq!(pair.device.outbox_len(), 0);
}

#[test]
fn an_agent_reply_with_quick_replies_reaches_the_device_on_its_poll() {
    let (mut pair, conversation) = opened_pair();
    let device_key = public_of(&DEVICE_SECRET);
    let message = pair.server.post(
        &device_key,
        conversation,
        "Replace the filter?",
        &["Yes", "No"],
    );
    pair.device.poll_mailbox(pair.now).expect("queued");
    pair.drive();
    assert!(pair.events.contains(&Seen::Message {
        id: message,
        conversation,
        text: "Replace the filter?".into(),
        replies: vec!["Yes".into(), "No".into()],
    }));
    assert!(pair.device.has_unread());
    assert_eq!(pair.device.cursor(), message);
    // The device's ack emptied the mailbox.
    assert!(pair.server.device(&device_key).mailbox.is_empty());

    // Picking a quick reply appends the label with the choice.
    pair.device
        .append(
            pair.now,
            conversation,
            "Yes",
            Some(kanal_firmware::Choice { message, index: 0 }),
        )
        .expect("queued");
    pair.drive();
    assert_eq!(
        pair.server.device(&device_key).conversations[0]
            .texts
            .last()
            .map(String::as_str),
        Some("Yes")
    );
    pair.device.mark_read();
    assert!(!pair.device.has_unread());
}

#[test]
fn every_transport_datagram_stays_within_32_bytes_of_overhead() {
    let (mut pair, conversation) = opened_pair();
    pair.device
        .append(pair.now, conversation, "hello", None)
        .expect("queued");
    pair.flush_device();
    let (up, len) = pair.wire_log[0];
    assert!(up);
    // 5 bytes of text in a frame of 1 (variant) + 1 (id) + 1 (conversation
    // 100 as a varint) + 1 (length) + 5 + 1 (no choice) = 10 bytes.
    assert_eq!(len - 10, 29);
}

#[test]
fn the_pair_settles_without_traffic() {
    let mut pair = Pair::new(device(3), server());
    pair.drive();
    assert!(pair.wire_log.is_empty());
    assert_eq!(pair.device.poll_timeout(), None);
}

#[test]
fn message_1_is_byte_for_byte_what_snow_writes_as_initiator_with_the_same_keys() {
    // The device draws its index, then its ephemeral key, from the RNG.
    let mut rng = support::TestRng::new(42);
    let _index = rand_core::RngCore::next_u32(&mut rng);
    let mut ephemeral = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rng, &mut ephemeral);

    let mut device = device(42);
    let now = kanal_firmware::Instant(0);
    device.poll_mailbox(now).expect("queued");
    let mut buf = [0u8; MAX_DATAGRAM];
    let len = device
        .poll_transmit(now, &mut buf)
        .expect("ok")
        .expect("an initiation");
    let Ok(Datagram::Initiation(init)) = wire::parse(&buf[..len]) else {
        panic!("an initiation");
    };

    let server_public = public_of(&support::SERVER_SECRET);
    let prologue = wire::prologue(init.header);
    let mut snow = snow::Builder::new(
        kanal_firmware::profile::NOISE_PATTERN
            .parse()
            .expect("pattern"),
    )
    .local_private_key(&DEVICE_SECRET)
    .and_then(|b| b.remote_public_key(&server_public))
    .and_then(|b| b.prologue(&prologue))
    .expect("keys")
    .fixed_ephemeral_key_for_testing_only(&ephemeral)
    .build_initiator()
    .expect("an initiator");
    // The payload is the poll frame: variant 2, id 1, cursor 0.
    let mut expected = [0u8; MAX_DATAGRAM];
    let n = snow
        .write_message(&[2, 1, 0], &mut expected)
        .expect("message 1");
    assert_eq!(init.noise, &expected[..n]);
}
