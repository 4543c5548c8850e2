//! Retransmission with exponential backoff in virtual time: a request is
//! resent with the same id until answered, and the server acts on it once.

mod support;

use kanal_firmware::profile::wire::{self, Datagram};
use kanal_firmware::{Instant, SendError};
use support::{DEVICE_SECRET, OUTBOX, Pair, Seen, device, opened_pair, public_of, server};

/// Times (ms) at which the device sent datagrams, up to `until`.
fn send_times(pair: &mut Pair, until: u64) -> Vec<u64> {
    let mut times = Vec::new();
    while pair.now.0 <= until {
        let before = pair.wire_log.len();
        pair.flush_device();
        pair.to_server.clear();
        if pair.wire_log.len() > before {
            times.push(pair.now.0);
        }
        match pair.device.poll_timeout() {
            Some(deadline) if deadline > pair.now => pair.now = deadline,
            Some(_) => {}
            None => break,
        }
    }
    times
}

#[test]
fn an_unanswered_request_is_resent_with_doubling_backoff() {
    let (mut pair, conversation) = opened_pair();
    pair.now = Instant(0);
    pair.device
        .append(pair.now, conversation, "hello", None)
        .expect("queued");
    // Everything the device sends is lost; the session is presumed lost after
    // three silent retransmissions and a new handshake begins, itself backed
    // off.
    let times = send_times(&mut pair, 40_000);
    assert_eq!(&times[..4], &[0, 1_000, 3_000, 7_000]);
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|gap| *gap >= 1_000), "{gaps:?}");
}

#[test]
fn the_backoff_is_capped() {
    let mut config = support::config();
    config.retransmit_max_ms = 4_000;
    let mut pair = Pair::new(
        kanal_firmware::DeviceSession::new(config, support::TestRng::new(2)),
        server(),
    );
    pair.device.open(pair.now, "t", "x", &[]).expect("queued");
    let times = send_times(&mut pair, 30_000);
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(&gaps[..3], &[1_000, 2_000, 4_000]);
    assert!(gaps.iter().all(|gap| *gap <= 4_000), "{gaps:?}");
}

#[test]
fn a_lost_answer_makes_the_server_repeat_it_without_acting_twice() {
    let (mut pair, conversation) = opened_pair();
    let id = pair
        .device
        .append(pair.now, conversation, "once", None)
        .expect("queued");
    // The first answer is lost on its way down.
    let mut lost = 0;
    pair.lose_down = Some(Box::new(move |_| {
        lost += 1;
        lost == 1
    }));
    pair.drive();
    let key = public_of(&DEVICE_SECRET);
    assert_eq!(
        pair.server
            .acted
            .iter()
            .filter(|acted| **acted == id)
            .count(),
        1
    );
    assert_eq!(
        pair.server.device(&key).conversations[0]
            .texts
            .iter()
            .filter(|t| *t == "once")
            .count(),
        1
    );
    assert!(pair.events.contains(&Seen::Accepted { ids: vec![id] }));
    assert_eq!(pair.device.outbox_len(), 0);
    // Two sends of the same request went up.
    assert_eq!(pair.wire_log.iter().filter(|(up, _)| *up).count(), 2);
}

#[test]
fn a_lost_initiation_is_replaced_by_a_new_one_carrying_the_same_request() {
    let mut pair = Pair::new(device(5), server());
    pair.lose_up = Some(Box::new(|n| n == 1));
    let id = pair.device.open(pair.now, "t", "x", &[]).expect("queued");
    let mut initiations = Vec::new();
    pair.flush_device();
    pair.now = pair.device.poll_timeout().expect("a retry");
    assert_eq!(pair.now, Instant(1_000));
    pair.flush_device();
    for datagram in &pair.to_server {
        if let Ok(Datagram::Initiation(init)) = wire::parse(datagram) {
            initiations.push((init.sender, init.counter));
        }
    }
    assert_eq!(initiations.len(), 1, "the first was lost");
    assert_eq!(
        initiations[0].1, 2,
        "the retry has the next initiation counter"
    );
    pair.drive();
    assert!(pair.events.contains(&Seen::Opened {
        id,
        conversation: 100
    }));
    assert_eq!(pair.server.acted, vec![id]);
}

#[test]
fn a_full_outbox_is_a_clear_error() {
    let mut pair = Pair::new(device(6), server());
    for n in 0..OUTBOX {
        pair.device
            .open(pair.now, "t", &n.to_string(), &[])
            .expect("room");
    }
    assert_eq!(
        pair.device.open(pair.now, "t", "one too many", &[]),
        Err(SendError::OutboxFull { capacity: OUTBOX })
    );
    pair.drive();
    assert_eq!(pair.device.outbox_len(), 0);
    assert!(pair.device.open(pair.now, "t", "room again", &[]).is_ok());
}

#[test]
fn ten_percent_loss_both_ways_changes_nothing_but_latency() {
    let (mut pair, conversation) = opened_pair();
    let key = public_of(&DEVICE_SECRET);
    pair.lose_up = Some(Box::new(|n| n % 10 == 3));
    pair.lose_down = Some(Box::new(|n| n % 10 == 7));
    let mut posted = Vec::new();
    for round in 0..20u64 {
        let text = format!("update {round}");
        pair.device
            .append(pair.now, conversation, &text, None)
            .expect("room");
        posted.push(
            pair.server
                .post(&key, conversation, &format!("reply {round}"), &[]),
        );
        pair.device.poll_mailbox(pair.now).expect("room");
        pair.drive();
    }
    let texts = &pair.server.device(&key).conversations[0].texts;
    assert_eq!(texts.len(), 21, "every append stored once: {texts:?}");
    let delivered: Vec<u64> = pair
        .events
        .iter()
        .filter_map(|e| match e {
            Seen::Message { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, posted, "every reply delivered once, in order");
    assert_eq!(pair.device.outbox_len(), 0);
}
