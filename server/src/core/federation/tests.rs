//! Delivery between two servers over the simulator's links: lossy,
//! doubling and reordering, on virtual time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::inbox::{Offered, PeerInbox};
use super::outbox::{Outbox, Policy, Told, Transmit};
use crate::sim::{Conditions, Rng, arrivals};

const SECOND: i64 = 1_000;
const DAY: i64 = 24 * 3_600 * SECOND;

/// What travels between the two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Packet {
    /// Sender → receiver: a transaction (its seq; a tombstone carries no
    /// event).
    Transaction(u64, bool),
    /// Receiver → sender: everything up to N is committed.
    Ack(u64),
}

/// One sender's outbox toward one receiver, the link between them, and
/// what the receiver applied, in order.
struct Pair {
    outbox: Outbox,
    inbox: PeerInbox<bool>,
    link: Conditions,
    /// Whether the receiver is up; packets to or from it are lost while
    /// it is down.
    up: bool,
    /// (arrival, packet), earliest first.
    wire: BinaryHeap<Reverse<(i64, Packet)>>,
    applied: Vec<u64>,
    tombstones: Vec<u64>,
    told: Vec<Told>,
    /// When each of `told` was told.
    told_at: Vec<i64>,
    /// When everything queued was first acknowledged.
    finished: Option<i64>,
    sent: u64,
}

impl Pair {
    fn new(policy: Policy, link: Conditions) -> Self {
        Self {
            outbox: Outbox::new(policy, 0),
            inbox: PeerInbox::new(0, policy.window),
            link,
            up: true,
            wire: BinaryHeap::new(),
            applied: Vec::new(),
            tombstones: Vec::new(),
            told: Vec::new(),
            told_at: Vec::new(),
            finished: None,
            sent: 0,
        }
    }

    fn send(&mut self, packet: Packet, now: i64, rng: &mut Rng) {
        if !self.up {
            return;
        }
        for at in arrivals(&self.link, rng, now) {
            self.wire.push(Reverse((at, packet)));
        }
    }

    /// Sends what the outbox lets out now.
    fn flush(&mut self, now: i64, rng: &mut Rng) {
        while let Some(Transmit { seq, tombstone }) = self.outbox.poll_send(now) {
            self.sent += 1;
            self.send(Packet::Transaction(seq, tombstone), now, rng);
        }
    }

    /// The next instant something happens.
    fn next(&self) -> Option<i64> {
        let packet = self.wire.peek().map(|Reverse((at, _))| *at);
        [packet, self.outbox.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Handles everything due at `now`.
    fn step(&mut self, now: i64, rng: &mut Rng) {
        while let Some(Reverse((at, packet))) = self.wire.peek().copied()
            && at <= now
        {
            self.wire.pop();
            match packet {
                Packet::Transaction(seq, tombstone) if self.up => {
                    match self.inbox.offer(seq, tombstone) {
                        Offered::Apply(run) => {
                            for (seq, tombstone) in run {
                                if tombstone {
                                    self.tombstones.push(seq);
                                } else {
                                    self.applied.push(seq);
                                }
                            }
                            // The receiver's commit, then its ack.
                            self.inbox
                                .committed(seq_max(&self.applied, &self.tombstones));
                        }
                        Offered::Duplicate | Offered::Held => {}
                        Offered::OutOfWindow => panic!("the sender kept its window"),
                    }
                    let ack = self.inbox.ack();
                    self.send(Packet::Ack(ack), now, rng);
                }
                Packet::Transaction(..) => {}
                Packet::Ack(up_to) => {
                    self.outbox.ack(up_to, now).expect("acks what was sent");
                }
            }
        }
        if self.outbox.poll_timeout().is_some_and(|at| at <= now) {
            let told = self.outbox.handle_timeout(now, rng.next_u64());
            self.told_at.extend(told.iter().map(|_| now));
            self.told.extend(told);
        }
        self.flush(now, rng);
        if self.finished.is_none()
            && self.outbox.last() > 0
            && self.outbox.acked() == self.outbox.last()
        {
            self.finished = Some(now);
        }
    }
}

fn seq_max(a: &[u64], b: &[u64]) -> u64 {
    a.last()
        .copied()
        .unwrap_or(0)
        .max(b.last().copied().unwrap_or(0))
}

/// Drives `pairs` until `until` or until nothing is left to do; `script`
/// runs before each step with the time and may change the pairs.
fn drive(
    pairs: &mut [Pair],
    rng: &mut Rng,
    until: i64,
    mut script: impl FnMut(i64, &mut [Pair]),
) -> i64 {
    let mut now = 0;
    for _ in 0..10_000_000 {
        script(now, pairs);
        for pair in pairs.iter_mut() {
            pair.step(now, rng);
        }
        let Some(next) = pairs.iter().filter_map(Pair::next).min() else {
            return now;
        };
        if next > until {
            return now;
        }
        now = next.max(now + 1);
    }
    panic!("no end in sight: a livelock");
}

#[test]
fn ten_thousand_transactions_over_a_bad_link_arrive_once_each_in_order() {
    let bad = Conditions {
        loss: 0.10,
        duplicate: 0.10,
        min_delay_ms: 1,
        max_delay_ms: 40,
    };
    let mut rng = Rng::new(7);
    let mut pairs = [Pair::new(Policy::default(), bad)];
    for _ in 0..10_000 {
        pairs[0].outbox.push(0);
    }
    drive(&mut pairs, &mut rng, 3_600 * SECOND, |_, _| {});
    let pair = &pairs[0];
    assert_eq!(
        pair.applied,
        (1..=10_000).collect::<Vec<_>>(),
        "none lost, none doubled, in order"
    );
    assert_eq!(pair.outbox.acked(), 10_000);
    assert!(pair.told.is_empty());
    assert!(
        pair.sent > 10_000,
        "losses were sent again ({} sends)",
        pair.sent
    );
}

#[test]
fn a_peer_down_for_six_days_gets_its_senders_told_once_at_the_horizon_and_catches_up() {
    let mut rng = Rng::new(11);
    let mut pairs = [Pair::new(Policy::default(), Conditions::PERFECT)];
    pairs[0].up = false;
    for _ in 0..100 {
        pairs[0].outbox.push(0);
    }
    drive(&mut pairs, &mut rng, 7 * DAY, |now, pairs| {
        let pair = &mut pairs[0];
        if now >= 6 * DAY && !pair.up {
            pair.up = true;
            // The peer comes back and connects: a sign of life.
            pair.outbox.sign_of_life();
        }
    });
    let pair = &pairs[0];
    assert!(
        pair.told_at.iter().all(|&at| at == 5 * DAY),
        "told at the horizon, not before, not after"
    );
    let expired: Vec<u64> = pair
        .told
        .iter()
        .map(|t| match t {
            Told::Expired(seq) => *seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        expired,
        (1..=100).collect::<Vec<_>>(),
        "once per transaction"
    );
    // Back on day 6: the peer's sequence goes on without a hole, and the
    // expired transactions deliver nothing.
    assert!(pair.applied.is_empty());
    assert_eq!(pair.tombstones, (1..=100).collect::<Vec<_>>());
    assert_eq!(pair.outbox.acked(), 100);
    assert!(pair.outbox.poll_timeout().is_none(), "nothing left to do");
}

#[test]
fn a_dead_peer_does_not_delay_a_healthy_one() {
    let mut rng = Rng::new(3);
    let mut pairs = [
        Pair::new(Policy::default(), Conditions::PERFECT),
        Pair::new(Policy::default(), Conditions::PERFECT),
    ];
    pairs[1].up = false;
    for _ in 0..1_000 {
        pairs[0].outbox.push(0);
        pairs[1].outbox.push(0);
    }
    drive(&mut pairs, &mut rng, 60 * SECOND, |_, _| {});
    assert_eq!(pairs[0].applied.len(), 1_000);
    let done = pairs[0].finished;
    assert!(
        done.is_some_and(|at| at < 100),
        "all delivered in {done:?} ms"
    );
    assert_eq!(pairs[1].outbox.acked(), 0);
    let status = pairs[1].outbox.status(60 * SECOND);
    assert_eq!(status.queued, 1_000);
    assert_eq!(status.oldest_age_ms, 60 * SECOND);
    assert_eq!(
        status.last_error.as_deref(),
        Some("no acknowledgement in time")
    );
    assert!(pairs[1].sent > 1_000, "it kept trying");
}

#[test]
fn retries_back_off_from_under_a_second_to_minutes_and_a_sign_of_life_ends_the_wait() {
    let policy = Policy::default();
    let mut outbox = Outbox::new(policy, 0);
    outbox.push(0);
    let mut now = 0;
    let mut waits = Vec::new();
    for attempt in 0..12 {
        assert!(outbox.poll_send(now).is_some(), "attempt {attempt} sends");
        outbox.failed(now, "connection refused", 999 * attempt);
        let retry = outbox.status(now).next_retry_ms.expect("a retry is due");
        waits.push(retry - now);
        assert!(
            outbox.poll_send(retry - 1).is_none(),
            "not before the retry"
        );
        now = retry;
    }
    assert!(waits[0] <= SECOND, "first retry within a second: {waits:?}");
    assert!(
        waits.windows(2).take(6).all(|w| w[1] >= w[0] / 2 * 3 / 2),
        "grows: {waits:?}"
    );
    assert!(
        waits.iter().all(|&w| w <= policy.max_backoff_ms),
        "capped: {waits:?}"
    );
    assert!(
        waits.last().copied().unwrap_or(0) >= policy.max_backoff_ms / 2,
        "{waits:?}"
    );
    // The peer connects in the middle of a five-minute wait: at once.
    assert!(outbox.poll_send(now).is_some());
    outbox.failed(now, "connection refused", 0);
    outbox.sign_of_life();
    assert_eq!(outbox.poll_send(now + 1).map(|t| t.seq), Some(1));
    assert_eq!(outbox.status(now).next_retry_ms, None);
}

#[test]
fn a_restarted_sender_resumes_at_once_and_a_late_ack_of_an_earlier_try_counts() {
    let mut outbox = Outbox::resume(Policy::default(), 40, [(41, 5), (42, 6), (43, 7)]);
    assert_eq!(outbox.last(), 43);
    let sent: Vec<u64> = std::iter::from_fn(|| outbox.poll_send(100).map(|t| t.seq)).collect();
    assert_eq!(sent, [41, 42, 43], "no new traffic needed to start");
    // The try fails, and its ack arrives afterwards.
    outbox.failed(110, "connection lost", 0);
    assert_eq!(outbox.ack(42, 120), Ok(()));
    assert_eq!(outbox.acked(), 42);
    assert!(outbox.ack(44, 121).is_err(), "never sent");
    assert_eq!(outbox.poll_send(2_000).map(|t| t.seq), Some(43));
}

#[test]
fn a_restarted_sender_takes_the_peers_ready_for_what_it_acknowledged_before_the_crash() {
    // Stored: acknowledged up to 40, rows 41..=45. The peer had committed
    // up to 43 and acknowledged it, but this server was killed before it
    // stored that acknowledgement.
    let mut outbox = Outbox::resume(Policy::default(), 40, (41..=45).map(|seq| (seq, 5)));
    assert!(
        outbox.ack(43, 100).is_err(),
        "an Ack of what was never sent"
    );
    let up_to = outbox.ready(43);
    assert_eq!(up_to, 43);
    assert_eq!(outbox.ack(up_to, 100), Ok(()));
    assert_eq!(outbox.acked(), 43);
    let sent: Vec<u64> = std::iter::from_fn(|| outbox.poll_send(100).map(|t| t.seq)).collect();
    assert_eq!(sent, [44, 45], "the rest, and only the rest");
    assert_eq!(outbox.ready(99), 45, "never beyond what is queued");
}

#[test]
fn a_refused_transaction_goes_to_the_dead_letters_and_its_sender_is_told_once() {
    let mut outbox = Outbox::new(Policy::default(), 0);
    for _ in 0..3 {
        outbox.push(0);
    }
    while outbox.poll_send(1).is_some() {}
    let told = outbox.refused(2, "conversation hosted elsewhere");
    assert_eq!(
        told,
        Some(Told::Refused {
            seq: 2,
            reason: "conversation hosted elsewhere".into()
        })
    );
    assert_eq!(outbox.refused(2, "again"), None, "told once");
    assert_eq!(outbox.refused(9, "unknown"), None);
    assert_eq!(outbox.dead_letters(), [2]);
    assert_eq!(outbox.ack(3, 2), Ok(()));
    assert_eq!(outbox.status(2).dead_letters, 1);
}

#[test]
fn the_receiver_applies_in_order_once_holds_early_ones_and_refuses_beyond_its_window() {
    let mut inbox: PeerInbox<&str> = PeerInbox::new(10, 4);
    assert_eq!(inbox.offer(12, "b"), Offered::Held);
    assert_eq!(inbox.offer(12, "b again"), Offered::Held);
    assert_eq!(inbox.offer(15, "far"), Offered::OutOfWindow);
    assert_eq!(
        inbox.offer(11, "a"),
        Offered::Apply(vec![(11, "a"), (12, "b")])
    );
    assert_eq!(inbox.ack(), 10, "nothing acknowledged before its commit");
    assert_eq!(
        inbox.offer(11, "a"),
        Offered::Duplicate,
        "taken, being applied"
    );
    // The commit failed: the sender's resend is taken again.
    inbox.abandon();
    assert_eq!(inbox.offer(11, "a"), Offered::Apply(vec![(11, "a")]));
    inbox.committed(11);
    assert_eq!(inbox.ack(), 11);
    assert_eq!(inbox.offer(12, "b"), Offered::Apply(vec![(12, "b")]));
    inbox.committed(12);
    assert_eq!(inbox.offer(5, "old"), Offered::Duplicate);
    assert_eq!(inbox.ack(), 12);
}
