//! What becomes of a transaction another server will not get
//! (FEDERATION.md §5.3): it is kept with what it carried, its sender (a
//! party of this server) is told once with a delivery-failure event in its
//! own log, and the operator may queue it again.

use kanal_proto::address::Address;

use super::{Applied, Engine, Need, Published, Reply};
use crate::core::federation::wire;
use crate::model::{
    DeliveryFailure, Event, EventRef, FailureNotice, LogHead, Replicated, Submitted, Transaction,
    Undelivered, Write,
};

/// Who sent what a transaction carries, and what they are told of it:
/// (sender, client_msg_id, the host's seq).
fn sent_by(transaction: &Transaction) -> Option<(&Address, &str, u64)> {
    match transaction {
        Transaction::Submit {
            sender,
            what: Submitted::Post { client_msg_id, .. },
            ..
        } => Some((sender, client_msg_id, 0)),
        Transaction::Submit {
            sender,
            what: Submitted::Create { .. },
            ..
        } => Some((sender, "", 0)),
        Transaction::Replicate {
            what:
                Replicated::Posted {
                    sender,
                    client_msg_id,
                    seq,
                    ..
                },
            ..
        } => Some((sender, client_msg_id, *seq)),
        // A watermark is nobody's message.
        Transaction::Submit {
            what: Submitted::Watermark { .. },
            ..
        }
        | Transaction::Replicate {
            what: Replicated::Watermark { .. },
            ..
        } => None,
        // The host tells nobody of a start a member's server missed: the
        // messages that follow it fail in their turn, each to its sender.
        Transaction::Replicate {
            what: Replicated::Created { .. },
            ..
        } => None,
    }
}

impl Engine {
    /// What telling the sender of an undelivered transaction needs.
    pub(super) fn undelivered_needs(&self, payload: &[u8], needs: &mut Vec<Need>) {
        let Ok(Some(transaction)) = wire::decode_stored(payload) else {
            return;
        };
        let Some((sender, ..)) = sent_by(&transaction) else {
            return;
        };
        if sender.domain() != self.domain {
            return;
        }
        let conversation = transaction.conversation();
        if !self.conversations.contains_key(conversation) {
            needs.push(Need::Conversation(conversation.clone()));
        }
        match self.parties.get(sender) {
            None => needs.push(Need::Party(sender.clone())),
            Some(Some(party)) if !self.heads.contains_key(&party.id) => {
                needs.push(Need::Head(party.id));
            }
            Some(_) => {}
        }
    }

    /// Keeps `undelivered` and tells its sender, in the same commit.
    pub(super) fn undelivered(
        &mut self,
        now_ms: i64,
        mut undelivered: Undelivered,
        applied: &mut Applied,
    ) -> Reply {
        if let Some((failure, party, key)) = self.failure_of(&undelivered) {
            let event_seq = self.append_own(
                party,
                key,
                EventRef::DeliveryFailed {
                    seq: undelivered.seq,
                },
                now_ms,
                applied,
            );
            applied.published.push(Published {
                event: Event::DeliveryFailed(failure.clone()),
                recipients: vec![(party, event_seq)],
            });
            undelivered.told = Some(FailureNotice {
                party,
                event_seq,
                key,
                failure,
            });
        }
        applied
            .writes
            .push(Write::Undelivered(Box::new(undelivered)));
        Reply::Done
    }

    /// The failure to tell, the party to tell it and the conversation's
    /// key, if the transaction's sender is a party of this server in a
    /// conversation it has.
    fn failure_of(
        &self,
        undelivered: &Undelivered,
    ) -> Option<(
        DeliveryFailure,
        crate::model::PartyId,
        crate::model::ConversationKey,
    )> {
        let transaction = wire::decode_stored(&undelivered.payload).ok()??;
        let (sender, client_msg_id, seq) = sent_by(&transaction)?;
        if sender.domain() != self.domain {
            return None;
        }
        let party = self.parties.get(sender).cloned().flatten()?;
        let state = self.conversations.get(transaction.conversation())?;
        let failure = DeliveryFailure {
            conversation: transaction.conversation().clone(),
            client_msg_id: client_msg_id.to_owned(),
            seq,
            server: undelivered.peer.clone(),
            refused: undelivered.refused,
            reason: undelivered.reason.clone(),
        };
        Some((failure, party.id, state.record.key))
    }

    /// Appends an event of `party`'s own to its log (no inbox carries it);
    /// its seq there.
    fn append_own(
        &mut self,
        party: crate::model::PartyId,
        key: crate::model::ConversationKey,
        what: EventRef,
        now_ms: i64,
        applied: &mut Applied,
    ) -> u64 {
        let log = *self.heads.entry(party).or_default();
        let seq = log.head + 1;
        self.claim_row(party, &log, seq, true);
        applied.writes.push(Write::Event {
            party,
            seq,
            key,
            what,
            at_ms: now_ms,
        });
        self.heads.insert(
            party,
            LogHead {
                head: seq,
                follows: None,
                last_row: seq,
            },
        );
        seq
    }

    /// Queues each of `transactions` toward `peer` again, as new ones in
    /// its sequence; a transaction replayed before (by this engine) or a
    /// tombstone is skipped.
    pub(super) fn replay(
        &mut self,
        now_ms: i64,
        peer: &str,
        transactions: &[(u64, Vec<u8>)],
        applied: &mut Applied,
    ) -> Reply {
        if !self.outbox_heads.contains_key(peer) {
            return Reply::Refused(crate::model::Refusal::internal(
                "the outbox could not be read",
            ));
        }
        for (seq, payload) in transactions {
            if !self.replayed.insert((peer.to_owned(), *seq)) {
                continue;
            }
            let Ok(Some(transaction)) = wire::decode_stored(payload) else {
                continue;
            };
            let as_seq = self.queue(now_ms, peer, &transaction, applied);
            applied.writes.push(Write::Replayed {
                peer: peer.to_owned(),
                seq: *seq,
                as_seq,
            });
        }
        Reply::Done
    }
}
