//! Conversions between model values and the columns of Kanal's SQL schema,
//! shared by the SQL backends (SQLite and PostgreSQL): both store the same
//! numbers and texts and read them back into the same values, decided here
//! once.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use kanal_proto::address::{Address, ConversationId};

use super::{StoreError, StoreResult, body};
use crate::model::{
    Availability, DeskEntry, DeskRecord, Owner, Priority, Status, StoredSeat, StoredTicket,
};
use crate::model::{
    ConversationRecord, ConversationView, DeliveryFailure, Device, Event, FailureNotice, Invite,
    LogHead, Message, NewDevice, NewInvite, OutboxRow, Party, PartyId, PartyKind, PeerRecord,
    Receipt, ReceiptKind, Session, StoredSend, Undelivered,
};

/// Event kinds as stored in `events.kind` and `inbox_events.kind`.
pub(crate) mod event_kind {
    /// A message; `ref_seq` is its seq.
    pub(crate) const MESSAGE: i64 = 1;
    /// The party was added to the conversation; `ref_seq` is the
    /// conversation's last seq at that moment.
    pub(crate) const CONVERSATION_ADDED: i64 = 2;
    /// `actor`'s delivered watermark moved to `ref_seq`.
    pub(crate) const DELIVERED: i64 = 3;
    /// `actor`'s read watermark moved to `ref_seq`.
    pub(crate) const READ: i64 = 4;
    /// An entry of the conversation's desk log; `ref_seq` is its dseq.
    pub(crate) const DESK: i64 = 5;
    /// Something the party sent will not reach another server; `ref_seq`
    /// is the transaction's seq toward it, whose `undelivered` row holds
    /// what the event shows.
    pub(crate) const DELIVERY_FAILED: i64 = 6;
}

/// The current time, ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A seq as the database stores it (a signed 64-bit integer).
pub(crate) fn seq_to_db(seq: u64) -> StoreResult<i64> {
    i64::try_from(seq).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// A stored seq back as the model's unsigned seq.
pub(crate) fn seq_from_db(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} = {value}")))
}

/// A stored party kind.
pub(crate) fn party_kind(value: i64) -> StoreResult<PartyKind> {
    PartyKind::from_i64(value).ok_or_else(|| StoreError::Corrupt(format!("party kind {value}")))
}

/// A stored address.
pub(crate) fn address(text: &str) -> StoreResult<Address> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("address `{text}`: {e}")))
}

/// A stored conversation id.
pub(crate) fn conversation_id(text: &str) -> StoreResult<ConversationId> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("conversation id `{text}`: {e}")))
}

// --- parties and sessions -------------------------------------------------------

/// Columns `id, address, kind, display_name` of `parties`.
pub(crate) type PartyColumns = (i64, String, i64, String);

/// A party from its `parties` columns.
pub(crate) fn party((id, address_text, kind, display_name): PartyColumns) -> StoreResult<Party> {
    Ok(Party {
        id,
        address: address(&address_text)?,
        kind: party_kind(kind)?,
        display_name,
    })
}

/// The columns of [`PartyColumns`] from an outer join: all of them for a
/// member, none for a conversation without members.
type MemberColumns = (Option<i64>, Option<String>, Option<i64>, Option<String>);

/// The member a row of an outer join names, if any.
fn member(columns: MemberColumns) -> StoreResult<Option<Party>> {
    match columns {
        (Some(id), Some(address), Some(kind), Some(display_name)) => {
            party((id, address, kind, display_name)).map(Some)
        }
        _ => Ok(None),
    }
}

/// Columns `id, party, acked_seq` of `sessions`.
pub(crate) type SessionColumns = (i64, PartyId, i64);

/// A session from its `sessions` columns.
pub(crate) fn session((id, party, acked_seq): SessionColumns) -> StoreResult<Session> {
    Ok(Session {
        id,
        party,
        acked_seq: seq_from_db(acked_seq, "sessions.acked_seq")?,
    })
}

/// Columns `id, uses_left, expires_at_ms, created_at_ms, note` of `invites`.
pub(crate) type InviteColumns = (i64, i64, Option<i64>, i64, String);

/// An invite from its `invites` columns.
pub(crate) fn invite((id, uses_left, expires_at_ms, created_at_ms, note): InviteColumns) -> Invite {
    Invite {
        id,
        uses_left: u32::try_from(uses_left).unwrap_or(0),
        expires_at_ms,
        created_at_ms,
        note,
    }
}

/// A `devices` row: key, party, serial, model, inbox, owner, revoked_at_ms,
/// last_initiation, added_at_ms.
pub(crate) type DeviceColumns = (
    Vec<u8>,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

/// A stored device.
pub(crate) fn device(
    (key, party, serial, model, inbox, owner, revoked_at_ms, last_initiation, added_at_ms): DeviceColumns,
) -> StoreResult<Device> {
    Ok(Device {
        key: key
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("the key of device {serial}")))?,
        party,
        serial,
        model,
        inbox,
        owner,
        revoked_at_ms,
        last_initiation: u32::try_from(last_initiation)
            .map_err(|_| StoreError::Corrupt(format!("initiation counter {last_initiation}")))?,
        added_at_ms,
    })
}

/// The device stored for `device` at `now_ms`.
pub(crate) fn added_device(device: NewDevice, now_ms: i64) -> Device {
    Device {
        key: device.key,
        party: device.party,
        serial: device.serial,
        model: device.model,
        inbox: device.inbox,
        owner: device.owner,
        revoked_at_ms: None,
        last_initiation: 0,
        added_at_ms: now_ms,
    }
}

/// The refusal of a device whose key or serial is registered.
pub(crate) fn device_taken(serial: &str) -> StoreError {
    StoreError::DeviceTaken(format!(
        "a device with serial {serial} or with its key is registered already"
    ))
}

/// The invite stored as `id` for `invite`, issued at `now_ms`.
pub(crate) fn issued_invite(id: i64, invite: &NewInvite, now_ms: i64) -> Invite {
    Invite {
        id,
        uses_left: invite.uses,
        expires_at_ms: invite.expires_at_ms,
        created_at_ms: now_ms,
        note: invite.note.clone(),
    }
}

// --- conversations and messages -------------------------------------------------

/// A conversation's columns `key, subject, created_at_ms, last_seq,
/// last_activity_ms` (of `conversations_now`) and one member's
/// [`PartyColumns`] from an outer join, as [`record`] folds them.
pub(crate) type RecordColumns = (
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// Conversation `id` from its rows (one per member, in the order they
/// joined); `None` for no rows.
pub(crate) fn record(
    id: &ConversationId,
    rows: Vec<RecordColumns>,
) -> StoreResult<Option<ConversationRecord>> {
    let mut record: Option<ConversationRecord> = None;
    for (key, subject, created_at_ms, last_seq, last_activity_ms, pid, paddr, pkind, pname) in rows
    {
        let record = match &mut record {
            Some(record) => record,
            None => record.insert(ConversationRecord {
                key,
                id: id.clone(),
                subject,
                created_at_ms,
                last_seq: seq_from_db(last_seq, "conversations.last_seq")?,
                last_activity_ms,
                members: Vec::new(),
            }),
        };
        record.members.extend(member((pid, paddr, pkind, pname))?);
    }
    Ok(record)
}

/// A conversation's columns `key, id, subject, created_at_ms, last_seq,
/// last_activity_ms`, the viewer's delivered and read watermarks, and one
/// member's [`PartyColumns`] from an outer join.
pub(crate) type ViewColumns = (
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// Folds rows of (conversation, member), grouped by conversation, into
/// views.
pub(crate) fn group_views(rows: Vec<ViewColumns>) -> StoreResult<Vec<ConversationView>> {
    let mut out: Vec<ConversationView> = Vec::new();
    let mut current_key = None;
    for row in rows {
        let (key, id, subject, created_at_ms, last_seq, last_activity_ms, delivered, read) =
            (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
        if current_key != Some(key) {
            current_key = Some(key);
            out.push(ConversationView {
                id: conversation_id(&id)?,
                subject,
                members: Vec::new(),
                last_seq: seq_from_db(last_seq, "conversations.last_seq")?,
                created_at_ms,
                delivered_up_to: seq_from_db(delivered, "watermarks.up_to")?,
                read_up_to: seq_from_db(read, "watermarks.up_to")?,
                last_activity_ms,
            });
        }
        if let (Some(member), Some(view)) =
            (member((row.8, row.9, row.10, row.11))?, out.last_mut())
        {
            view.members.push(member);
        }
    }
    Ok(out)
}

/// Columns conversation id, `seq`, sender address, `client_msg_id`,
/// `sent_at_ms` and `body` of a message.
pub(crate) type MessageColumns = (String, i64, String, String, i64, Vec<u8>);

/// A message from its columns.
pub(crate) fn message(
    (conversation, seq, sender, client_msg_id, sent_at_ms, body): MessageColumns,
) -> StoreResult<Message> {
    Ok(Message {
        conversation: conversation_id(&conversation)?,
        seq: seq_from_db(seq, "messages.seq")?,
        sender: address(&sender)?,
        client_msg_id,
        sent_at_ms,
        body: body::decode(&body)?,
    })
}

/// A stored send from its `seq` and `sent_at_ms`.
pub(crate) fn stored_send(seq: i64, sent_at_ms: i64) -> StoreResult<StoredSend> {
    Ok(StoredSend {
        seq: seq_from_db(seq, "messages.seq")?,
        sent_at_ms,
    })
}

// --- federation --------------------------------------------------------------------

/// Columns `seq, payload, enqueued_at_ms` of `outbox`.
pub(crate) type OutboxColumns = (i64, Vec<u8>, i64);

/// An outbox row toward `peer` from its `outbox` columns.
pub(crate) fn outbox_row(
    peer: &str,
    (seq, payload, enqueued_at_ms): OutboxColumns,
) -> StoreResult<OutboxRow> {
    Ok(OutboxRow {
        peer: peer.to_owned(),
        seq: seq_from_db(seq, "outbox.seq")?,
        payload: payload.into(),
        enqueued_at_ms,
    })
}

/// Columns `seq, refused, reason, payload, enqueued_at_ms, failed_at_ms,
/// party, event_seq, key, notice, replayed_as` of `undelivered`, and the id
/// of the conversation `key`.
pub(crate) type UndeliveredColumns = (
    i64,
    i64,
    String,
    Vec<u8>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<String>,
);

/// An undelivered transaction toward `peer` from its columns.
pub(crate) fn undelivered(peer: &str, columns: UndeliveredColumns) -> StoreResult<Undelivered> {
    let (
        seq,
        refused,
        reason,
        payload,
        enqueued_at_ms,
        failed_at_ms,
        party,
        event_seq,
        key,
        notice,
        replayed_as,
        conversation,
    ) = columns;
    let seq = seq_from_db(seq, "undelivered.seq")?;
    let told = match (party, event_seq, key, notice, conversation) {
        (Some(party), Some(event_seq), Some(key), Some(notice), Some(conversation)) => {
            let failure = DeliveryFailure::decode(conversation_id(&conversation)?, &notice)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("undelivered {peer}/{seq}: its notice"))
                })?;
            Some(FailureNotice {
                party,
                event_seq: seq_from_db(event_seq, "undelivered.event_seq")?,
                key,
                failure,
            })
        }
        _ => None,
    };
    Ok(Undelivered {
        peer: peer.to_owned(),
        seq,
        refused: refused != 0,
        reason,
        payload: payload.into(),
        enqueued_at_ms,
        failed_at_ms,
        told,
        replayed_as: replayed_as
            .map(|s| seq_from_db(s, "undelivered.replayed_as"))
            .transpose()?,
    })
}

/// Columns `domain, address, fingerprint, added_at_ms` of `peers`.
pub(crate) type PeerColumns = (String, String, String, i64);

/// A peer server from its `peers` columns.
pub(crate) fn peer_record((domain, address, fingerprint, added_at_ms): PeerColumns) -> PeerRecord {
    PeerRecord {
        domain,
        address,
        fingerprint,
        added_at_ms,
    }
}

// --- the service desk ------------------------------------------------------------

/// Columns `key, inbox, status, status_at_ms, owner_kind, owner, priority,
/// last_dseq, updated_at_ms, state` of `tickets`.
pub(crate) type TicketColumns = (
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
    i64,
    i64,
    String,
);

/// A ticket from its `tickets` columns.
pub(crate) fn ticket(
    (
        key,
        inbox,
        status,
        status_at_ms,
        owner_kind,
        owner,
        priority,
        last_dseq,
        updated_at_ms,
        state,
    ): TicketColumns,
) -> StoreResult<StoredTicket> {
    let corrupt = |what: String| StoreError::Corrupt(format!("ticket {key}: {what}"));
    Ok(StoredTicket {
        key,
        inbox,
        status: Status::from_i64(status, status_at_ms)
            .ok_or_else(|| corrupt(format!("status {status} at {status_at_ms:?}")))?,
        owner: Owner::from_i64(owner_kind, owner)
            .ok_or_else(|| corrupt(format!("owner kind {owner_kind} with id {owner:?}")))?,
        priority: Priority::from_i64(priority)
            .ok_or_else(|| corrupt(format!("priority {priority}")))?,
        last_dseq: seq_from_db(last_dseq, "tickets.last_dseq")?,
        updated_at_ms,
        state,
    })
}

/// Columns `inbox, agent, availability, capacity, last_assigned_ms` of
/// `seats`.
pub(crate) type SeatColumns = (i64, i64, i64, Option<i64>, i64);

/// A seat from its `seats` columns.
pub(crate) fn seat(
    (inbox, agent, availability, capacity, last_assigned_ms): SeatColumns,
) -> StoreResult<StoredSeat> {
    let corrupt = |what: String| StoreError::Corrupt(format!("seat {inbox}/{agent}: {what}"));
    Ok(StoredSeat {
        inbox,
        agent,
        availability: Availability::from_i64(availability)
            .ok_or_else(|| corrupt(format!("availability {availability}")))?,
        capacity: capacity
            .map(|c| u32::try_from(c).map_err(|_| corrupt(format!("capacity {c}"))))
            .transpose()?,
        last_assigned_ms,
    })
}

/// Columns `key, dseq, inbox, at_ms, actor, client_note_id, payload` of
/// `desk_entries`.
pub(crate) type DeskEntryColumns = (i64, i64, i64, i64, Option<i64>, String, Vec<u8>);

/// A desk entry from its `desk_entries` columns.
pub(crate) fn desk_entry(
    (key, dseq, inbox, at_ms, actor, client_note_id, payload): DeskEntryColumns,
) -> StoreResult<DeskEntry> {
    Ok(DeskEntry {
        key,
        dseq: seq_from_db(dseq, "desk_entries.dseq")?,
        inbox,
        at_ms,
        actor,
        client_note_id,
        payload: payload.into(),
    })
}

// --- logs -------------------------------------------------------------------------

/// Where a party's log ends, as one statement reads it: the highest seq of
/// its own events (0 if none) and, if its last row is a span after them,
/// the span's `seq`, `inbox` and `iseq` and the inbox log's head.
pub(crate) type LogHeadColumns = (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// `party`'s [`LogHead`] from its [`LogHeadColumns`]: a last span runs to the
/// end of the inbox's log.
pub(crate) fn log_head(
    party: PartyId,
    (own, span_seq, inbox, iseq, inbox_head): LogHeadColumns,
) -> StoreResult<LogHead> {
    let own = seq_from_db(own, "events.seq")?;
    let (Some(start), Some(inbox), Some(iseq), Some(inbox_head)) =
        (span_seq, inbox, iseq, inbox_head)
    else {
        return Ok(LogHead {
            head: own,
            follows: None,
            last_row: own,
        });
    };
    let start = seq_from_db(start, "event_spans.seq")?;
    let iseq = seq_from_db(iseq, "event_spans.iseq")?;
    let inbox_head = seq_from_db(inbox_head, "inbox_events.iseq")?;
    if inbox_head < iseq {
        return Err(StoreError::Corrupt(format!(
            "span {party}/{start} refers to event {iseq} of inbox {inbox}, which ends at {inbox_head}"
        )));
    }
    Ok(LogHead {
        head: start + (inbox_head - iseq),
        follows: Some((inbox, inbox_head + 1)),
        last_row: start,
    })
}

/// One event of a party's log as `events_since` reads it: `seq, kind,
/// at_ms, ref_seq`, the conversation's id, the actor's address, for a
/// message its sender's address, `client_msg_id`, `sent_at_ms` and `body`,
/// and for a desk entry its `payload`.
pub(crate) type EventColumns = (
    i64,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// The conversations `rows` add the party to, once each: their records
/// must be loaded before [`events`] can build those events.
pub(crate) fn added_conversations(rows: &[EventColumns]) -> StoreResult<Vec<ConversationId>> {
    let mut ids: Vec<ConversationId> = Vec::new();
    for row in rows {
        if row.1 == event_kind::CONVERSATION_ADDED {
            let id = conversation_id(&row.4)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// `party`'s events from their rows, each built by the constructor the
/// engine uses when the event happens; `records` holds the conversations
/// of [`added_conversations`].
pub(crate) fn events(
    party: PartyId,
    rows: Vec<EventColumns>,
    records: &HashMap<ConversationId, ConversationRecord>,
) -> StoreResult<Vec<(u64, Event)>> {
    let mut events = Vec::with_capacity(rows.len());
    for (
        seq,
        kind,
        at_ms,
        ref_seq,
        conversation,
        actor,
        sender,
        client_msg_id,
        sent_at_ms,
        body,
        desk_payload,
    ) in rows
    {
        let seq = seq_from_db(seq, "events.seq")?;
        let ref_seq = seq_from_db(ref_seq, "events.ref_seq")?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {party}/{seq}: {what}"));
        let conversation = conversation_id(&conversation)?;
        let event = match kind {
            event_kind::MESSAGE => {
                let (Some(sender), Some(client_msg_id), Some(sent_at_ms), Some(body)) =
                    (sender, client_msg_id, sent_at_ms, body)
                else {
                    return Err(corrupt("its message is missing"));
                };
                Event::Message(Message {
                    conversation,
                    seq: ref_seq,
                    sender: address(&sender)?,
                    client_msg_id,
                    sent_at_ms,
                    body: body::decode(&body)?,
                })
            }
            event_kind::CONVERSATION_ADDED => {
                let record = records
                    .get(&conversation)
                    .ok_or_else(|| corrupt("its conversation is missing"))?;
                Event::conversation_added(record, ref_seq, at_ms)
            }
            event_kind::DELIVERED | event_kind::READ => {
                let kind = if kind == event_kind::DELIVERED {
                    ReceiptKind::Delivered
                } else {
                    ReceiptKind::Read
                };
                let actor = actor.ok_or_else(|| corrupt("its party is missing"))?;
                Event::Receipt(Receipt {
                    conversation,
                    party: address(&actor)?,
                    kind,
                    up_to: ref_seq,
                })
            }
            event_kind::DESK => {
                let payload = desk_payload.ok_or_else(|| corrupt("its desk entry is missing"))?;
                Event::Desk(DeskRecord {
                    conversation,
                    dseq: ref_seq,
                    payload: payload.into(),
                })
            }
            event_kind::DELIVERY_FAILED => {
                let notice = desk_payload.ok_or_else(|| corrupt("its failure is missing"))?;
                Event::DeliveryFailed(
                    DeliveryFailure::decode(conversation, &notice)
                        .ok_or_else(|| corrupt("its failure does not decode"))?,
                )
            }
            other => return Err(corrupt(&format!("unknown kind {other}"))),
        };
        events.push((seq, event));
    }
    Ok(events)
}
