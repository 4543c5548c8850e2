//! Deep sleep: the snapshot keeps ids, counters, the mailbox cursor and
//! unanswered requests; a restored device starts a new handshake (no
//! counter can repeat under old keys), resends its requests with their
//! ids, and polls its mailbox.

mod support;

use kanal_firmware::profile::wire::{self, Datagram};
use kanal_firmware::{DeviceSession, Instant};
use support::{DEVICE_SECRET, Pair, Seen, TestRng, config, opened_pair, public_of};

/// Saves the device's state as bytes, as firmware would before sleep.
fn save(pair: &Pair) -> Vec<u8> {
    let mut bytes = vec![0u8; support::Session::SAVED_LEN];
    pair.device.save(&mut bytes).expect("fits");
    bytes
}

fn restore(bytes: &[u8], seed: u64, now: Instant) -> support::Session {
    let mut session = DeviceSession::new(config(), TestRng::new(seed));
    session.restore(bytes, now).expect("valid");
    session
}

fn initiation_counters(datagrams: &[Vec<u8>]) -> Vec<u32> {
    datagrams
        .iter()
        .filter_map(|d| match wire::parse(d) {
            Ok(Datagram::Initiation(init)) => Some(init.counter),
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_unanswered_before_sleep_is_resent_with_its_id_after_waking() {
    let (mut pair, conversation) = opened_pair();
    let id = pair
        .device
        .append(pair.now, conversation, "before sleep", None)
        .expect("queued");
    pair.flush_device();
    pair.to_server.clear(); // lost
    let saved = save(&pair);

    pair.now = Instant(3_600_000);
    pair.device = restore(&saved, 99, pair.now);
    assert!(!pair.device.is_established(), "no session keys were saved");
    pair.drive();

    let key = public_of(&DEVICE_SECRET);
    let texts = &pair.server.device(&key).conversations[0].texts;
    assert_eq!(texts.iter().filter(|t| *t == "before sleep").count(), 1);
    assert!(pair.events.contains(&Seen::Accepted { ids: vec![id] }));
    assert_eq!(pair.server.session_count(), 2, "a new session after waking");
    assert_eq!(pair.device.outbox_len(), 0);
}

#[test]
fn waking_polls_the_mailbox_and_the_reply_lights_the_led_state() {
    let (mut pair, conversation) = opened_pair();
    let saved = save(&pair);
    let key = public_of(&DEVICE_SECRET);
    let reply = pair
        .server
        .post(&key, conversation, "A technician comes Monday", &["OK"]);

    pair.now = Instant(7_200_000);
    pair.device = restore(&saved, 7, pair.now);
    assert!(!pair.device.has_unread());
    pair.drive();
    assert!(
        pair.events
            .iter()
            .any(|e| matches!(e, Seen::Message { id, .. } if *id == reply))
    );
    assert!(pair.device.has_unread());
    assert_eq!(pair.device.cursor(), reply);

    // The cursor survives the next sleep: the reply is not delivered again.
    let saved = save(&pair);
    pair.events.clear();
    pair.device = restore(&saved, 8, pair.now);
    pair.drive();
    assert!(
        !pair
            .events
            .iter()
            .any(|e| matches!(e, Seen::Message { .. }))
    );
}

#[test]
fn restoring_one_snapshot_twice_reuses_no_nonce_and_recovers_its_initiation_counter() {
    let (mut pair, conversation) = opened_pair();
    let saved = save(&pair);

    // First wake: a new handshake.
    pair.device = restore(&saved, 11, pair.now);
    pair.flush_device();
    let first: Vec<Vec<u8>> = pair.to_server.iter().cloned().collect();
    pair.drive();
    pair.device
        .append(pair.now, conversation, "after first wake", None)
        .expect("queued");
    pair.drive();

    // A crash before the next save: the same snapshot is restored again.
    pair.events.clear();
    pair.device = restore(&saved, 12, pair.now);
    pair.flush_device();
    let second: Vec<Vec<u8>> = pair.to_server.iter().cloned().collect();
    assert_eq!(initiation_counters(&first), initiation_counters(&second));
    assert_ne!(
        first, second,
        "a fresh ephemeral key: nothing is encrypted twice under one key"
    );
    pair.drive();

    // The server refused the repeated counter without acting, and the device
    // went on above it.
    assert_eq!(
        support::device(1).restore(&second[0][..10], pair.now),
        Err(kanal_firmware::SnapshotError::Invalid),
        "not saved state"
    );
    assert_eq!(pair.server.refusals.stale, 1);
    assert!(pair.device.is_established());
    pair.device
        .append(pair.now, conversation, "after second wake", None)
        .expect("queued");
    pair.drive();
    let key = public_of(&DEVICE_SECRET);
    // Its id had been used in the first wake for another message: the server
    // refused it, and the device renumbered and resent it. Nothing is lost.
    assert!(
        pair.events
            .iter()
            .any(|e| matches!(e, Seen::Renumbered { .. }))
    );
    let texts = &pair.server.device(&key).conversations[0].texts;
    assert_eq!(
        texts[1..],
        [
            "after first wake".to_owned(),
            "after second wake".to_owned()
        ]
    );
    assert_eq!(pair.server.refusals.decrypt, 0);
    assert_eq!(pair.device.outbox_len(), 0);
}
