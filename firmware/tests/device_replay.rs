//! Replay protection on both sides of a session: each transport counter is
//! accepted once, in any order within the window, never when too old.

mod support;

use kanal_firmware::profile::ReplayError;
use kanal_firmware::{DatagramError, Instant};
use support::{Seen, opened_pair};

#[test]
fn a_replayed_server_datagram_is_dropped_by_the_device() {
    let (mut pair, conversation) = opened_pair();
    pair.device
        .append(pair.now, conversation, "one", None)
        .expect("queued");
    pair.flush_device();
    pair.deliver_to_server();
    let (_, ack) = pair.to_device.front().cloned().expect("an ack");
    pair.deliver_to_device();
    assert_eq!(pair.events.len(), 1);

    let replayed = pair.device.handle_datagram(pair.now, &ack);
    assert_eq!(
        replayed,
        Err(DatagramError::Replay(ReplayError::Duplicate { counter: 0 }))
    );
}

#[test]
fn a_replayed_device_datagram_is_not_acted_on_twice() {
    let (mut pair, conversation) = opened_pair();
    pair.device
        .append(pair.now, conversation, "one", None)
        .expect("queued");
    pair.flush_device();
    let datagram = pair.to_server.front().cloned().expect("an append");
    pair.deliver_to_server();
    let acted = pair.server.acted.len();
    assert!(pair.server.handle(pair.device_addr, &datagram).is_empty());
    assert_eq!(pair.server.refusals.replay, 1);
    assert_eq!(pair.server.acted.len(), acted);
}

#[test]
fn out_of_order_datagrams_within_the_window_are_accepted() {
    let (mut pair, conversation) = opened_pair();
    for text in ["a", "b", "c", "d"] {
        pair.device
            .append(pair.now, conversation, text, None)
            .expect("queued");
    }
    pair.flush_device();
    pair.deliver_to_server();
    // Deliver the four acks as 3, 1, 4, 2.
    let acks: Vec<_> = pair.to_device.drain(..).collect();
    for at in [2, 0, 3, 1] {
        pair.to_device.push_back(acks[at].clone());
    }
    pair.deliver_to_device();
    assert_eq!(pair.events.len(), 4);
    assert!(
        pair.events
            .iter()
            .all(|e| matches!(e, Seen::Accepted { .. }))
    );
}

#[test]
fn a_datagram_older_than_the_window_is_refused() {
    let (mut pair, conversation) = opened_pair();
    let mut held = None;
    for round in 0..70 {
        pair.device
            .append(pair.now, conversation, "x", None)
            .expect("queued");
        pair.flush_device();
        pair.deliver_to_server();
        if round == 0 {
            held = pair.to_device.pop_front();
        }
        pair.deliver_to_device();
    }
    let (_, oldest) = held.expect("held back");
    assert_eq!(
        pair.device.handle_datagram(pair.now, &oldest),
        Err(DatagramError::Replay(ReplayError::TooOld { counter: 0 }))
    );
}

#[test]
fn a_tampered_datagram_does_not_authenticate_and_changes_nothing() {
    let (mut pair, conversation) = opened_pair();
    pair.device
        .append(pair.now, conversation, "one", None)
        .expect("queued");
    pair.flush_device();
    pair.deliver_to_server();
    let (_, mut ack) = pair.to_device.pop_front().expect("an ack");
    let last = ack.len() - 1;
    ack[last] ^= 1;
    assert_eq!(
        pair.device.handle_datagram(Instant(0), &ack),
        Err(DatagramError::Authentication)
    );
    // The genuine datagram with the same counter is still accepted.
    ack[last] ^= 1;
    assert!(pair.device.handle_datagram(Instant(0), &ack).is_ok());
    assert_eq!(pair.device.outbox_len(), 0);
}
