//! Transactions as `kanal.fed.v1` frames (schemas/federation.proto): what
//! the outbox stores is the frame the peer receives, so a transaction is
//! encoded once, in the commit that queues it.
//!
//! Decoding checks the shape only (addresses parse, a body is there); what
//! the origin may say is the engine's to check, against what it holds.

use bytes::Bytes;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::fed;
use prost::Message as _;

use crate::model::{Member, PartyKind, ReceiptKind, Replicated, Submitted, Transaction};
use crate::store::body;

/// Why a received transaction is refused before it reaches the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

/// Transaction `seq` as the frame the peer receives.
pub(crate) fn encode(seq: u64, transaction: &Transaction) -> Bytes {
    let kind = match transaction {
        Transaction::Submit {
            conversation,
            sender,
            what,
        } => fed::transaction::Kind::Submit(fed::Submit {
            conversation: conversation.to_string(),
            sender: sender.to_string(),
            kind: Some(match what {
                Submitted::Create { subject, to } => fed::submit::Kind::Create(fed::Create {
                    subject: subject.clone(),
                    to: to.iter().map(ToString::to_string).collect(),
                }),
                Submitted::Post {
                    client_msg_id,
                    body: content,
                } => fed::submit::Kind::Post(fed::Post {
                    client_msg_id: client_msg_id.clone(),
                    body: Some(body::to_pb(content)),
                }),
                Submitted::Watermark { kind, up_to } => {
                    fed::submit::Kind::Watermark(watermark(None, *kind, *up_to))
                }
            }),
        }),
        Transaction::Replicate { conversation, what } => {
            fed::transaction::Kind::Replicate(fed::Replicate {
                conversation: conversation.to_string(),
                kind: Some(match what {
                    Replicated::Created {
                        subject,
                        created_at_ms,
                        members,
                    } => fed::replicate::Kind::Created(fed::Created {
                        subject: subject.clone(),
                        created_at_ms: *created_at_ms,
                        members: members
                            .iter()
                            .map(|m| fed::Member {
                                address: m.address.to_string(),
                                kind: crate::links::quic::render::party_kind(m.kind) as i32,
                                display_name: m.display_name.clone(),
                            })
                            .collect(),
                    }),
                    Replicated::Posted {
                        seq,
                        sender,
                        client_msg_id,
                        sent_at_ms,
                        body: content,
                    } => fed::replicate::Kind::Posted(fed::Posted {
                        seq: *seq,
                        sender: sender.to_string(),
                        client_msg_id: client_msg_id.clone(),
                        sent_at_ms: *sent_at_ms,
                        body: Some(body::to_pb(content)),
                    }),
                    Replicated::Watermark { party, kind, up_to } => {
                        fed::replicate::Kind::Watermark(watermark(Some(party), *kind, *up_to))
                    }
                }),
            })
        }
    };
    fed::Transaction {
        seq,
        kind: Some(kind),
    }
    .encode_to_vec()
    .into()
}

fn watermark(party: Option<&Address>, kind: ReceiptKind, up_to: u64) -> fed::Watermark {
    fed::Watermark {
        kind: crate::links::quic::render::receipt_kind(kind) as i32,
        up_to_seq: up_to,
        party: party.map(ToString::to_string).unwrap_or_default(),
    }
}

fn receipt_kind(kind: i32) -> Result<ReceiptKind, Malformed> {
    match kanal_proto::pb::ReceiptKind::try_from(kind) {
        Ok(kanal_proto::pb::ReceiptKind::Delivered) => Ok(ReceiptKind::Delivered),
        Ok(kanal_proto::pb::ReceiptKind::Read) => Ok(ReceiptKind::Read),
        _ => Err(malformed(format!("receipt kind {kind}"))),
    }
}

/// The tombstone of transaction `seq`: only its place in the sequence.
pub(crate) fn tombstone(seq: u64) -> Bytes {
    fed::Transaction {
        seq,
        kind: Some(fed::transaction::Kind::Tombstone(fed::Tombstone {})),
    }
    .encode_to_vec()
    .into()
}

/// The content of a transaction as the outbox stored it (`None`: a
/// tombstone).
pub(crate) fn decode_stored(payload: &[u8]) -> Result<Option<Transaction>, Malformed> {
    let frame = fed::Transaction::decode(payload)
        .map_err(|e| malformed(format!("the stored transaction does not decode: {e}")))?;
    decode(frame.kind)
}

/// A received transaction's content (`None`: a tombstone).
pub(crate) fn decode(
    kind: Option<fed::transaction::Kind>,
) -> Result<Option<Transaction>, Malformed> {
    use fed::transaction::Kind;
    Ok(Some(match kind {
        None => return Err(malformed("the transaction has no kind")),
        Some(Kind::Tombstone(_)) => return Ok(None),
        Some(Kind::Submit(submit)) => Transaction::Submit {
            conversation: conversation(&submit.conversation)?,
            sender: address(&submit.sender)?,
            what: match submit.kind {
                None => return Err(malformed("the submission has no kind")),
                Some(fed::submit::Kind::Create(create)) => Submitted::Create {
                    subject: create.subject,
                    to: create
                        .to
                        .iter()
                        .map(|text| address(text))
                        .collect::<Result<_, _>>()?,
                },
                Some(fed::submit::Kind::Post(post)) => Submitted::Post {
                    client_msg_id: post.client_msg_id,
                    body: content(post.body)?,
                },
                Some(fed::submit::Kind::Watermark(mark)) => Submitted::Watermark {
                    kind: receipt_kind(mark.kind)?,
                    up_to: mark.up_to_seq,
                },
            },
        },
        Some(Kind::Replicate(replicate)) => Transaction::Replicate {
            conversation: conversation(&replicate.conversation)?,
            what: match replicate.kind {
                None => return Err(malformed("the replicated change has no kind")),
                Some(fed::replicate::Kind::Created(created)) => Replicated::Created {
                    subject: created.subject,
                    created_at_ms: created.created_at_ms,
                    members: created
                        .members
                        .into_iter()
                        .map(|m| {
                            Ok(Member {
                                address: address(&m.address)?,
                                kind: from_party_kind(m.kind)?,
                                display_name: m.display_name,
                            })
                        })
                        .collect::<Result<_, _>>()?,
                },
                Some(fed::replicate::Kind::Posted(posted)) => Replicated::Posted {
                    seq: posted.seq,
                    sender: address(&posted.sender)?,
                    client_msg_id: posted.client_msg_id,
                    sent_at_ms: posted.sent_at_ms,
                    body: content(posted.body)?,
                },
                Some(fed::replicate::Kind::Watermark(mark)) => Replicated::Watermark {
                    party: address(&mark.party)?,
                    kind: receipt_kind(mark.kind)?,
                    up_to: mark.up_to_seq,
                },
            },
        },
    }))
}

fn malformed(why: impl Into<String>) -> Malformed {
    Malformed(why.into())
}

fn address(text: &str) -> Result<Address, Malformed> {
    text.parse()
        .map_err(|e| malformed(format!("address `{text}`: {e}")))
}

fn conversation(text: &str) -> Result<ConversationId, Malformed> {
    text.parse()
        .map_err(|e| malformed(format!("conversation `{text}`: {e}")))
}

/// A message's body, within its kind's limits (as a client's would be).
fn content(body: Option<kanal_proto::pb::Body>) -> Result<crate::model::Body, Malformed> {
    let body = body
        .and_then(body::from_pb)
        .ok_or_else(|| malformed("the message has no body"))?;
    body.check_limits()
        .map_err(|refused| malformed(format!("the message's body: {}", refused.message)))?;
    Ok(body)
}

fn from_party_kind(value: i32) -> Result<PartyKind, Malformed> {
    use kanal_proto::pb::PartyKind as Pb;
    Ok(match Pb::try_from(value) {
        Ok(Pb::User) => PartyKind::User,
        Ok(Pb::Agent) => PartyKind::Agent,
        Ok(Pb::Bot) => PartyKind::Bot,
        Ok(Pb::Inbox) => PartyKind::Inbox,
        Ok(Pb::Device) => PartyKind::Device,
        _ => return Err(malformed(format!("unknown party kind {value}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Body;

    #[test]
    fn transactions_survive_the_wire() {
        let conversation: ConversationId = "b.test/x1".parse().expect("id");
        let alice: Address = "alice@a.test".parse().expect("address");
        let support: Address = "support@b.test".parse().expect("address");
        let cases = [
            Transaction::Submit {
                conversation: conversation.clone(),
                sender: alice.clone(),
                what: Submitted::Create {
                    subject: "washer".into(),
                    to: vec![support.clone()],
                },
            },
            Transaction::Submit {
                conversation: conversation.clone(),
                sender: alice.clone(),
                what: Submitted::Post {
                    client_msg_id: "m1".into(),
                    body: Body::Text("it leaks".into()),
                },
            },
            Transaction::Replicate {
                conversation: conversation.clone(),
                what: Replicated::Created {
                    subject: "washer".into(),
                    created_at_ms: 7,
                    members: vec![Member {
                        address: support.clone(),
                        kind: PartyKind::Inbox,
                        display_name: "Support".into(),
                    }],
                },
            },
            Transaction::Replicate {
                conversation,
                what: Replicated::Posted {
                    seq: 3,
                    sender: support,
                    client_msg_id: "r".into(),
                    sent_at_ms: 9,
                    body: Body::Text("on our way".into()),
                },
            },
        ];
        for (n, case) in cases.into_iter().enumerate() {
            let bytes = encode(n as u64 + 1, &case);
            let frame = fed::Transaction::decode(bytes).expect("frame");
            assert_eq!(frame.seq, n as u64 + 1);
            assert_eq!(decode(frame.kind), Ok(Some(case)));
        }
        let frame = fed::Transaction::decode(tombstone(4)).expect("frame");
        assert_eq!(decode(frame.kind), Ok(None));
        assert_eq!(
            decode(None),
            Err(Malformed("the transaction has no kind".into()))
        );
    }

    #[test]
    fn a_body_past_its_limits_is_malformed_from_a_peer_as_from_a_client() {
        let conversation: ConversationId = "b.test/x1".parse().expect("id");
        let alice: Address = "alice@a.test".parse().expect("address");
        let long = Body::Text("x".repeat(kanal_proto::limits::MAX_TEXT + 1));
        let submit = Transaction::Submit {
            conversation: conversation.clone(),
            sender: alice.clone(),
            what: Submitted::Post {
                client_msg_id: "m1".into(),
                body: long.clone(),
            },
        };
        let replicate = Transaction::Replicate {
            conversation,
            what: Replicated::Posted {
                seq: 3,
                sender: alice,
                client_msg_id: "m1".into(),
                sent_at_ms: 9,
                body: long,
            },
        };
        for case in [submit, replicate] {
            let frame = fed::Transaction::decode(encode(1, &case)).expect("frame");
            let Err(Malformed(why)) = decode(frame.kind) else {
                panic!("a text past the limit was taken");
            };
            assert!(why.contains("exceeds"), "{why}");
        }
    }
}
