//! Loads for the engine and reads for clients, all on the read-only pool.

use std::collections::HashMap;

use kanal_proto::address::ConversationId;
use sqlx::{SqliteConnection, SqlitePool};

use super::write::event_kind;
use super::{address, conversation_id, party_kind, seq_from_db, seq_to_db};
use crate::model::Counters;
use crate::model::{
    ConversationKey, ConversationRecord, ConversationView, Event, LogHead, Message, OutboxRow,
    Party, PartyId, PartyKind, Receipt, ReceiptKind, StoredSend,
};
use crate::store::{StoreError, StoreResult, body};

/// Loads a conversation and its members, in the order they joined.
pub(super) async fn load_conversation(
    reader: &SqlitePool,
    id: &ConversationId,
) -> StoreResult<Option<ConversationRecord>> {
    let mut conn = reader.acquire().await?;
    record(&mut conn, id).await
}

/// [`load_conversation`] on a connection the caller holds.
async fn record(
    conn: &mut SqliteConnection,
    id: &ConversationId,
) -> StoreResult<Option<ConversationRecord>> {
    type Row = (
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
    let rows = sqlx::query_as::<_, Row>(
        "SELECT c.key, c.subject, c.created_at_ms, c.last_seq, c.last_activity_ms,
                p.id, p.address, p.kind, p.display_name
         FROM conversations_now c
         LEFT JOIN members m ON m.key = c.key
         LEFT JOIN parties p ON p.id = m.party
         WHERE c.id = $1
         ORDER BY m.position",
    )
    .bind(id.as_str())
    .fetch_all(conn)
    .await?;
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
        if let (Some(id), Some(addr), Some(kind), Some(display_name)) = (pid, paddr, pkind, pname) {
            record.members.push(Party {
                id,
                address: address(&addr)?,
                kind: party_kind(kind)?,
                display_name,
            });
        }
    }
    Ok(record)
}

/// The highest conversation key and party id (0 if none).
pub(super) async fn counters(reader: &SqlitePool) -> StoreResult<Counters> {
    let (max_key, max_party) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT (SELECT COALESCE(MAX(key), 0) FROM conversations),
                (SELECT COALESCE(MAX(id), 0) FROM parties)",
    )
    .fetch_one(reader)
    .await?;
    Ok(Counters { max_key, max_party })
}

/// Where `party`'s log ends: its last row is an event of its own, or a span
/// that runs to the end of the inbox's log. One statement, so one snapshot.
pub(super) async fn log_head(reader: &SqlitePool, party: PartyId) -> StoreResult<LogHead> {
    let (own, span_seq, inbox, iseq, inbox_head) =
        sqlx::query_as::<_, (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>)>(
            "SELECT own.head, s.seq, s.inbox, s.iseq,
                    (SELECT COALESCE(MAX(i.iseq), 0) FROM inbox_events i WHERE i.inbox = s.inbox)
             FROM (SELECT COALESCE(MAX(seq), 0) AS head FROM events WHERE party = $1) own
             LEFT JOIN (SELECT seq, inbox, iseq FROM event_spans
                        WHERE party = $1 ORDER BY seq DESC LIMIT 1) s
                    ON s.seq > own.head",
        )
        .bind(party)
        .fetch_one(reader)
        .await?;
    let own = seq_from_db(own, "events.seq")?;
    let (Some(start), Some(inbox), Some(iseq), Some(inbox_head)) =
        (span_seq, inbox, iseq, inbox_head)
    else {
        return Ok(LogHead {
            head: own,
            follows: None,
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
    })
}

/// The highest seq of an inbox's log (0 if empty).
pub(super) async fn inbox_head(reader: &SqlitePool, inbox: PartyId) -> StoreResult<u64> {
    let head = sqlx::query_scalar::<_, i64>(
        "SELECT COALESCE(MAX(iseq), 0) FROM inbox_events WHERE inbox = $1",
    )
    .bind(inbox)
    .fetch_one(reader)
    .await?;
    seq_from_db(head, "inbox_events.iseq")
}

/// The message `sender` stored under `client_msg_id`, if any.
pub(super) async fn find_send(
    reader: &SqlitePool,
    key: ConversationKey,
    sender: PartyId,
    client_msg_id: &str,
) -> StoreResult<Option<StoredSend>> {
    let row = sqlx::query_as::<_, (i64, i64)>(
        "SELECT seq, sent_at_ms FROM messages
         WHERE key = $1 AND sender = $2 AND client_msg_id = $3",
    )
    .bind(key)
    .bind(sender)
    .bind(client_msg_id)
    .fetch_optional(reader)
    .await?;
    row.map(|(seq, sent_at_ms)| {
        Ok(StoredSend {
            seq: seq_from_db(seq, "messages.seq")?,
            sent_at_ms,
        })
    })
    .transpose()
}

/// Triples per lookup statement, largest first; a lookup is split greedily
/// into these sizes so only a few statement texts exist (all stay prepared).
const LOOKUP_CHUNKS: [usize; 4] = [128, 32, 8, 1];

/// One statement text per entry of [`LOOKUP_CHUNKS`], built once per
/// process and kept for its lifetime (sqlx takes texts as `&'static str`).
static LOOKUP_TEXTS: std::sync::LazyLock<[&'static str; 4]> = std::sync::LazyLock::new(|| {
    LOOKUP_CHUNKS.map(|n| {
        let values = vec!["(?, ?, ?)"; n].join(", ");
        let text = format!(
            "WITH wanted(k, s, c) AS (VALUES {values})
             SELECT m.key, m.sender, m.client_msg_id, m.seq, m.sent_at_ms
             FROM wanted JOIN messages m
               ON m.key = wanted.k AND m.sender = wanted.s AND m.client_msg_id = wanted.c"
        );
        &*Box::leak(text.into_boxed_str())
    })
});

/// The stored sends among `wanted`, in a few statements for the whole set.
pub(super) async fn find_sends(
    reader: &SqlitePool,
    wanted: &[(ConversationKey, PartyId, String)],
) -> StoreResult<Vec<((ConversationKey, PartyId, String), StoredSend)>> {
    let mut found = Vec::new();
    let mut rest = wanted;
    while !rest.is_empty() {
        let Some(index) = LOOKUP_CHUNKS.iter().position(|n| *n <= rest.len()) else {
            break;
        };
        let (chunk, tail) = rest.split_at(LOOKUP_CHUNKS[index]);
        let mut query = sqlx::query_as::<_, (i64, i64, String, i64, i64)>(LOOKUP_TEXTS[index]);
        for (key, sender, client_msg_id) in chunk {
            query = query.bind(*key).bind(*sender).bind(client_msg_id.as_str());
        }
        for (key, sender, client_msg_id, seq, sent_at_ms) in query.fetch_all(reader).await? {
            let stored = StoredSend {
                seq: seq_from_db(seq, "messages.seq")?,
                sent_at_ms,
            };
            found.push(((key, sender, client_msg_id), stored));
        }
        rest = tail;
    }
    Ok(found)
}

/// A party's watermark of `kind` in a conversation (0 if none).
pub(super) async fn watermark(
    reader: &SqlitePool,
    key: ConversationKey,
    party: PartyId,
    kind: ReceiptKind,
) -> StoreResult<u64> {
    let up_to: Option<i64> = sqlx::query_scalar(
        "SELECT up_to FROM watermarks WHERE key = $1 AND party = $2 AND kind = $3",
    )
    .bind(key)
    .bind(party)
    .bind(kind.as_i64())
    .fetch_optional(reader)
    .await?;
    seq_from_db(up_to.unwrap_or(0), "watermarks.up_to")
}

/// Whether `party` sees the conversation: the audience rule
/// (`core::audience::viewers`) in SQL, checked against it by the
/// conformance suite.
pub(super) async fn can_see(
    reader: &SqlitePool,
    key: ConversationKey,
    party: PartyId,
) -> StoreResult<bool> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM members m JOIN parties p ON p.id = m.party
                        WHERE m.key = $1 AND m.party = $2 AND p.kind != $3)
             OR EXISTS (SELECT 1 FROM members m
                        JOIN inbox_agents ia ON ia.inbox = m.party
                        WHERE m.key = $1 AND ia.agent = $2)",
    )
    .bind(key)
    .bind(party)
    .bind(PartyKind::Inbox.as_i64())
    .fetch_one(reader)
    .await?)
}

/// Up to `limit` messages before `before` (0: the newest), oldest first, and
/// whether older ones exist.
pub(super) async fn history(
    reader: &SqlitePool,
    key: ConversationKey,
    before: u64,
    limit: u32,
) -> StoreResult<(Vec<Message>, bool)> {
    let before = if before == 0 {
        i64::MAX
    } else {
        seq_to_db(before)?
    };
    let mut rows = sqlx::query_as::<_, (String, i64, String, String, i64, Vec<u8>)>(
        "SELECT c.id, m.seq, p.address, m.client_msg_id, m.sent_at_ms, m.body
         FROM messages m
         JOIN conversations c ON c.key = m.key
         JOIN parties p ON p.id = m.sender
         WHERE m.key = $1 AND m.seq < $2
         ORDER BY m.seq DESC
         LIMIT $3",
    )
    .bind(key)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(reader)
    .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let messages = rows
        .into_iter()
        .rev()
        .map(
            |(conversation, seq, sender, client_msg_id, sent_at_ms, body)| {
                Ok(Message {
                    conversation: conversation_id(&conversation)?,
                    seq: seq_from_db(seq, "messages.seq")?,
                    sender: address(&sender)?,
                    client_msg_id,
                    sent_at_ms,
                    body: body::decode(&body)?,
                })
            },
        )
        .collect::<StoreResult<_>>()?;
    Ok((messages, has_more))
}

/// Up to `limit` events of `party`'s log after `since`, each built by the
/// constructor the engine uses when the event happens. Messages and
/// receipts come out of one query; a conversation added is rebuilt from the
/// conversation and the seq and time the row recorded.
///
/// The page's rows come from the party's own events and, through its spans,
/// from inbox logs: a span starting at seq `s` over inbox event `i` maps
/// inbox event `i + n` to seq `s + n`, up to the party's next row. Only the
/// spans that can reach into the page are read: the last one starting at or
/// before `since + 1`, and those starting inside the page.
pub(super) async fn events_since(
    reader: &SqlitePool,
    party: PartyId,
    since: u64,
    limit: u32,
    max_body_bytes: usize,
) -> StoreResult<Vec<(u64, Event)>> {
    type Row = (
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
    );
    let mut conn = reader.acquire().await?;
    // The page ends at `limit` events, or before the event whose body
    // would pass `max_body_bytes` (the first event always comes).
    let rows = sqlx::query_as::<_, Row>(
        "SELECT seq, kind, at_ms, ref_seq, id, actor, sender, client_msg_id, sent_at_ms, body
         FROM (WITH
               spans AS (
                   SELECT s.seq, s.inbox, s.iseq,
                          MAX(s.seq, $2 + 1) AS first,
                          MIN($2 + $4,
                              COALESCE((SELECT MIN(o.seq) FROM events o
                                        WHERE o.party = $1 AND o.seq > s.seq), $2 + $4 + 1) - 1,
                              COALESCE((SELECT MIN(n.seq) FROM event_spans n
                                        WHERE n.party = $1 AND n.seq > s.seq), $2 + $4 + 1) - 1)
                              AS last
                   FROM event_spans s
                   WHERE s.party = $1 AND s.seq <= $2 + $4
                     AND s.seq >= COALESCE((SELECT MAX(p.seq) FROM event_spans p
                                            WHERE p.party = $1 AND p.seq <= $2 + 1), 0)),
               log AS (
                   SELECT seq, key, kind, ref_seq, actor, at_ms FROM events
                   WHERE party = $1 AND seq > $2 AND seq <= $2 + $4
                   UNION ALL
                   SELECT sp.seq + (i.iseq - sp.iseq), i.key, i.kind, i.ref_seq, i.actor, i.at_ms
                   FROM spans sp
                   JOIN inbox_events i ON i.inbox = sp.inbox
                    AND i.iseq BETWEEN sp.iseq + (sp.first - sp.seq)
                                   AND sp.iseq + (sp.last - sp.seq))
               SELECT e.seq, e.kind, e.at_ms, e.ref_seq, c.id, actor.address AS actor,
                      sender.address AS sender, m.client_msg_id, m.sent_at_ms, m.body,
                      SUM(COALESCE(length(m.body), 0)) OVER (ORDER BY e.seq) AS running,
                      ROW_NUMBER() OVER (ORDER BY e.seq) AS n
               FROM log e
               JOIN conversations c ON c.key = e.key
               LEFT JOIN parties actor ON actor.id = e.actor
               LEFT JOIN messages m ON e.kind = $3 AND m.key = e.key AND m.seq = e.ref_seq
               LEFT JOIN parties sender ON sender.id = m.sender
               ORDER BY e.seq
               LIMIT $4)
         WHERE n = 1 OR running <= $5
         ORDER BY seq",
    )
    .bind(party)
    .bind(seq_to_db(since)?)
    .bind(event_kind::MESSAGE)
    .bind(i64::from(limit))
    .bind(i64::try_from(max_body_bytes).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;

    let mut records: HashMap<String, ConversationRecord> = HashMap::new();
    let mut events = Vec::with_capacity(rows.len());
    for (seq, kind, at_ms, ref_seq, conversation, actor, sender, client_msg_id, sent_at_ms, body) in
        rows
    {
        let seq = seq_from_db(seq, "events.seq")?;
        let ref_seq = seq_from_db(ref_seq, "events.ref_seq")?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("event {party}/{seq}: {what}"));
        let event = match kind {
            event_kind::MESSAGE => {
                let (Some(sender), Some(client_msg_id), Some(sent_at_ms), Some(body)) =
                    (sender, client_msg_id, sent_at_ms, body)
                else {
                    return Err(corrupt("its message is missing"));
                };
                Event::Message(Message {
                    conversation: conversation_id(&conversation)?,
                    seq: ref_seq,
                    sender: address(&sender)?,
                    client_msg_id,
                    sent_at_ms,
                    body: body::decode(&body)?,
                })
            }
            event_kind::CONVERSATION_ADDED => {
                if !records.contains_key(&conversation) {
                    let id = conversation_id(&conversation)?;
                    let loaded = record(&mut conn, &id)
                        .await?
                        .ok_or_else(|| corrupt("its conversation is missing"))?;
                    records.insert(conversation.clone(), loaded);
                }
                let record = &records[&conversation];
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
                    conversation: conversation_id(&conversation)?,
                    party: address(&actor)?,
                    kind,
                    up_to: ref_seq,
                })
            }
            other => return Err(corrupt(&format!("unknown kind {other}"))),
        };
        events.push((seq, event));
    }
    Ok(events)
}

/// Up to `limit` outbox rows toward `peer` after `after`, in seq order.
pub(super) async fn outbox(
    reader: &SqlitePool,
    peer: &str,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<OutboxRow>> {
    sqlx::query_as::<_, (i64, Vec<u8>)>(
        "SELECT seq, payload FROM outbox WHERE peer = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(peer)
    .bind(seq_to_db(after)?)
    .bind(i64::from(limit))
    .fetch_all(reader)
    .await?
    .into_iter()
    .map(|(seq, payload)| {
        Ok(OutboxRow {
            peer: peer.to_owned(),
            seq: seq_from_db(seq, "outbox.seq")?,
            payload: payload.into(),
        })
    })
    .collect()
}

/// The conversations `party` sees by the audience rule (as in [`can_see`]),
/// most recently active first, and whether more exist past this page.
pub(super) async fn conversations_of(
    reader: &SqlitePool,
    party: PartyId,
    limit: u32,
    offset: u32,
) -> StoreResult<(Vec<ConversationView>, bool)> {
    let rows = sqlx::query_as::<_, ViewRow>(
        "WITH page AS (
             SELECT c.key, c.id, c.subject, c.created_at_ms, c.last_seq, c.last_activity_ms,
                    COALESCE((SELECT up_to FROM watermarks w
                              WHERE w.key = c.key AND w.party = $1 AND w.kind = $4), 0)
                        AS delivered_up_to,
                    COALESCE((SELECT up_to FROM watermarks w
                              WHERE w.key = c.key AND w.party = $1 AND w.kind = $5), 0)
                        AS read_up_to
             FROM conversations_now c
             WHERE c.key IN (SELECT m.key FROM members m JOIN parties p ON p.id = m.party
                             WHERE m.party = $1 AND p.kind != $6
                             UNION
                             SELECT m.key FROM inbox_agents ia
                             JOIN members m ON m.party = ia.inbox
                             WHERE ia.agent = $1)
             ORDER BY c.last_activity_ms DESC, c.key DESC
             LIMIT $2 OFFSET $3)
         SELECT page.key, page.id, page.subject, page.created_at_ms, page.last_seq,
                page.last_activity_ms, page.delivered_up_to, page.read_up_to,
                p.id, p.address, p.kind, p.display_name
         FROM page
         LEFT JOIN members mb ON mb.key = page.key
         LEFT JOIN parties p ON p.id = mb.party
         ORDER BY page.last_activity_ms DESC, page.key DESC, mb.position",
    )
    .bind(party)
    .bind(i64::from(limit) + 1)
    .bind(i64::from(offset))
    .bind(ReceiptKind::Delivered.as_i64())
    .bind(ReceiptKind::Read.as_i64())
    .bind(PartyKind::Inbox.as_i64())
    .fetch_all(reader)
    .await?;
    let mut conversations = group_views(rows)?;
    let has_more = conversations.len() > limit as usize;
    conversations.truncate(limit as usize);
    Ok((conversations, has_more))
}

/// One conversation as `viewer` sees it.
pub(super) async fn conversation_view(
    reader: &SqlitePool,
    key: ConversationKey,
    viewer: PartyId,
) -> StoreResult<Option<ConversationView>> {
    let mut conn = reader.acquire().await?;
    view(&mut conn, key, viewer).await
}

// --- helpers -------------------------------------------------------------------

/// A conversation's columns, the viewer's delivered and read watermarks,
/// and one member's columns (absent for a conversation without members).
type ViewRow = (
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

/// One conversation as `viewer` sees it, on a connection the caller holds.
async fn view(
    conn: &mut SqliteConnection,
    key: ConversationKey,
    viewer: PartyId,
) -> StoreResult<Option<ConversationView>> {
    let rows = sqlx::query_as::<_, ViewRow>(
        "SELECT c.key, c.id, c.subject, c.created_at_ms, c.last_seq, c.last_activity_ms,
                COALESCE((SELECT up_to FROM watermarks w
                          WHERE w.key = c.key AND w.party = $2 AND w.kind = $3), 0),
                COALESCE((SELECT up_to FROM watermarks w
                          WHERE w.key = c.key AND w.party = $2 AND w.kind = $4), 0),
                p.id, p.address, p.kind, p.display_name
         FROM conversations_now c
         LEFT JOIN members mb ON mb.key = c.key
         LEFT JOIN parties p ON p.id = mb.party
         WHERE c.key = $1
         ORDER BY mb.position",
    )
    .bind(key)
    .bind(viewer)
    .bind(ReceiptKind::Delivered.as_i64())
    .bind(ReceiptKind::Read.as_i64())
    .fetch_all(conn)
    .await?;
    Ok(group_views(rows)?.pop())
}

/// Folds rows of (conversation, member), grouped by conversation, into
/// views.
fn group_views(rows: Vec<ViewRow>) -> StoreResult<Vec<ConversationView>> {
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
        if let (Some(id), Some(address_text), Some(kind), Some(display_name), Some(view)) =
            (row.8, row.9, row.10, row.11, out.last_mut())
        {
            view.members.push(Party {
                id,
                address: address(&address_text)?,
                kind: party_kind(kind)?,
                display_name,
            });
        }
    }
    Ok(out)
}
