//! A device whose address changes (NAT rebinding, a new network) keeps its
//! session: the server finds sessions by index and answers where the last
//! authenticated datagram came from.

mod support;

use kanal_firmware::profile::wire::{self, Datagram};
use support::{Seen, opened_pair};

#[test]
fn datagrams_from_a_new_address_still_belong_to_the_session() {
    let (mut pair, conversation) = opened_pair();
    pair.device_addr = "198.51.100.7:61000".parse().expect("address");
    let id = pair
        .device
        .append(pair.now, conversation, "from elsewhere", None)
        .expect("queued");
    pair.flush_device();
    assert!(
        pair.to_server
            .iter()
            .all(|d| matches!(wire::parse(d), Ok(Datagram::Transport(_)))),
        "no new handshake"
    );
    pair.drive();
    assert!(pair.events.contains(&Seen::Accepted { ids: vec![id] }));
    assert_eq!(pair.server.session_count(), 1);
    let index = *pair.server_indices().first().expect("a session");
    assert_eq!(pair.server.peer_of_session(index), Some(pair.device_addr));
}

#[test]
fn a_forged_datagram_from_another_address_does_not_move_the_session() {
    let (mut pair, conversation) = opened_pair();
    pair.device
        .append(pair.now, conversation, "x", None)
        .expect("queued");
    pair.flush_device();
    let mut forged = pair.to_server.pop_front().expect("a datagram");
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    let attacker = "203.0.113.66:1234".parse().expect("address");
    assert!(pair.server.handle(attacker, &forged).is_empty());
    let index = *pair.server_indices().first().expect("a session");
    assert_eq!(pair.server.peer_of_session(index), Some(pair.device_addr));
}
