//! Rendering Kanal's model on the client link: model values to protobuf
//! and back. The engine never sees protobuf; this is the only place that
//! maps one onto the other.

use bytes::{BufMut, Bytes, BytesMut};
use kanal_proto::pb;

use crate::model::{
    Body, ConversationView, Event, Message, Party, PartyKind, Receipt, ReceiptKind, Refusal,
    RefusalCode, Sent, Status, TicketView,
};

/// A party on the wire.
pub(crate) fn party(party: &Party) -> pb::Party {
    pb::Party {
        address: party.address.to_string(),
        kind: party_kind(party.kind) as i32,
        display_name: party.display_name.clone(),
    }
}

/// A party kind on the wire.
pub(crate) fn party_kind(kind: PartyKind) -> pb::PartyKind {
    match kind {
        PartyKind::User => pb::PartyKind::User,
        PartyKind::Agent => pb::PartyKind::Agent,
        PartyKind::Bot => pb::PartyKind::Bot,
        PartyKind::Inbox => pb::PartyKind::Inbox,
        PartyKind::Device => pb::PartyKind::Device,
    }
}

/// A receipt kind on the wire.
pub(crate) fn receipt_kind(kind: ReceiptKind) -> pb::ReceiptKind {
    match kind {
        ReceiptKind::Delivered => pb::ReceiptKind::Delivered,
        ReceiptKind::Read => pb::ReceiptKind::Read,
    }
}

/// A body on the wire.
pub(crate) fn body(body: &Body) -> pb::Body {
    crate::store::body::to_pb(body)
}

/// A body from the wire, if it has a kind this server knows.
pub(crate) fn parse_body(body: pb::Body) -> Option<Body> {
    crate::store::body::from_pb(body)
}

/// A conversation on the wire.
pub(crate) fn conversation(view: &ConversationView) -> pb::Conversation {
    pb::Conversation {
        id: view.id.to_string(),
        subject: view.subject.clone(),
        members: view.members.iter().map(party).collect(),
        last_seq: view.last_seq,
        created_at_ms: view.created_at_ms,
        delivered_up_to: view.delivered_up_to,
        read_up_to: view.read_up_to,
        last_activity_ms: view.last_activity_ms,
    }
}

/// A message on the wire.
pub(crate) fn message(message: &Message) -> pb::Message {
    pb::Message {
        conversation: message.conversation.to_string(),
        seq: message.seq,
        sender: message.sender.to_string(),
        client_msg_id: message.client_msg_id.clone(),
        sent_at_ms: message.sent_at_ms,
        body: Some(body(&message.body)),
    }
}

/// A ticket on the wire.
pub(crate) fn ticket(ticket: &TicketView) -> pb::Ticket {
    use crate::core::desk::wire;
    let (snoozed_until_ms, resolved_at_ms) = match ticket.status {
        Status::Snoozed { until_ms } => (until_ms, 0),
        Status::Resolved { at_ms } => (0, at_ms),
        Status::Open | Status::Pending => (0, 0),
    };
    let (sla_due_ms, sla_target) = match ticket.sla_due {
        Some((at, target)) => (at, wire::target(target)),
        None => (0, pb::SlaTarget::Unspecified),
    };
    pb::Ticket {
        conversation: ticket.conversation.to_string(),
        inbox: ticket.inbox.to_string(),
        status: wire::ticket_status(ticket.status) as i32,
        snoozed_until_ms,
        resolved_at_ms,
        owner: ticket
            .owner
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        owner_is_bot: ticket.owner_is_bot,
        team: ticket.team.clone().unwrap_or_default(),
        priority: wire::priority(ticket.priority) as i32,
        labels: ticket.labels.clone(),
        waiting_since_ms: ticket.waiting_since_ms.unwrap_or(0),
        queued_at_ms: ticket.queued_at_ms.unwrap_or(0),
        continues: ticket
            .continues
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        last_dseq: ticket.last_dseq,
        sla_due_ms,
        sla_target: sla_target as i32,
    }
}

/// A `Sent` on the wire.
pub(crate) fn sent(sent: &Sent) -> pb::Sent {
    pb::Sent {
        conversation: sent.conversation.to_string(),
        seq: sent.seq,
        sent_at_ms: sent.sent_at_ms,
        duplicate: sent.duplicate,
        relayed: sent.relayed,
    }
}

/// An event's `kind` on the wire.
pub(crate) fn event_kind(event: &Event) -> pb::event::Kind {
    match event {
        Event::Message(m) => pb::event::Kind::Message(message(m)),
        Event::ConversationAdded(view) => pb::event::Kind::ConversationAdded(conversation(view)),
        // Stored as the encoded message itself; the engine wrote it, so it
        // decodes (an entry that did not would be rendered empty).
        Event::Desk(record) => pb::event::Kind::Desk(
            <pb::DeskEvent as prost::Message>::decode(&record.payload[..]).unwrap_or_default(),
        ),
        Event::Receipt(Receipt {
            conversation,
            party,
            kind,
            up_to,
        }) => pb::event::Kind::Receipt(pb::Receipt {
            conversation: conversation.to_string(),
            party: party.to_string(),
            kind: receipt_kind(*kind) as i32,
            up_to_seq: *up_to,
        }),
        Event::DeliveryFailed(failure) => pb::event::Kind::DeliveryFailed(failure.to_pb()),
    }
}

/// The encoded `kind` field of `pb::Event` for `event`: what a Push frame
/// carries after [`push_event_header`].
pub(crate) fn encoded_event_kind(event: &Event) -> Bytes {
    let kind = event_kind(event);
    let mut buf = BytesMut::with_capacity(kind.encoded_len());
    kind.encode(&mut buf);
    buf.freeze()
}

/// A refusal's code on the wire.
pub(crate) fn error_code(code: RefusalCode) -> pb::ErrorCode {
    match code {
        RefusalCode::BadRequest => pb::ErrorCode::BadRequest,
        RefusalCode::InvalidAddress => pb::ErrorCode::InvalidAddress,
        RefusalCode::UnsupportedVersion => pb::ErrorCode::UnsupportedVersion,
        RefusalCode::Unauthenticated => pb::ErrorCode::Unauthenticated,
        RefusalCode::RegistrationClosed => pb::ErrorCode::RegistrationClosed,
        RefusalCode::AddressTaken => pb::ErrorCode::AddressTaken,
        RefusalCode::NotFound => pb::ErrorCode::NotFound,
        RefusalCode::TooLarge => pb::ErrorCode::TooLarge,
        RefusalCode::RemoteUnreachable => pb::ErrorCode::RemoteUnreachable,
        RefusalCode::RateLimited => pb::ErrorCode::RateLimited,
        RefusalCode::InvalidInvite => pb::ErrorCode::InvalidInvite,
        RefusalCode::Internal => pb::ErrorCode::Internal,
        RefusalCode::NotAnAgent => pb::ErrorCode::NotAnAgent,
        RefusalCode::InvalidState => pb::ErrorCode::InvalidState,
        RefusalCode::InvalidAnswer => pb::ErrorCode::InvalidAnswer,
        // Only servers are told these (FEDERATION.md §6); a client never is.
        RefusalCode::ForgedOrigin | RefusalCode::OutOfOrder => pb::ErrorCode::BadRequest,
    }
}

/// A refusal on the wire.
pub(crate) fn error(refusal: &Refusal) -> pb::Error {
    pb::Error {
        code: error_code(refusal.code) as i32,
        message: refusal.message.clone(),
        // Rounded up, and never 0 when set: 0 means "no hint".
        retry_after_ms: refusal.retry_after.map_or(0, |wait| {
            u64::try_from(wait.as_micros().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1)
        }),
    }
}

/// The bytes before `kind` in the frame of `Push{event: Event{seq, kind}}`.
/// Writing this header and then `kind` yields the whole frame, so the body is
/// never copied per recipient.
pub(crate) fn push_event_header(seq: u64, kind_len: usize) -> Bytes {
    use prost::encoding::{encode_varint, encoded_len_varint};
    // Event: field 1 (seq, varint) then the kind field's own bytes.
    let event_len = 1 + encoded_len_varint(seq) + kind_len;
    // Push: field 1 (event, length-delimited).
    let push_len = 1 + encoded_len_varint(event_len as u64) + event_len;
    let mut header = BytesMut::with_capacity(24);
    encode_varint(push_len as u64, &mut header);
    header.put_u8(0x0a);
    encode_varint(event_len as u64, &mut header);
    header.put_u8(0x08);
    encode_varint(seq, &mut header);
    header.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_hint_is_rounded_up_to_whole_milliseconds() {
        use std::time::Duration;
        let hint = |wait| error(&Refusal::rate_limited("too fast", wait)).retry_after_ms;
        assert_eq!(hint(Duration::from_micros(200)), 1, "never 0 when set");
        assert_eq!(hint(Duration::from_micros(1500)), 2);
        assert_eq!(hint(Duration::from_millis(20)), 20);
        let plain = error(&Refusal::new(RefusalCode::NotFound, "gone"));
        assert_eq!(plain.retry_after_ms, 0);
    }

    #[test]
    fn header_plus_shared_kind_is_the_prost_frame() {
        let kind = pb::event::Kind::Receipt(pb::Receipt {
            conversation: "localhost/abc".into(),
            party: "bob@localhost".into(),
            kind: pb::ReceiptKind::Read as i32,
            up_to_seq: 9,
        });
        let mut kind_bytes = BytesMut::new();
        kind.encode(&mut kind_bytes);
        for seq in [1, 127, 128, 300_000, u64::MAX] {
            let push = pb::Push {
                kind: Some(pb::push::Kind::Event(pb::Event {
                    seq,
                    kind: Some(kind.clone()),
                })),
            };
            let expected = kanal_proto::frame::encode_to_bytes(&push);
            let mut got = push_event_header(seq, kind_bytes.len()).to_vec();
            got.extend_from_slice(&kind_bytes);
            assert_eq!(got, expected.to_vec(), "seq {seq}");
        }
    }
}
