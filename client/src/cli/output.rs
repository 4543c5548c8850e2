//! How `kanal` prints things: one line per item, for people or (`--json`)
//! as one JSON object per line with stable field names.
//!
//! JSON fields: `type` (`message`, `conversation`, `receipt`, `sync_complete`,
//! `typing`, `reconnected`, `sent`, `whoami`), `conversation` (id), `seq`
//! (a message's seq in its conversation), `event_seq` (the account's event
//! seq, for events from `listen`), `sender`, `text`, `client_msg_id`,
//! `sent_at_ms`, and for conversations `subject`, `members`, `last_seq`,
//! `read_up_to`, `delivered_up_to`, `created_at_ms`, `last_activity_ms`;
//! a structured message adds `question` (`kind`, its `choices`, `fields`
//! or `scale`) or `answer` (`question_seq`, and `choice`, `score` and
//! `comment`, or `fields`).

use crate::pb;
use serde_json::{Value, json};

/// A message as one human line: `[localhost/abc #3 12:01:05] alice@localhost: hello`.
pub(crate) fn message_line(message: &pb::Message) -> String {
    format!(
        "[{} #{} {}] {}: {}",
        message.conversation,
        message.seq,
        clock(message.sent_at_ms),
        message.sender,
        shown_body(message.body.as_ref())
    )
}

/// A body for people: its text, then a prompt's replies or a device's
/// diagnostics.
fn shown_body(body: Option<&pb::Body>) -> String {
    let Some(text) = body.and_then(pb::Body::text) else {
        return "<unsupported message body>".into();
    };
    let mut shown = text.to_owned();
    let body = body.expect("it has a text");
    if !body.replies().is_empty() {
        shown.push_str(&format!(" [replies: {}]", body.replies().join(" | ")));
    }
    for diagnostic in body.diagnostics() {
        shown.push_str(&format!(" [{} = {}]", diagnostic.key, diagnostic.value));
    }
    shown.push_str(&super::structured::shown(body));
    shown
}

/// A message as JSON; `event_seq` when it came from the event stream.
pub(crate) fn message_json(message: &pb::Message, event_seq: Option<u64>) -> Value {
    let mut value = json!({
        "type": "message",
        "conversation": message.conversation,
        "seq": message.seq,
        "sender": message.sender,
        "text": message.body.as_ref().and_then(pb::Body::text),
        "client_msg_id": message.client_msg_id,
        "sent_at_ms": message.sent_at_ms,
    });
    if let (Some(body), Some(object)) = (&message.body, value.as_object_mut()) {
        if !body.replies().is_empty() {
            object.insert("replies".into(), json!(body.replies()));
        }
        if !body.diagnostics().is_empty() {
            let diagnostics: serde_json::Map<String, Value> = body
                .diagnostics()
                .iter()
                .map(|d| (d.key.clone(), Value::from(d.value.clone())))
                .collect();
            object.insert("diagnostics".into(), Value::Object(diagnostics));
        }
        if let Some((key, detail)) = super::structured::json_fields(body) {
            object.insert(key.into(), detail);
        }
    }
    if let (Some(seq), Some(object)) = (event_seq, value.as_object_mut()) {
        object.insert("event_seq".into(), seq.into());
    }
    value
}

/// A conversation as one human line.
pub(crate) fn conversation_line(conversation: &pb::Conversation) -> String {
    let unread = conversation
        .last_seq
        .saturating_sub(conversation.read_up_to);
    format!(
        "{}{} with {} — {} message{}, {} unread, last {}",
        conversation.id,
        subject(conversation),
        members(conversation).join(", "),
        conversation.last_seq,
        if conversation.last_seq == 1 { "" } else { "s" },
        unread,
        clock(conversation.last_activity_ms),
    )
}

/// A conversation as JSON.
pub(crate) fn conversation_json(conversation: &pb::Conversation, event_seq: Option<u64>) -> Value {
    let mut value = json!({
        "type": "conversation",
        "conversation": conversation.id,
        "subject": conversation.subject,
        "members": members(conversation),
        "last_seq": conversation.last_seq,
        "read_up_to": conversation.read_up_to,
        "delivered_up_to": conversation.delivered_up_to,
        "created_at_ms": conversation.created_at_ms,
        "last_activity_ms": conversation.last_activity_ms,
    });
    if let (Some(seq), Some(object)) = (event_seq, value.as_object_mut()) {
        object.insert("event_seq".into(), seq.into());
    }
    value
}

/// An event from the stream, for people.
pub(crate) fn event_line(event: &pb::Event) -> String {
    match &event.kind {
        Some(pb::event::Kind::Message(message)) => message_line(message),
        Some(pb::event::Kind::ConversationAdded(conversation)) => format!(
            "[{}] new conversation{} with {}",
            conversation.id,
            subject(conversation),
            members(conversation).join(", ")
        ),
        Some(pb::event::Kind::Receipt(receipt)) => format!(
            "[{} #{}] {} {} up to #{}",
            receipt.conversation,
            receipt.up_to_seq,
            receipt.party,
            receipt_verb(receipt.kind),
            receipt.up_to_seq
        ),
        Some(pb::event::Kind::Desk(entry)) => desk_line(entry),
        Some(pb::event::Kind::DeliveryFailed(failed)) => format!(
            "[{}] NOT DELIVERED to {}: {} ({}: {})",
            failed.conversation,
            failed.server,
            if failed.client_msg_id.is_empty() {
                "the start of the conversation".to_owned()
            } else {
                format!("message {}", failed.client_msg_id)
            },
            failure_name(failed.failure()),
            failed.reason
        ),
        None => format!("(event #{} of an unknown kind)", event.seq),
    }
}

/// An entry of a conversation's desk log, for people.
pub(crate) fn desk_line(entry: &pb::DeskEvent) -> String {
    use pb::desk_event::Kind;
    let actor = if entry.actor.is_empty() {
        "desk"
    } else {
        &entry.actor
    };
    let what = match &entry.kind {
        Some(Kind::Note(text)) => format!("note by {actor}: {text}"),
        Some(Kind::Assigned(assigned)) if assigned.owner.is_empty() => {
            format!("unassigned by {actor}")
        }
        Some(Kind::Assigned(assigned)) => {
            let bot = if assigned.bot { " (bot)" } else { "" };
            format!("assigned to {}{bot} by {actor}", assigned.owner)
        }
        Some(Kind::Queued(queued)) => format!("queued ({})", queue_reason(queued.reason)),
        Some(Kind::Status(status)) => {
            let until = match status.snoozed_until_ms {
                0 => String::new(),
                ms => format!(" until {}", timestamp(ms)),
            };
            format!(
                "{} -> {}{until} by {actor}",
                ticket_status(status.from),
                ticket_status(status.to)
            )
        }
        Some(Kind::Priority(priority)) => {
            format!("priority {} by {actor}", priority_name(*priority))
        }
        Some(Kind::Sla(sla)) => {
            let target = sla_target(sla.target);
            match pb::SlaAlert::try_from(sla.alert) {
                Ok(pb::SlaAlert::Warning) => format!("SLA warning: {target} due soon"),
                Ok(pb::SlaAlert::Breach) => format!("SLA breach: {target}"),
                Ok(pb::SlaAlert::Met) if sla.in_time => {
                    format!(
                        "{target} after {} s of business time",
                        sla.business_ms / 1000
                    )
                }
                Ok(pb::SlaAlert::Met) => format!(
                    "{target} after {} s of business time, past its target",
                    sla.business_ms / 1000
                ),
                _ => format!("SLA: {target}"),
            }
        }
        Some(Kind::Labels(labels)) => format!("labels [{}] by {actor}", labels.labels.join(", ")),
        Some(Kind::Team(team)) => format!("transferred to team {team} by {actor}"),
        Some(Kind::Continues(old)) => format!("continues {old}"),
        Some(Kind::Rating(rating)) => {
            let comment = if rating.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", rating.comment)
            };
            format!(
                "rated {} by {actor}{comment}",
                score_words(rating.scale, rating.score)
            )
        }
        None => "(desk entry of an unknown kind)".to_owned(),
    };
    format!("[{} desk #{}] {what}", entry.conversation, entry.dseq)
}

/// A ticket status's name, as the CLI spells it.
pub(crate) fn ticket_status(status: i32) -> &'static str {
    match pb::TicketStatus::try_from(status) {
        Ok(pb::TicketStatus::Open) => "open",
        Ok(pb::TicketStatus::Pending) => "pending",
        Ok(pb::TicketStatus::Snoozed) => "snoozed",
        Ok(pb::TicketStatus::Resolved) => "resolved",
        _ => "unknown",
    }
}

/// A priority's name, as the CLI spells it.
pub(crate) fn priority_name(priority: i32) -> &'static str {
    match pb::Priority::try_from(priority) {
        Ok(pb::Priority::Low) => "low",
        Ok(pb::Priority::Normal) => "normal",
        Ok(pb::Priority::High) => "high",
        Ok(pb::Priority::Urgent) => "urgent",
        _ => "unknown",
    }
}

/// A rating scale's name, as the CLI spells it.
pub(crate) fn scale_name(scale: i32) -> &'static str {
    match pb::RatingScale::try_from(scale) {
        Ok(pb::RatingScale::Stars) => "stars",
        Ok(pb::RatingScale::Nps) => "nps",
        Ok(pb::RatingScale::Thumbs) => "thumbs",
        _ => "unknown",
    }
}

/// A score in words: "4/5", "9/10", "thumbs up".
fn score_words(scale: i32, score: u32) -> String {
    match pb::RatingScale::try_from(scale) {
        Ok(pb::RatingScale::Stars) => format!("{score}/5"),
        Ok(pb::RatingScale::Nps) => format!("{score}/10"),
        Ok(pb::RatingScale::Thumbs) if score == 0 => "thumbs down".to_owned(),
        Ok(pb::RatingScale::Thumbs) => "thumbs up".to_owned(),
        _ => score.to_string(),
    }
}

fn sla_target(target: i32) -> &'static str {
    match pb::SlaTarget::try_from(target) {
        Ok(pb::SlaTarget::FirstResponse) => "first response",
        Ok(pb::SlaTarget::NextResponse) => "next response",
        Ok(pb::SlaTarget::Resolution) => "resolution",
        _ => "unknown target",
    }
}

fn queue_reason(reason: i32) -> &'static str {
    match pb::QueueReason::try_from(reason) {
        Ok(pb::QueueReason::OwnerOffline) => "its owner went offline",
        Ok(pb::QueueReason::NoAnswer) => "its owner did not answer in time",
        Ok(pb::QueueReason::HandOff) => "the bot handed it off",
        Ok(pb::QueueReason::Transfer) => "transferred",
        Ok(pb::QueueReason::OwnerLeft) => "its owner left the inbox",
        _ => "new",
    }
}

/// An entry of a desk log as JSON: the protobuf message's fields.
pub(crate) fn desk_json(entry: &pb::DeskEvent, event_seq: Option<u64>) -> Value {
    use pb::desk_event::Kind;
    let mut value = json!({
        "type": "desk",
        "conversation": entry.conversation,
        "dseq": entry.dseq,
        "at_ms": entry.at_ms,
        "actor": entry.actor,
    });
    let detail = match &entry.kind {
        Some(Kind::Note(text)) => json!({ "kind": "note", "text": text }),
        Some(Kind::Assigned(a)) => json!({ "kind": "assigned", "owner": a.owner, "bot": a.bot }),
        Some(Kind::Queued(q)) => json!({ "kind": "queued", "reason": queue_reason(q.reason) }),
        Some(Kind::Status(s)) => json!({
            "kind": "status",
            "from": ticket_status(s.from),
            "to": ticket_status(s.to),
            "snoozed_until_ms": s.snoozed_until_ms,
        }),
        Some(Kind::Priority(p)) => json!({ "kind": "priority", "priority": priority_name(*p) }),
        Some(Kind::Sla(s)) => json!({
            "kind": "sla",
            "target": sla_target(s.target),
            "alert": match pb::SlaAlert::try_from(s.alert) {
                Ok(pb::SlaAlert::Warning) => "warning",
                Ok(pb::SlaAlert::Breach) => "breach",
                Ok(pb::SlaAlert::Met) => "met",
                _ => "unknown",
            },
            "in_time": s.in_time,
            "business_ms": s.business_ms,
            "started_at_ms": s.started_at_ms,
        }),
        Some(Kind::Labels(l)) => json!({ "kind": "labels", "labels": l.labels }),
        Some(Kind::Team(team)) => json!({ "kind": "team", "team": team }),
        Some(Kind::Continues(old)) => json!({ "kind": "continues", "continues": old }),
        Some(Kind::Rating(r)) => json!({
            "kind": "rating",
            "question_seq": r.question_seq,
            "resolution_dseq": r.resolution_dseq,
            "resolved_by": r.resolved_by,
            "scale": scale_name(r.scale),
            "score": r.score,
            "comment": r.comment,
        }),
        None => json!({ "kind": "unknown" }),
    };
    if let (Some(object), Value::Object(detail)) = (value.as_object_mut(), detail) {
        object.extend(detail);
        if let Some(seq) = event_seq {
            object.insert("event_seq".into(), seq.into());
        }
    }
    value
}

/// An event from the stream, as JSON.
pub(crate) fn event_json(event: &pb::Event) -> Value {
    match &event.kind {
        Some(pb::event::Kind::Message(message)) => message_json(message, Some(event.seq)),
        Some(pb::event::Kind::ConversationAdded(conversation)) => {
            conversation_json(conversation, Some(event.seq))
        }
        Some(pb::event::Kind::Receipt(receipt)) => json!({
            "type": "receipt",
            "event_seq": event.seq,
            "conversation": receipt.conversation,
            "party": receipt.party,
            "kind": receipt_name(receipt.kind),
            "up_to_seq": receipt.up_to_seq,
        }),
        Some(pb::event::Kind::Desk(entry)) => desk_json(entry, Some(event.seq)),
        Some(pb::event::Kind::DeliveryFailed(failed)) => json!({
            "type": "delivery_failed",
            "event_seq": event.seq,
            "conversation": failed.conversation,
            "client_msg_id": failed.client_msg_id,
            "seq": failed.seq,
            "server": failed.server,
            "failure": failure_name(failed.failure()),
            "reason": failed.reason,
        }),
        None => json!({ "type": "unknown", "event_seq": event.seq }),
    }
}

/// Why a delivery failed, in a word.
fn failure_name(failure: pb::DeliveryFailure) -> &'static str {
    match failure {
        pb::DeliveryFailure::Expired => "expired",
        pb::DeliveryFailure::Refused => "refused",
        pb::DeliveryFailure::Unspecified => "failed",
    }
}

/// A typing signal, for people.
pub(crate) fn typing_line(typing: &pb::Typing) -> String {
    let what = if typing.active {
        "is typing…"
    } else {
        "stopped typing"
    };
    format!("[{}] {} {}", typing.conversation, typing.from, what)
}

/// A typing signal as JSON.
pub(crate) fn typing_json(typing: &pb::Typing) -> Value {
    json!({
        "type": "typing",
        "conversation": typing.conversation,
        "from": typing.from,
        "active": typing.active,
    })
}

/// ` "subject"`, or nothing when there is none.
fn subject(conversation: &pb::Conversation) -> String {
    if conversation.subject.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", conversation.subject)
    }
}

fn members(conversation: &pb::Conversation) -> Vec<&str> {
    conversation
        .members
        .iter()
        .map(|party| party.address.as_str())
        .collect()
}

fn receipt_name(kind: i32) -> &'static str {
    match pb::ReceiptKind::try_from(kind) {
        Ok(pb::ReceiptKind::Delivered) => "delivered",
        Ok(pb::ReceiptKind::Read) => "read",
        _ => "unspecified",
    }
}

fn receipt_verb(kind: i32) -> &'static str {
    match pb::ReceiptKind::try_from(kind) {
        Ok(pb::ReceiptKind::Delivered) => "received",
        Ok(pb::ReceiptKind::Read) => "read",
        _ => "marked",
    }
}

/// A time in milliseconds since the Unix epoch as RFC 3339 (UTC, to the
/// second).
pub(crate) fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// `HH:MM:SS` (UTC) of a time in milliseconds since the Unix epoch.
pub(crate) fn clock(ms: i64) -> String {
    let seconds = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> pb::Message {
        pb::Message {
            conversation: "localhost/abc".into(),
            seq: 3,
            sender: "alice@localhost".into(),
            client_msg_id: "m1".into(),
            // 2024-01-01T12:01:05Z
            sent_at_ms: 1_704_110_465_000,
            body: Some(pb::Body {
                kind: Some(pb::body::Kind::Text("hello".into())),
            }),
        }
    }

    #[test]
    fn message_line_has_the_documented_shape() {
        assert_eq!(
            message_line(&hello()),
            "[localhost/abc #3 12:01:05] alice@localhost: hello"
        );
    }

    #[test]
    fn message_json_has_stable_fields() {
        let value = message_json(&hello(), Some(9));
        assert_eq!(value["type"], "message");
        assert_eq!(value["conversation"], "localhost/abc");
        assert_eq!(value["seq"], 3);
        assert_eq!(value["event_seq"], 9);
        assert_eq!(value["sender"], "alice@localhost");
        assert_eq!(value["text"], "hello");
        assert_eq!(value["sent_at_ms"], 1_704_110_465_000_i64);
        assert!(message_json(&hello(), None).get("event_seq").is_none());
    }

    #[test]
    fn clock_handles_times_before_the_epoch() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(-1000), "23:59:59");
    }
}
