//! Rekeying: after a count of datagrams or an age, or when the server
//! stops answering (a restart), the device starts a new handshake; the
//! request that triggered it rides in message 1.

mod support;

use kanal_firmware::profile::wire::{self, Datagram};
use kanal_firmware::{DeviceSession, Instant};
use support::{DEVICE_SECRET, Pair, Seen, TestRng, config, public_of, server};

fn initiations(pair: &Pair) -> usize {
    pair.to_server
        .iter()
        .filter(|d| matches!(wire::parse(d), Ok(Datagram::Initiation(_))))
        .count()
}

fn opened(pair: &mut Pair) -> u64 {
    let id = pair.device.open(pair.now, "t", "x", &[]).expect("queued");
    pair.drive();
    pair.events
        .iter()
        .find_map(|e| match e {
            Seen::Opened {
                id: opened,
                conversation,
            } if *opened == id => Some(*conversation),
            _ => None,
        })
        .expect("opened")
}

#[test]
fn a_session_is_rekeyed_after_a_count_of_datagrams() {
    let mut config = config();
    config.rekey_after_messages = 3;
    let mut pair = Pair::new(DeviceSession::new(config, TestRng::new(1)), server());
    let conversation = opened(&mut pair);
    for n in 0..3 {
        pair.device
            .append(pair.now, conversation, &n.to_string(), None)
            .expect("room");
        pair.flush_device();
        assert_eq!(initiations(&pair), 0, "datagram {n} on the first session");
        pair.drive();
    }
    pair.device
        .append(pair.now, conversation, "rekeyed", None)
        .expect("room");
    pair.flush_device();
    assert_eq!(initiations(&pair), 1);
    pair.drive();
    assert_eq!(pair.server.session_count(), 2);
    let key = public_of(&DEVICE_SECRET);
    assert_eq!(
        pair.server.device(&key).conversations[0]
            .texts
            .last()
            .map(String::as_str),
        Some("rekeyed")
    );
}

#[test]
fn a_session_is_rekeyed_after_an_age() {
    let mut pair = Pair::new(DeviceSession::new(config(), TestRng::new(2)), server());
    let conversation = opened(&mut pair);
    pair.now = Instant(config().rekey_after_ms + 1);
    pair.device
        .append(pair.now, conversation, "later", None)
        .expect("room");
    pair.flush_device();
    assert_eq!(initiations(&pair), 1);
    pair.drive();
    assert_eq!(pair.device.outbox_len(), 0);
}

#[test]
fn a_server_that_forgot_the_session_is_met_with_a_new_handshake() {
    let mut pair = Pair::new(DeviceSession::new(config(), TestRng::new(3)), server());
    let conversation = opened(&mut pair);
    pair.server.forget_sessions();
    let id = pair
        .device
        .append(pair.now, conversation, "after restart", None)
        .expect("room");
    pair.drive();
    assert_eq!(
        pair.server.refusals.unknown_index, 4,
        "the first send and three retransmissions"
    );
    assert!(pair.events.contains(&Seen::Accepted { ids: vec![id] }));
    assert_eq!(pair.server.session_count(), 1);
}
