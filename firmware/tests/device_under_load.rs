//! Refusals: a server under load asks for a cookie before any Diffie-Hellman;
//! unknown keys and garbage are dropped silently.

mod support;

use kanal_firmware::profile::wire::{self, Datagram};
use kanal_firmware::{DeviceConfig, DeviceSession};
use support::{Pair, SERVER_SECRET, Seen, TestRng, device, public_of, server};

#[test]
fn under_load_the_device_answers_a_cookie_with_mac2_and_gets_through() {
    let mut pair = Pair::new(device(4), server());
    pair.server.under_load = true;
    let id = pair.device.open(pair.now, "t", "x", &[]).expect("queued");
    pair.drive();
    assert_eq!(pair.server.refusals.cookie_sent, 1);
    assert!(pair.events.contains(&Seen::Opened {
        id,
        conversation: 100
    }));
    assert_eq!(pair.server.acted, vec![id]);
}

#[test]
fn an_initiation_with_cookie_is_type_5_with_both_macs() {
    let mut pair = Pair::new(device(4), server());
    pair.server.under_load = true;
    pair.device.open(pair.now, "t", "x", &[]).expect("queued");
    pair.flush_device();
    pair.deliver_to_server();
    pair.deliver_to_device();
    pair.now = pair.device.poll_timeout().expect("retry");
    pair.flush_device();
    let retry = pair.to_server.front().expect("a retry");
    let Ok(Datagram::Initiation(init)) = wire::parse(retry) else {
        panic!("an initiation");
    };
    assert_eq!(retry[0], 5);
    assert!(init.mac2.is_some());
}

#[test]
fn an_unknown_device_key_gets_no_answer() {
    let stranger = DeviceSession::<_, 2>::new(
        DeviceConfig::new([0x77; 32], public_of(&SERVER_SECRET)),
        TestRng::new(1),
    );
    let mut stranger = stranger;
    let mut server = server();
    stranger
        .open(kanal_firmware::Instant(0), "t", "x", &[])
        .expect("queued");
    let mut buf = [0u8; 512];
    let len = stranger
        .poll_transmit(kanal_firmware::Instant(0), &mut buf)
        .expect("ok")
        .expect("an initiation");
    let from = "192.0.2.9:9".parse().expect("address");
    assert!(server.handle(from, &buf[..len]).is_empty());
    assert_eq!(server.refusals.unknown_key, 1);
    assert!(server.acted.is_empty());
}

#[test]
fn garbage_and_a_wrong_mac1_are_refused_before_any_handshake() {
    let mut server = server();
    let from = "192.0.2.9:9".parse().expect("address");
    assert!(server.handle(from, &[0xff; 200]).is_empty());
    assert!(server.handle(from, &[]).is_empty());
    assert_eq!(server.refusals.wire, 2);

    let mut device = device(9);
    device
        .open(kanal_firmware::Instant(0), "t", "x", &[])
        .expect("queued");
    let mut buf = [0u8; 512];
    let len = device
        .poll_transmit(kanal_firmware::Instant(0), &mut buf)
        .expect("ok")
        .expect("an initiation");
    buf[len - 1] ^= 1; // mac1
    assert!(server.handle(from, &buf[..len]).is_empty());
    assert_eq!(server.refusals.mac, 1);
    assert_eq!(server.refusals.handshake, 0);
}
