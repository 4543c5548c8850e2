//! Committing the engine's batches: one transaction per batch on a
//! connection of the write pool, and one statement per table the batch
//! touches, each inserting all of that table's rows from arrays bound as
//! parameters (`UNNEST`), so a batch's size never meets a limit on
//! parameters and its statements stay few and prepared.
//!
//! Tables are written parents first (parties, inbox agents, conversations,
//! members, messages, events, inbox events, spans, watermarks, outbox,
//! peer cursors, then the desk's tickets, seats, settings and entries), so
//! foreign keys hold whatever the order of the batch. Within a batch,
//! watermarks and peer cursors keep their maximum and the desk's upserted
//! rows their last write (`store::batch`); across batches, a stored
//! watermark or peer cursor only rises.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres};

use super::claims;
use crate::model::{Committed, Write};
use crate::store::batch::Rows;
use crate::store::{StoreError, StoreResult};

/// The unique constraint on (key, sender, client_msg_id) of `messages`.
const CLIENT_MSG_ID: &str = "messages_by_client_msg_id";

/// The unique index on (key, actor, client_note_id) of `desk_entries`.
const CLIENT_NOTE_ID: &str = "desk_entries_by_client_note_id";

/// Commits `batch` atomically: all of it or, on any error, none of it.
/// `checks`: whether claims are checked (unless this node uses the database
/// alone, see `tenancy`).
pub(super) async fn commit(
    writer: &PgPool,
    batch: &[Write],
    checks: bool,
) -> StoreResult<Committed> {
    if batch.is_empty() {
        return Ok(Committed::default());
    }
    // Convert before touching the database, so a bad value costs nothing.
    let mut rows = Rows::sort(batch)?;
    let mut tx = writer.begin().await?;
    // On an error the transaction is dropped, which rolls it back before
    // its connection is used again.
    let rebased = if checks {
        claims::check(&mut tx, &rows.log_claims, &rows.inbox_claims)
            .await
            .map_err(conflict)?
    } else {
        Vec::new()
    };
    rows.rebase(&rebased)?;
    write(&rows, &mut tx).await.map_err(duplicate_send)?;
    claims::bump(&mut tx, &rows.inbox_claims)
        .await
        .map_err(duplicate_send)?;
    // With synchronous_commit = on, COMMIT returns once the WAL is flushed.
    tx.commit().await?;
    Ok(Committed { rebased })
}

/// Names a failure of [`CLIENT_MSG_ID`] (or [`CLIENT_NOTE_ID`]) for what
/// it is: a send (a note) the engine took for new was stored before. Any other key taken, a serialization
/// failure or a deadlock means another node wrote first: a conflict.
fn duplicate_send(error: sqlx::Error) -> StoreError {
    match error.as_database_error() {
        Some(e)
            if e.is_unique_violation()
                && matches!(e.constraint(), Some(CLIENT_MSG_ID | CLIENT_NOTE_ID)) =>
        {
            StoreError::DuplicateSend
        }
        Some(e) if e.is_unique_violation() => StoreError::Conflict,
        Some(e) if matches!(e.code().as_deref(), Some(SERIALIZATION_FAILURE | DEADLOCK)) => {
            StoreError::Conflict
        }
        _ => error.into(),
    }
}

/// [`duplicate_send`] for the claims' store errors.
fn conflict(error: StoreError) -> StoreError {
    match error {
        StoreError::Backend(e) => match e.downcast::<sqlx::Error>() {
            Ok(e) => duplicate_send(*e),
            Err(e) => StoreError::Backend(e),
        },
        other => other,
    }
}

/// SQLSTATE of a serialization failure.
const SERIALIZATION_FAILURE: &str = "40001";

/// SQLSTATE of a detected deadlock.
const DEADLOCK: &str = "40P01";

/// One column of `rows`.
fn column<'r, T, V>(rows: &'r [T], value: impl Fn(&'r T) -> V) -> Vec<V> {
    rows.iter().map(value).collect()
}

/// A statement with its parameters bound.
type Statement<'q> = Query<'q, Postgres, PgArguments>;

/// Inserts `rows` with `sql`, its parameters bound by `columns`; nothing
/// for no rows.
async fn insert<'q, T>(
    conn: &mut PgConnection,
    rows: &[T],
    sql: &'static str,
    columns: impl FnOnce(Statement<'q>) -> Statement<'q>,
) -> sqlx::Result<()> {
    if !rows.is_empty() {
        columns(sqlx::query(sql)).execute(conn).await?;
    }
    Ok(())
}

/// Writes every row inside the caller's transaction, parents first.
async fn write(rows: &Rows<'_>, conn: &mut PgConnection) -> sqlx::Result<()> {
    let parties = &rows.parties;
    insert(
        conn,
        parties,
        "INSERT INTO parties (id, address, kind, display_name, password_hash, created_at_ms)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[],
                              $5::text[], $6::bigint[])",
        |q| {
            q.bind(column(parties, |p| p.id))
                .bind(column(parties, |p| p.address))
                .bind(column(parties, |p| p.kind))
                .bind(column(parties, |p| p.display_name))
                .bind(column(parties, |p| p.password_hash))
                .bind(column(parties, |p| p.created_at_ms))
        },
    )
    .await?;
    // Each new agent goes after the inbox's agents, in the batch's order;
    // one added before, or twice, is added once.
    let agents = &rows.inbox_agents;
    insert(
        conn,
        agents,
        "INSERT INTO inbox_agents (inbox, agent, position)
         SELECT new.inbox, new.agent,
                COALESCE((SELECT MAX(a.position) FROM inbox_agents a
                          WHERE a.inbox = new.inbox), 0)
                + ROW_NUMBER() OVER (PARTITION BY new.inbox ORDER BY new.n)
         FROM (SELECT DISTINCT ON (inbox, agent) inbox, agent, n
               FROM UNNEST($1::bigint[], $2::bigint[]) WITH ORDINALITY AS u (inbox, agent, n)
               ORDER BY inbox, agent, n) new
         WHERE NOT EXISTS (SELECT 1 FROM inbox_agents a
                           WHERE a.inbox = new.inbox AND a.agent = new.agent)
         ON CONFLICT (inbox, agent) DO NOTHING",
        |q| {
            q.bind(column(agents, |a| a.0))
                .bind(column(agents, |a| a.1))
        },
    )
    .await?;
    let conversations = &rows.conversations;
    insert(
        conn,
        conversations,
        "INSERT INTO conversations (key, id, subject, created_by, created_at_ms)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])",
        |q| {
            q.bind(column(conversations, |c| c.key))
                .bind(column(conversations, |c| c.id))
                .bind(column(conversations, |c| c.subject))
                .bind(column(conversations, |c| c.created_by))
                .bind(column(conversations, |c| c.created_at_ms))
        },
    )
    .await?;
    let members = &rows.members;
    insert(
        conn,
        members,
        "INSERT INTO members (key, party, position)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[])",
        |q| {
            q.bind(column(members, |m| m.0))
                .bind(column(members, |m| m.1))
                .bind(column(members, |m| m.2))
        },
    )
    .await?;
    let messages = &rows.messages;
    insert(
        conn,
        messages,
        "INSERT INTO messages (key, seq, sender, client_msg_id, sent_at_ms, body)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                              $5::bigint[], $6::bytea[])",
        |q| {
            q.bind(column(messages, |m| m.key))
                .bind(column(messages, |m| m.seq))
                .bind(column(messages, |m| m.sender))
                .bind(column(messages, |m| m.client_msg_id))
                .bind(column(messages, |m| m.sent_at_ms))
                .bind(column(messages, |m| m.body.as_slice()))
        },
    )
    .await?;
    for (log, sql) in [
        (
            &rows.events,
            "INSERT INTO events (party, seq, key, kind, ref_seq, actor, at_ms)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bigint[])",
        ),
        (
            &rows.inbox_events,
            "INSERT INTO inbox_events (inbox, iseq, key, kind, ref_seq, actor, at_ms)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bigint[])",
        ),
    ] {
        insert(conn, log, sql, |q| {
            q.bind(column(log, |e| e.party))
                .bind(column(log, |e| e.seq))
                .bind(column(log, |e| e.key))
                .bind(column(log, |e| e.kind))
                .bind(column(log, |e| e.ref_seq))
                .bind(column(log, |e| e.actor))
                .bind(column(log, |e| e.at_ms))
        })
        .await?;
    }
    let spans = &rows.spans;
    insert(
        conn,
        spans,
        "INSERT INTO event_spans (party, seq, inbox, iseq)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])",
        |q| {
            q.bind(column(spans, |s| s.0))
                .bind(column(spans, |s| s.1))
                .bind(column(spans, |s| s.2))
                .bind(column(spans, |s| s.3))
        },
    )
    .await?;
    let watermarks = &rows.watermarks;
    insert(
        conn,
        watermarks,
        "INSERT INTO watermarks (key, party, kind, up_to)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])
         ON CONFLICT (key, party, kind)
         DO UPDATE SET up_to = GREATEST(watermarks.up_to, excluded.up_to)",
        |q| {
            q.bind(column(watermarks, |w| w.0))
                .bind(column(watermarks, |w| w.1))
                .bind(column(watermarks, |w| w.2))
                .bind(column(watermarks, |w| w.3))
        },
    )
    .await?;
    let outbox = &rows.outbox;
    insert(
        conn,
        outbox,
        "INSERT INTO outbox (peer, seq, payload, enqueued_at_ms)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bigint[])",
        |q| {
            q.bind(column(outbox, |o| o.0))
                .bind(column(outbox, |o| o.1))
                .bind(column(outbox, |o| o.2))
                .bind(column(outbox, |o| o.3))
        },
    )
    .await?;
    let cursors = &rows.peer_committed;
    insert(
        conn,
        cursors,
        "INSERT INTO peer_cursors (peer, committed, committed_at_ms)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
         ON CONFLICT (peer)
         DO UPDATE SET committed = GREATEST(peer_cursors.committed, excluded.committed),
             committed_at_ms = GREATEST(peer_cursors.committed_at_ms, excluded.committed_at_ms)",
        |q| {
            q.bind(column(cursors, |c| c.0))
                .bind(column(cursors, |c| c.1))
                .bind(column(cursors, |c| c.2))
        },
    )
    .await?;
    for u in &rows.undelivered {
        sqlx::query(
            "INSERT INTO undelivered (peer, seq, refused, reason, payload, enqueued_at_ms,
                 failed_at_ms, party, event_seq, key, notice, replayed_as)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(u.peer)
        .bind(u.seq)
        .bind(u.refused)
        .bind(u.reason)
        .bind(u.payload)
        .bind(u.enqueued_at_ms)
        .bind(u.failed_at_ms)
        .bind(u.party)
        .bind(u.event_seq)
        .bind(u.key)
        .bind(u.notice.as_deref())
        .bind(u.replayed_as)
        .execute(&mut *conn)
        .await?;
    }
    for (key, sender, client_msg_id) in &rows.submitted {
        sqlx::query(
            "INSERT INTO submissions (key, sender, client_msg_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(*key)
        .bind(*sender)
        .bind(*client_msg_id)
        .execute(&mut *conn)
        .await?;
    }
    for (peer, seq, as_seq) in &rows.replayed {
        sqlx::query("UPDATE undelivered SET replayed_as = $3 WHERE peer = $1 AND seq = $2")
            .bind(*peer)
            .bind(*seq)
            .bind(*as_seq)
            .execute(&mut *conn)
            .await?;
    }
    write_desk(rows, conn).await
}

/// Writes the desk's rows: tickets, seats and settings replace stored ones
/// (a batch holds one of each row, see `store::batch`), entries are new.
async fn write_desk(rows: &Rows<'_>, conn: &mut PgConnection) -> sqlx::Result<()> {
    let tickets = &rows.tickets.rows;
    insert(
        conn,
        tickets,
        "INSERT INTO tickets (key, inbox, status, status_at_ms, owner_kind, owner, priority,
                              last_dseq, updated_at_ms, state)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                              $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                              $9::bigint[], $10::text[])
         ON CONFLICT (key) DO UPDATE SET inbox = excluded.inbox, status = excluded.status,
             status_at_ms = excluded.status_at_ms, owner_kind = excluded.owner_kind,
             owner = excluded.owner, priority = excluded.priority,
             last_dseq = excluded.last_dseq, updated_at_ms = excluded.updated_at_ms,
             state = excluded.state",
        |q| {
            q.bind(column(tickets, |t| t.key))
                .bind(column(tickets, |t| t.inbox))
                .bind(column(tickets, |t| t.status))
                .bind(column(tickets, |t| t.status_at_ms))
                .bind(column(tickets, |t| t.owner_kind))
                .bind(column(tickets, |t| t.owner))
                .bind(column(tickets, |t| t.priority))
                .bind(column(tickets, |t| t.last_dseq))
                .bind(column(tickets, |t| t.updated_at_ms))
                .bind(column(tickets, |t| t.state))
        },
    )
    .await?;
    let seats = &rows.seats.rows;
    insert(
        conn,
        seats,
        "INSERT INTO seats (inbox, agent, availability, capacity, last_assigned_ms)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                              $5::bigint[])
         ON CONFLICT (inbox, agent) DO UPDATE SET availability = excluded.availability,
             capacity = excluded.capacity, last_assigned_ms = excluded.last_assigned_ms",
        |q| {
            q.bind(column(seats, |s| s.inbox))
                .bind(column(seats, |s| s.agent))
                .bind(column(seats, |s| s.availability))
                .bind(column(seats, |s| s.capacity))
                .bind(column(seats, |s| s.last_assigned_ms))
        },
    )
    .await?;
    let settings = &rows.desk_settings.rows;
    insert(
        conn,
        settings,
        "INSERT INTO desk_settings (inbox, settings)
         SELECT * FROM UNNEST($1::bigint[], $2::text[])
         ON CONFLICT (inbox) DO UPDATE SET settings = excluded.settings",
        |q| {
            q.bind(column(settings, |s| s.0))
                .bind(column(settings, |s| s.1))
        },
    )
    .await?;
    let entries = &rows.desk_entries;
    insert(
        conn,
        entries,
        "INSERT INTO desk_entries (key, dseq, inbox, at_ms, actor, client_note_id, payload)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                              $5::bigint[], $6::text[], $7::bytea[])",
        |q| {
            q.bind(column(entries, |d| d.key))
                .bind(column(entries, |d| d.dseq))
                .bind(column(entries, |d| d.inbox))
                .bind(column(entries, |d| d.at_ms))
                .bind(column(entries, |d| d.actor))
                .bind(column(entries, |d| d.client_note_id))
                .bind(column(entries, |d| d.payload))
        },
    )
    .await
}
