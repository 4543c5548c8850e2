//! What the sending side does with a transaction the [`Outbox`] gave up
//! (FEDERATION.md §5.3): the command that keeps it, with what it carried,
//! and tells its sender, once, through the writer. The `kanal-fed/1` link
//! and the simulator both turn a [`Told`] into it here, so the reason a
//! sender reads is the same whoever drives the outbox.
//!
//! [`Outbox`]: super::outbox::Outbox

use super::outbox::Told;
use crate::core::engine::Command;

/// The command that keeps transaction `told` toward `peer` and tells its
/// sender: `payload` is the frame as the outbox stored it, queued at
/// `enqueued_at_ms`; `horizon_ms` is how long delivery was tried.
pub(crate) fn command(
    peer: &str,
    told: Told,
    horizon_ms: i64,
    payload: Vec<u8>,
    enqueued_at_ms: i64,
) -> Command {
    let (seq, refused, reason) = match told {
        Told::Expired(seq) => (
            seq,
            false,
            format!("{peer} could not be reached for {}", waited(horizon_ms)),
        ),
        Told::Refused { seq, reason } => (seq, true, reason),
    };
    Command::Undelivered {
        peer: peer.to_owned(),
        seq,
        refused,
        reason,
        payload,
        enqueued_at_ms,
    }
}

/// The seq of the transaction `told` is about.
pub(crate) fn seq(told: &Told) -> u64 {
    match told {
        Told::Expired(seq) | Told::Refused { seq, .. } => *seq,
    }
}

/// A horizon for people: in hours, or seconds below an hour.
pub(crate) fn waited(ms: i64) -> String {
    if ms >= 3_600_000 {
        format!("{} hours", ms / 3_600_000)
    } else {
        format!("{} seconds", ms / 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_transaction_says_how_long_the_peer_was_tried_and_a_refused_one_why() {
        let expired = command("b.test", Told::Expired(4), 5 * 24 * 3_600_000, vec![1], 9);
        assert!(
            matches!(&expired, Command::Undelivered { peer, seq: 4, refused: false, reason, payload, enqueued_at_ms: 9 }
                if peer == "b.test" && reason == "b.test could not be reached for 120 hours" && payload == &[1]),
            "{expired:?}"
        );
        let refused = Told::Refused {
            seq: 5,
            reason: "no party x@b.test".into(),
        };
        assert_eq!(seq(&refused), 5);
        let refused = command("b.test", refused, 30_000, Vec::new(), 0);
        assert!(
            matches!(&refused, Command::Undelivered { seq: 5, refused: true, reason, .. } if reason == "no party x@b.test"),
            "{refused:?}"
        );
        assert_eq!(waited(30_000), "30 seconds");
    }
}
