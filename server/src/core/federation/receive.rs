//! The receiving side's glue between the wire and the writer: a received
//! frame becomes the command that applies it (or consumes it, when it is
//! malformed), and the writer's reply becomes what the peer is told (a
//! refusal, or that nothing was stored and it must send again). The
//! `kanal-fed/1` link and the simulator both drive a [`PeerInbox`] with
//! these, so a frame means the same thing to both.
//!
//! [`PeerInbox`]: super::inbox::PeerInbox

use bytes::Bytes;
use kanal_proto::fed;
use prost::Message as _;

use super::wire::{self, Malformed};
use crate::core::engine::{Command, Reply, federated_command};
use crate::model::{RefusalCode, Transaction};

/// A received transaction's content, or why it cannot be applied.
pub(crate) type Received = Result<Option<Transaction>, Malformed>;

/// A frame that is not a `kanal.fed.v1.Transaction` at all: the connection
/// is closed (code `0x1`, FEDERATION.md §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the frame is not a transaction: {0}")]
pub(crate) struct Undecodable(pub(crate) String);

/// What the writer's reply to a received transaction means for the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Committed (applied, or refused for good and consumed): a later
    /// acknowledgement covers it; refuse it first when this says so.
    Consumed(Option<fed::Refuse>),
    /// Nothing was stored: the peer must send it again, so the receiver
    /// takes it again ([`PeerInbox::abandon`]) and ends the connection
    /// (code `0x3`).
    ///
    /// [`PeerInbox::abandon`]: super::inbox::PeerInbox::abandon
    NotStored(String),
}

/// A transaction frame's seq and content.
pub(crate) fn frame(bytes: Bytes) -> Result<(u64, Received), Undecodable> {
    let transaction = fed::Transaction::decode(bytes).map_err(|e| Undecodable(e.to_string()))?;
    Ok((transaction.seq, wire::decode(transaction.kind)))
}

/// The command that applies transaction `seq` from `origin`; a malformed
/// one is consumed as a tombstone, and why is returned for the refusal.
pub(crate) fn command(origin: &str, seq: u64, received: Received) -> (Command, Option<Malformed>) {
    match received {
        Ok(transaction) => (federated_command(origin, seq, transaction), None),
        Err(why) => (federated_command(origin, seq, None), Some(why)),
    }
}

/// What to tell the peer of transaction `seq`, given why it was malformed
/// (see [`command`]) and the writer's reply to its command.
pub(crate) fn answer(seq: u64, malformed: Option<Malformed>, reply: &Reply) -> Answer {
    match reply {
        Reply::Refused(r) if r.code == RefusalCode::Internal => {
            Answer::NotStored(r.message.clone())
        }
        Reply::Refused(r) => Answer::Consumed(Some(refuse(seq, fed_code(r.code), &r.message))),
        _ => Answer::Consumed(
            malformed.map(|Malformed(why)| refuse(seq, fed::FedCode::FedBadTransaction, &why)),
        ),
    }
}

/// The refusal of transaction `seq`.
pub(crate) fn refuse(seq: u64, code: fed::FedCode, reason: &str) -> fed::Refuse {
    fed::Refuse {
        seq,
        code: code as u32,
        reason: reason.to_owned(),
    }
}

/// The federation code of a refusal the engine gave.
pub(crate) fn fed_code(code: RefusalCode) -> fed::FedCode {
    match code {
        RefusalCode::ForgedOrigin => fed::FedCode::FedForgedOrigin,
        RefusalCode::OutOfOrder => fed::FedCode::FedOutOfOrder,
        RefusalCode::NotFound => fed::FedCode::FedNotFound,
        RefusalCode::NotAnAgent | RefusalCode::InvalidState | RefusalCode::Unauthenticated => {
            fed::FedCode::FedNotAllowed
        }
        _ => fed::FedCode::FedBadTransaction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Refusal;

    #[test]
    fn a_frame_becomes_its_command_and_a_malformed_one_a_tombstone_refused_as_bad() {
        let (seq, received) = frame(wire::tombstone(7)).expect("a transaction");
        assert_eq!(seq, 7);
        let (applied, malformed) = command("a.test", seq, received);
        assert!(
            matches!(&applied, Command::Federated { origin, seq: 7, transaction: None } if origin == "a.test"),
            "{applied:?}"
        );
        assert_eq!(malformed, None);

        let bare = fed::Transaction { seq: 8, kind: None }.encode_to_vec();
        let (seq, received) = frame(bare.into()).expect("a transaction");
        let (applied, malformed) = command("a.test", seq, received);
        assert!(
            matches!(
                &applied,
                Command::Federated {
                    seq: 8,
                    transaction: None,
                    ..
                }
            ),
            "consumed as a tombstone: {applied:?}"
        );
        let answer = answer(seq, malformed, &Reply::Done);
        assert_eq!(
            answer,
            Answer::Consumed(Some(refuse(
                8,
                fed::FedCode::FedBadTransaction,
                "the transaction has no kind"
            )))
        );
        assert!(frame(Bytes::from_static(&[0xff, 0xff])).is_err());
    }

    #[test]
    fn a_refusal_is_told_with_its_code_and_a_failure_to_store_asks_for_the_transaction_again() {
        assert_eq!(answer(3, None, &Reply::Done), Answer::Consumed(None));
        let forged = Reply::Refused(Refusal::new(RefusalCode::ForgedOrigin, "not yours"));
        assert_eq!(
            answer(3, None, &forged),
            Answer::Consumed(Some(refuse(3, fed::FedCode::FedForgedOrigin, "not yours")))
        );
        let failed = Reply::Refused(Refusal::internal("disk full"));
        assert_eq!(
            answer(3, Some(Malformed("no kind".into())), &failed),
            Answer::NotStored("disk full".into()),
            "not consumed, even when malformed: it is refused when it is"
        );
    }
}
