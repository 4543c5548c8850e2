//! The reads of the SQL backends, with the statements they share: SQLite
//! and PostgreSQL share the schema's tables, views and `$n` parameters, so
//! each statement is written once, here, and run on a backend's pool
//! through [`Reader`]. The one statement whose SQL differs only by the
//! names of a few functions is written once with those names left open
//! ([`events_since_sql`]); batched send lookups, which each backend does
//! its own way, are the backend's ([`Reader::find_sends`]).

use std::collections::HashMap;
use std::future::Future;

use kanal_proto::address::{Address, ConversationId};
use sqlx::postgres::PgRow;
use sqlx::query::QueryAs;
use sqlx::sqlite::SqliteRow;

use super::StoreResult;
use super::columns::{
    self, DeviceColumns, EventColumns, InviteColumns, LogHeadColumns, MessageColumns,
    OutboxColumns, PartyColumns, PeerColumns, RecordColumns, SessionColumns, UndeliveredColumns,
    ViewColumns, seq_from_db, seq_to_db,
};
use super::columns::{DeskEntryColumns, SeatColumns, TicketColumns};
use crate::model::{
    ConversationKey, ConversationRecord, ConversationView, Counters, Device, Event, Invite,
    LogHead, Message, OutboxRow, Party, PartyId, PartyKind, PeerRecord, ReceiptKind, Session,
    StoredSend, Undelivered,
};
use crate::model::{DeskEntry, StoredDesk, StoredTicket, TicketFilter};

/// A value bound to a statement's parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    /// An integer.
    Int(i64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
}

/// A row type both backends decode.
pub(crate) trait Columns:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Columns for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// A send's (conversation, sender, client_msg_id).
pub(crate) type SendKey = (ConversationKey, PartyId, String);

/// A backend's pool of connections for reads.
pub(crate) trait Reader: Send + Sync {
    /// The rows `sql` returns with `params` bound to `$1`, `$2`, ….
    fn rows<R: Columns>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> impl Future<Output = StoreResult<Vec<R>>> + Send;

    /// The statement of [`events_since`] in the backend's SQL (see
    /// [`events_since_sql`]).
    fn events_since_sql(&self) -> &'static str;

    /// The statement of [`tickets`] in the backend's SQL (see
    /// [`tickets_sql`]).
    fn tickets_sql(&self) -> &'static str;

    /// The stored sends among `wanted` (see [`Store::find_sends`]), in as
    /// few statements as the backend allows.
    ///
    /// [`Store::find_sends`]: super::Store::find_sends
    fn find_sends(
        &self,
        wanted: &[SendKey],
    ) -> impl Future<Output = StoreResult<Vec<(SendKey, StoredSend)>>> + Send;
}

/// Binds `params` to `query`'s parameters, in order.
pub(crate) fn bind<'q, DB, O>(
    query: QueryAs<'q, DB, O, DB::Arguments>,
    params: &[Param<'q>],
) -> QueryAs<'q, DB, O, DB::Arguments>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    params.iter().fold(query, |query, param| match *param {
        Param::Int(value) => query.bind(value),
        Param::Text(value) => query.bind(value),
        Param::Bytes(value) => query.bind(value),
    })
}

/// The one row a statement returns, if any.
async fn row<R: Columns>(
    reader: &impl Reader,
    sql: &'static str,
    params: &[Param<'_>],
) -> StoreResult<Option<R>> {
    Ok(reader.rows(sql, params).await?.into_iter().next())
}

/// The one row an aggregate returns.
async fn one<R: Columns>(
    reader: &impl Reader,
    sql: &'static str,
    params: &[Param<'_>],
) -> StoreResult<R> {
    row(reader, sql, params)
        .await?
        .ok_or_else(|| sqlx::Error::RowNotFound.into())
}

// --- directory ---------------------------------------------------------------------

/// Finds a party by address.
pub(crate) async fn party_by_address(
    reader: &impl Reader,
    address: &Address,
) -> StoreResult<Option<Party>> {
    row::<PartyColumns>(
        reader,
        "SELECT id, address, kind, display_name FROM parties WHERE address = $1",
        &[Param::Text(address.as_str())],
    )
    .await?
    .map(columns::party)
    .transpose()
}

/// Finds a party by id.
pub(crate) async fn party_by_id(reader: &impl Reader, id: PartyId) -> StoreResult<Option<Party>> {
    row::<PartyColumns>(
        reader,
        "SELECT id, address, kind, display_name FROM parties WHERE id = $1",
        &[Param::Int(id)],
    )
    .await?
    .map(columns::party)
    .transpose()
}

/// The party's password hash, if it has one.
pub(crate) async fn password_hash(
    reader: &impl Reader,
    id: PartyId,
) -> StoreResult<Option<String>> {
    let hash = row::<(Option<String>,)>(
        reader,
        "SELECT password_hash FROM parties WHERE id = $1",
        &[Param::Int(id)],
    )
    .await?;
    Ok(hash.and_then(|(hash,)| hash))
}

/// Every party, ordered by address.
pub(crate) async fn parties(reader: &impl Reader) -> StoreResult<Vec<Party>> {
    reader
        .rows::<PartyColumns>(
            "SELECT id, address, kind, display_name FROM parties ORDER BY address",
            &[],
        )
        .await?
        .into_iter()
        .map(columns::party)
        .collect()
}

/// The agents of `inbox`, in the order they were added.
pub(crate) async fn inbox_agents(
    reader: &impl Reader,
    inbox: PartyId,
) -> StoreResult<Vec<PartyId>> {
    parties_of(
        reader,
        "SELECT agent FROM inbox_agents WHERE inbox = $1 ORDER BY position",
        inbox,
    )
    .await
}

/// The inboxes `agent` answers for.
pub(crate) async fn agent_inboxes(
    reader: &impl Reader,
    agent: PartyId,
) -> StoreResult<Vec<PartyId>> {
    parties_of(
        reader,
        "SELECT inbox FROM inbox_agents WHERE agent = $1 ORDER BY inbox",
        agent,
    )
    .await
}

/// The party ids `sql` returns for `party`.
async fn parties_of(
    reader: &impl Reader,
    sql: &'static str,
    party: PartyId,
) -> StoreResult<Vec<PartyId>> {
    let ids = reader.rows::<(PartyId,)>(sql, &[Param::Int(party)]).await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Finds a session by the hash of its resume token.
pub(crate) async fn session_by_token_hash(
    reader: &impl Reader,
    token_hash: [u8; 32],
) -> StoreResult<Option<Session>> {
    row::<SessionColumns>(
        reader,
        "SELECT id, party, acked_seq FROM sessions WHERE token_hash = $1",
        &[Param::Bytes(&token_hash)],
    )
    .await?
    .map(columns::session)
    .transpose()
}

/// The invites that still work at `now_ms`, oldest first.
pub(crate) async fn invites(reader: &impl Reader, now_ms: i64) -> StoreResult<Vec<Invite>> {
    let rows = reader
        .rows::<InviteColumns>(
            "SELECT id, uses_left, expires_at_ms, created_at_ms, note FROM invites
             WHERE uses_left > 0 AND (expires_at_ms IS NULL OR expires_at_ms > $1)
             ORDER BY id",
            &[Param::Int(now_ms)],
        )
        .await?;
    Ok(rows.into_iter().map(columns::invite).collect())
}

/// Every registered device, by serial.
pub(crate) async fn devices(reader: &impl Reader) -> StoreResult<Vec<Device>> {
    let rows = reader
        .rows::<DeviceColumns>(
            "SELECT key, party, serial, model, inbox, owner, revoked_at_ms, last_initiation,
                    added_at_ms
             FROM devices ORDER BY serial",
            &[],
        )
        .await?;
    rows.into_iter().map(columns::device).collect()
}

/// The devices `owner` owns, by serial.
pub(crate) async fn devices_of(reader: &impl Reader, owner: PartyId) -> StoreResult<Vec<Device>> {
    let rows = reader
        .rows::<DeviceColumns>(
            "SELECT key, party, serial, model, inbox, owner, revoked_at_ms, last_initiation,
                    added_at_ms
             FROM devices WHERE owner = $1 ORDER BY serial",
            &[Param::Int(owner)],
        )
        .await?;
    rows.into_iter().map(columns::device).collect()
}

/// The device registered with `key`.
pub(crate) async fn device_by_key(
    reader: &impl Reader,
    key: [u8; 32],
) -> StoreResult<Option<Device>> {
    row::<DeviceColumns>(
        reader,
        "SELECT key, party, serial, model, inbox, owner, revoked_at_ms, last_initiation,
                added_at_ms
         FROM devices WHERE key = $1",
        &[Param::Bytes(&key)],
    )
    .await?
    .map(columns::device)
    .transpose()
}

// --- the engine's loads ------------------------------------------------------------

/// Loads a conversation and its members, in the order they joined.
pub(crate) async fn load_conversation(
    reader: &impl Reader,
    id: &ConversationId,
) -> StoreResult<Option<ConversationRecord>> {
    let rows = reader
        .rows::<RecordColumns>(
            "SELECT c.key, c.subject, c.created_at_ms, c.last_seq, c.last_activity_ms,
                    p.id, p.address, p.kind, p.display_name
             FROM conversations_now c
             LEFT JOIN members m ON m.key = c.key
             LEFT JOIN parties p ON p.id = m.party
             WHERE c.id = $1
             ORDER BY m.position",
            &[Param::Text(id.as_str())],
        )
        .await?;
    columns::record(id, rows)
}

/// The highest conversation key and party id (0 if none).
pub(crate) async fn counters(reader: &impl Reader) -> StoreResult<Counters> {
    let (max_key, max_party) = one::<(i64, i64)>(
        reader,
        "SELECT (SELECT COALESCE(MAX(key), 0) FROM conversations),
                (SELECT COALESCE(MAX(id), 0) FROM parties)",
        &[],
    )
    .await?;
    Ok(Counters {
        max_key,
        max_party,
        ..Counters::default()
    })
}

/// Where `party`'s log ends: its last row is an event of its own, or a span
/// that runs to the end of the inbox's log. One statement, so one snapshot.
pub(crate) async fn log_head(reader: &impl Reader, party: PartyId) -> StoreResult<LogHead> {
    let row = one::<LogHeadColumns>(
        reader,
        "SELECT own.head, s.seq, s.inbox, s.iseq,
                (SELECT COALESCE(MAX(i.iseq), 0) FROM inbox_events i WHERE i.inbox = s.inbox)
         FROM (SELECT COALESCE(MAX(seq), 0) AS head FROM events WHERE party = $1) own
         LEFT JOIN (SELECT seq, inbox, iseq FROM event_spans
                    WHERE party = $1 ORDER BY seq DESC LIMIT 1) s
                ON s.seq > own.head",
        &[Param::Int(party)],
    )
    .await?;
    columns::log_head(party, row)
}

/// The highest seq of an inbox's log (0 if empty).
pub(crate) async fn inbox_head(reader: &impl Reader, inbox: PartyId) -> StoreResult<u64> {
    let (head,) = one::<(i64,)>(
        reader,
        "SELECT COALESCE(MAX(iseq), 0) FROM inbox_events WHERE inbox = $1",
        &[Param::Int(inbox)],
    )
    .await?;
    seq_from_db(head, "inbox_events.iseq")
}

/// The message `sender` stored under `client_msg_id`, if any.
pub(crate) async fn find_send(
    reader: &impl Reader,
    key: ConversationKey,
    sender: PartyId,
    client_msg_id: &str,
) -> StoreResult<Option<StoredSend>> {
    row::<(i64, i64)>(
        reader,
        "SELECT seq, sent_at_ms FROM messages
         WHERE key = $1 AND sender = $2 AND client_msg_id = $3",
        &[
            Param::Int(key),
            Param::Int(sender),
            Param::Text(client_msg_id),
        ],
    )
    .await?
    .map(|(seq, sent_at_ms)| columns::stored_send(seq, sent_at_ms))
    .transpose()
}

/// A party's watermark of `kind` in a conversation (0 if none).
pub(crate) async fn watermark(
    reader: &impl Reader,
    key: ConversationKey,
    party: PartyId,
    kind: ReceiptKind,
) -> StoreResult<u64> {
    let up_to = row::<(i64,)>(
        reader,
        "SELECT up_to FROM watermarks WHERE key = $1 AND party = $2 AND kind = $3",
        &[
            Param::Int(key),
            Param::Int(party),
            Param::Int(kind.as_i64()),
        ],
    )
    .await?;
    seq_from_db(up_to.map_or(0, |(up_to,)| up_to), "watermarks.up_to")
}

// --- reads for clients -------------------------------------------------------------

/// Whether `party` sees the conversation: the audience rule
/// (`core::audience::viewers`) in SQL, checked against it by the
/// conformance suite.
pub(crate) async fn can_see(
    reader: &impl Reader,
    key: ConversationKey,
    party: PartyId,
) -> StoreResult<bool> {
    let (sees,) = one::<(bool,)>(
        reader,
        "SELECT EXISTS (SELECT 1 FROM members m JOIN parties p ON p.id = m.party
                        WHERE m.key = $1 AND m.party = $2 AND p.kind != $3)
             OR EXISTS (SELECT 1 FROM members m
                        JOIN inbox_agents ia ON ia.inbox = m.party
                        WHERE m.key = $1 AND ia.agent = $2)",
        &[
            Param::Int(key),
            Param::Int(party),
            Param::Int(PartyKind::Inbox.as_i64()),
        ],
    )
    .await?;
    Ok(sees)
}

/// Up to `limit` messages before `before` (0: the newest), oldest first, and
/// whether older ones exist.
pub(crate) async fn history(
    reader: &impl Reader,
    key: ConversationKey,
    before: u64,
    limit: u32,
) -> StoreResult<(Vec<Message>, bool)> {
    let before = if before == 0 {
        i64::MAX
    } else {
        seq_to_db(before)?
    };
    let mut rows = reader
        .rows::<MessageColumns>(
            "SELECT c.id, m.seq, p.address, m.client_msg_id, m.sent_at_ms, m.body
             FROM messages m
             JOIN conversations c ON c.key = m.key
             JOIN parties p ON p.id = m.sender
             WHERE m.key = $1 AND m.seq < $2
             ORDER BY m.seq DESC
             LIMIT $3",
            &[
                Param::Int(key),
                Param::Int(before),
                Param::Int(i64::from(limit) + 1),
            ],
        )
        .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let messages = rows
        .into_iter()
        .rev()
        .map(columns::message)
        .collect::<StoreResult<_>>()?;
    Ok((messages, has_more))
}

/// Up to `limit` events of `party`'s log after `since`, each built by the
/// constructor the engine uses when the event happens. Messages and
/// receipts come out of one query; a conversation added is rebuilt from the
/// conversation and the seq and time the row recorded.
pub(crate) async fn events_since(
    reader: &impl Reader,
    party: PartyId,
    since: u64,
    limit: u32,
    max_body_bytes: usize,
) -> StoreResult<Vec<(u64, Event)>> {
    let rows = reader
        .rows::<EventColumns>(
            reader.events_since_sql(),
            &[
                Param::Int(party),
                Param::Int(seq_to_db(since)?),
                Param::Int(columns::event_kind::MESSAGE),
                Param::Int(i64::from(limit)),
                Param::Int(i64::try_from(max_body_bytes).unwrap_or(i64::MAX)),
                Param::Int(columns::event_kind::DESK),
                Param::Int(columns::event_kind::DELIVERY_FAILED),
            ],
        )
        .await?;
    let mut records = HashMap::new();
    for id in columns::added_conversations(&rows)? {
        if let Some(record) = load_conversation(reader, &id).await? {
            records.insert(id, record);
        }
    }
    columns::events(party, rows, &records)
}

/// The statement of [`events_since`], with the backend's names for the
/// greatest and the least of their arguments (scalar, not aggregates) and
/// for the length of a blob in bytes. Built once per backend and kept for
/// the process's lifetime, as sqlx takes statement texts as `&'static str`.
///
/// It takes the party (`$1`), `since` (`$2`), the message event kind
/// (`$3`), `limit` (`$4`), the page's budget of body bytes (`$5`), the
/// desk event kind (`$6`) and the delivery-failure event kind (`$7`), and
/// returns [`EventColumns`] in seq order (a desk entry's payload and a
/// failure's notice share a column).
///
/// The page's rows come from the party's own events and, through its spans,
/// from inbox logs: a span starting at seq `s` over inbox event `i` maps
/// inbox event `i + n` to seq `s + n`, up to the party's next row. Only the
/// spans that can reach into the page are read: the last one starting at or
/// before `since + 1`, and those starting inside the page. The page ends at
/// `limit` events, or before the event whose body (or desk entry's
/// payload) would pass the budget (the first event always comes).
pub(crate) fn events_since_sql(greatest: &str, least: &str, octet_length: &str) -> &'static str {
    let text = format!(
        "SELECT seq, kind, at_ms, ref_seq, id, actor, sender, client_msg_id, sent_at_ms, body,
                desk_payload
         FROM (WITH
               spans AS (
                   SELECT s.seq, s.inbox, s.iseq,
                          {greatest}(s.seq, $2 + 1) AS first,
                          {least}($2 + $4,
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
                      COALESCE(d.payload, u.notice) AS desk_payload,
                      SUM(COALESCE({octet_length}(m.body), 0)
                          + COALESCE({octet_length}(d.payload), 0))
                          OVER (ORDER BY e.seq) AS running,
                      ROW_NUMBER() OVER (ORDER BY e.seq) AS n
               FROM log e
               JOIN conversations c ON c.key = e.key
               LEFT JOIN parties actor ON actor.id = e.actor
               LEFT JOIN messages m ON e.kind = $3 AND m.key = e.key AND m.seq = e.ref_seq
               LEFT JOIN parties sender ON sender.id = m.sender
               LEFT JOIN desk_entries d ON e.kind = $6 AND d.key = e.key AND d.dseq = e.ref_seq
               LEFT JOIN undelivered u ON e.kind = $7 AND u.party = $1 AND u.event_seq = e.seq
               ORDER BY e.seq
               LIMIT $4) AS page
         WHERE n = 1 OR running <= $5
         ORDER BY seq"
    );
    Box::leak(text.into_boxed_str())
}

// --- the service desk --------------------------------------------------------------

/// The columns of [`TicketColumns`], of `tickets`.
const TICKET: &str = "key, inbox, status, status_at_ms, owner_kind, owner, priority, last_dseq, \
                      updated_at_ms, state";

/// The stored number of a resolved ticket's status.
const RESOLVED: i64 = 4;

/// What is stored of `inbox`'s desk: settings, seats by agent, unresolved
/// tickets by key.
pub(crate) async fn desk(reader: &impl Reader, inbox: PartyId) -> StoreResult<StoredDesk> {
    let settings = row::<(String,)>(
        reader,
        "SELECT settings FROM desk_settings WHERE inbox = $1",
        &[Param::Int(inbox)],
    )
    .await?
    .map(|(settings,)| settings);
    let seats = reader
        .rows::<SeatColumns>(
            "SELECT inbox, agent, availability, capacity, last_assigned_ms FROM seats
             WHERE inbox = $1 ORDER BY agent",
            &[Param::Int(inbox)],
        )
        .await?
        .into_iter()
        .map(columns::seat)
        .collect::<StoreResult<_>>()?;
    let tickets = reader
        .rows::<TicketColumns>(
            "SELECT key, inbox, status, status_at_ms, owner_kind, owner, priority, last_dseq,
                    updated_at_ms, state
             FROM tickets WHERE inbox = $1 AND status != 4 ORDER BY key",
            // `status != 4` as the partial index `tickets_unresolved` has
            // it (a bound value would not let the planner use it).
            &[Param::Int(inbox)],
        )
        .await?
        .into_iter()
        .map(columns::ticket)
        .collect::<StoreResult<_>>()?;
    Ok(StoredDesk {
        settings,
        seats,
        tickets,
    })
}

/// The ticket of conversation `key`.
pub(crate) async fn ticket(
    reader: &impl Reader,
    key: ConversationKey,
) -> StoreResult<Option<StoredTicket>> {
    row::<TicketColumns>(
        reader,
        "SELECT key, inbox, status, status_at_ms, owner_kind, owner, priority, last_dseq,
                updated_at_ms, state
         FROM tickets WHERE key = $1",
        &[Param::Int(key)],
    )
    .await?
    .map(columns::ticket)
    .transpose()
}

/// Up to `limit` tickets `filter` wants after `offset`, most recently
/// changed first, and whether more exist.
pub(crate) async fn tickets(
    reader: &impl Reader,
    filter: &TicketFilter,
    limit: u32,
    offset: u32,
) -> StoreResult<(Vec<StoredTicket>, bool)> {
    let json = |values: &[i64]| {
        serde_json::to_string(values).map_err(|e| super::StoreError::Backend(Box::new(e)))
    };
    let (inboxes, statuses) = (json(&filter.inboxes)?, json(&filter.statuses)?);
    let mut rows = reader
        .rows::<TicketColumns>(
            reader.tickets_sql(),
            &[
                Param::Text(&inboxes),
                Param::Int(i64::from(filter.statuses.is_empty())),
                Param::Text(&statuses),
                Param::Int(RESOLVED),
                Param::Int(i64::from(filter.owner.is_some())),
                Param::Int(filter.owner.unwrap_or(0)),
                Param::Int(i64::from(filter.unowned)),
                Param::Int(i64::from(limit) + 1),
                Param::Int(i64::from(offset)),
            ],
        )
        .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let tickets = rows
        .into_iter()
        .map(columns::ticket)
        .collect::<StoreResult<_>>()?;
    Ok((tickets, has_more))
}

/// The statement of [`tickets`], with the backend's way of reading the
/// integers of a JSON array bound as text (`{}` stands for the parameter).
/// Built once per backend and kept for the process's lifetime.
///
/// It takes the inboxes (`$1`, a JSON array), whether any status is wanted
/// but resolved (`$2`), the statuses wanted otherwise (`$3`, a JSON array),
/// the resolved status (`$4`), whether an owner is wanted (`$5`) and which
/// (`$6`), whether only unowned tickets are (`$7`), the limit (`$8`) and
/// the offset (`$9`).
pub(crate) fn tickets_sql(json_integers: &str) -> &'static str {
    let list = |param: &str| json_integers.replace("{}", param);
    let text = format!(
        "SELECT {TICKET} FROM tickets
         WHERE inbox IN ({inboxes})
           AND (($2 = 1 AND status != $4) OR ($2 = 0 AND status IN ({statuses})))
           AND ($5 = 0 OR owner = $6)
           AND ($7 = 0 OR owner_kind = 0)
         ORDER BY updated_at_ms DESC, key DESC
         LIMIT $8 OFFSET $9",
        inboxes = list("$1"),
        statuses = list("$3"),
    );
    Box::leak(text.into_boxed_str())
}

/// Up to `limit` entries of `key`'s desk log before `before` (0: the
/// newest), oldest first, and whether older ones exist.
pub(crate) async fn desk_entries(
    reader: &impl Reader,
    key: ConversationKey,
    before: u64,
    limit: u32,
) -> StoreResult<(Vec<DeskEntry>, bool)> {
    let before = if before == 0 {
        i64::MAX
    } else {
        seq_to_db(before)?
    };
    let mut rows = reader
        .rows::<DeskEntryColumns>(
            "SELECT key, dseq, inbox, at_ms, actor, client_note_id, payload FROM desk_entries
             WHERE key = $1 AND dseq < $2
             ORDER BY dseq DESC
             LIMIT $3",
            &[
                Param::Int(key),
                Param::Int(before),
                Param::Int(i64::from(limit) + 1),
            ],
        )
        .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let entries = rows
        .into_iter()
        .rev()
        .map(columns::desk_entry)
        .collect::<StoreResult<_>>()?;
    Ok((entries, has_more))
}

/// Up to `limit` entries of `inbox`'s desk logs in `[from_ms, to_ms)`
/// after `after`, by `(at_ms, key, dseq)`.
pub(crate) async fn inbox_desk_entries(
    reader: &impl Reader,
    inbox: PartyId,
    (from_ms, to_ms): (i64, i64),
    after: Option<(i64, ConversationKey, u64)>,
    limit: u32,
) -> StoreResult<Vec<DeskEntry>> {
    let (at_ms, key, dseq) = match after {
        Some((at_ms, key, dseq)) => (at_ms, key, seq_to_db(dseq)?),
        None => (from_ms.saturating_sub(1), i64::MAX, i64::MAX),
    };
    reader
        .rows::<DeskEntryColumns>(
            "SELECT key, dseq, inbox, at_ms, actor, client_note_id, payload FROM desk_entries
             WHERE inbox = $1 AND at_ms >= $2 AND at_ms < $3
               AND (at_ms > $4 OR (at_ms = $4 AND (key > $5 OR (key = $5 AND dseq > $6))))
             ORDER BY at_ms, key, dseq
             LIMIT $7",
            &[
                Param::Int(inbox),
                Param::Int(from_ms),
                Param::Int(to_ms),
                Param::Int(at_ms),
                Param::Int(key),
                Param::Int(dseq),
                Param::Int(i64::from(limit)),
            ],
        )
        .await?
        .into_iter()
        .map(columns::desk_entry)
        .collect()
}

/// The note `actor` stored under `client_note_id` in `key`: its dseq and
/// time.
pub(crate) async fn find_note(
    reader: &impl Reader,
    key: ConversationKey,
    actor: PartyId,
    client_note_id: &str,
) -> StoreResult<Option<(u64, i64)>> {
    row::<(i64, i64)>(
        reader,
        "SELECT dseq, at_ms FROM desk_entries
         WHERE key = $1 AND actor = $2 AND client_note_id = $3 AND client_note_id != ''",
        &[
            Param::Int(key),
            Param::Int(actor),
            Param::Text(client_note_id),
        ],
    )
    .await?
    .map(|(dseq, at_ms)| Ok((seq_from_db(dseq, "desk_entries.dseq")?, at_ms)))
    .transpose()
}

// --- federation ------------------------------------------------------------------

/// Up to `limit` outbox rows toward `peer` after `after`, in seq order.
pub(crate) async fn outbox(
    reader: &impl Reader,
    peer: &str,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<OutboxRow>> {
    reader
        .rows::<OutboxColumns>(
            "SELECT seq, payload, enqueued_at_ms FROM outbox
             WHERE peer = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[
                Param::Text(peer),
                Param::Int(seq_to_db(after)?),
                Param::Int(i64::from(limit)),
            ],
        )
        .await?
        .into_iter()
        .map(|columns| columns::outbox_row(peer, columns))
        .collect()
}

/// The highest outbox seq ever assigned toward `peer`: its highest stored
/// row's or, once the peer acknowledged every row, where it acknowledged
/// up to (0 if none). One statement, so one snapshot.
pub(crate) async fn outbox_head(reader: &impl Reader, peer: &str) -> StoreResult<u64> {
    let (head,) = one::<(i64,)>(
        reader,
        "SELECT COALESCE(MAX(seq), 0)
         FROM (SELECT seq FROM outbox WHERE peer = $1
               UNION ALL
               SELECT acked FROM peer_cursors WHERE peer = $1) AS assigned",
        &[Param::Text(peer)],
    )
    .await?;
    seq_from_db(head, "outbox.seq")
}

/// Where `peer` acknowledged the outbox toward it up to (0 if nowhere).
pub(crate) async fn outbox_acked(reader: &impl Reader, peer: &str) -> StoreResult<u64> {
    let acked = row::<(i64,)>(
        reader,
        "SELECT acked FROM peer_cursors WHERE peer = $1",
        &[Param::Text(peer)],
    )
    .await?
    .map_or(0, |(acked,)| acked);
    seq_from_db(acked, "peer_cursors.acked")
}

/// Up to where every transaction from `peer` is applied (0 if none is).
pub(crate) async fn peer_committed(reader: &impl Reader, peer: &str) -> StoreResult<u64> {
    let committed = row::<(i64,)>(
        reader,
        "SELECT committed FROM peer_cursors WHERE peer = $1",
        &[Param::Text(peer)],
    )
    .await?
    .map_or(0, |(committed,)| committed);
    seq_from_db(committed, "peer_cursors.committed")
}

/// Whether `sender` submitted `client_msg_id` to conversation `key`.
pub(crate) async fn submitted(
    reader: &impl Reader,
    key: ConversationKey,
    sender: PartyId,
    client_msg_id: &str,
) -> StoreResult<bool> {
    let rows = reader
        .rows::<(i64,)>(
            "SELECT key FROM submissions WHERE key = $1 AND sender = $2 AND client_msg_id = $3",
            &[
                Param::Int(key),
                Param::Int(sender),
                Param::Text(client_msg_id),
            ],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// The transactions toward `peer` given up, in seq order.
pub(crate) async fn undelivered(reader: &impl Reader, peer: &str) -> StoreResult<Vec<Undelivered>> {
    reader
        .rows::<UndeliveredColumns>(
            "SELECT u.seq, u.refused, u.reason, u.payload, u.enqueued_at_ms, u.failed_at_ms,
                    u.party, u.event_seq, u.key, u.notice, u.replayed_as, c.id
             FROM undelivered u LEFT JOIN conversations c ON c.key = u.key
             WHERE u.peer = $1 ORDER BY u.seq",
            &[Param::Text(peer)],
        )
        .await?
        .into_iter()
        .map(|columns| columns::undelivered(peer, columns))
        .collect()
}

/// The peers that outbox rows are queued toward, ordered.
pub(crate) async fn outbox_peers(reader: &impl Reader) -> StoreResult<Vec<String>> {
    Ok(reader
        .rows::<(String,)>("SELECT DISTINCT peer FROM outbox ORDER BY peer", &[])
        .await?
        .into_iter()
        .map(|(peer,)| peer)
        .collect())
}

/// The peers a transaction from which was committed at `since_ms` or
/// later, at most `limit`, those committed from last first.
pub(crate) async fn peers_committed_since(
    reader: &impl Reader,
    since_ms: i64,
    limit: u32,
) -> StoreResult<Vec<String>> {
    Ok(reader
        .rows::<(String,)>(
            "SELECT peer FROM peer_cursors
             WHERE committed > 0 AND committed_at_ms >= $1
             ORDER BY committed_at_ms DESC, peer LIMIT $2",
            &[Param::Int(since_ms), Param::Int(i64::from(limit))],
        )
        .await?
        .into_iter()
        .map(|(peer,)| peer)
        .collect())
}

/// The peer servers the operator configured, by domain.
pub(crate) async fn peers(reader: &impl Reader) -> StoreResult<Vec<PeerRecord>> {
    Ok(reader
        .rows::<PeerColumns>(
            "SELECT domain, address, fingerprint, added_at_ms FROM peers ORDER BY domain",
            &[],
        )
        .await?
        .into_iter()
        .map(columns::peer_record)
        .collect())
}

/// The conversations `party` sees by the audience rule (as in [`can_see`]),
/// most recently active first, and whether more exist past this page.
pub(crate) async fn conversations_of(
    reader: &impl Reader,
    party: PartyId,
    limit: u32,
    offset: u32,
) -> StoreResult<(Vec<ConversationView>, bool)> {
    let rows = reader
        .rows::<ViewColumns>(
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
            &[
                Param::Int(party),
                Param::Int(i64::from(limit) + 1),
                Param::Int(i64::from(offset)),
                Param::Int(ReceiptKind::Delivered.as_i64()),
                Param::Int(ReceiptKind::Read.as_i64()),
                Param::Int(PartyKind::Inbox.as_i64()),
            ],
        )
        .await?;
    let mut conversations = columns::group_views(rows)?;
    let has_more = conversations.len() > limit as usize;
    conversations.truncate(limit as usize);
    Ok((conversations, has_more))
}

/// One conversation as `viewer` sees it.
pub(crate) async fn conversation_view(
    reader: &impl Reader,
    key: ConversationKey,
    viewer: PartyId,
) -> StoreResult<Option<ConversationView>> {
    let rows = reader
        .rows::<ViewColumns>(
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
            &[
                Param::Int(key),
                Param::Int(viewer),
                Param::Int(ReceiptKind::Delivered.as_i64()),
                Param::Int(ReceiptKind::Read.as_i64()),
            ],
        )
        .await?;
    Ok(columns::group_views(rows)?.pop())
}
