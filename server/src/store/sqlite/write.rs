//! Committing the engine's batches: one transaction on the writer
//! connection (on its thread, see `write_thread.rs`), and as few statements
//! as the batch allows.
//!
//! A batch is sorted by table (`store::batch`) and written with multi-row
//! statements: rows go in chunks of power-of-two sizes ([`CHUNKS`]), which
//! keeps the number of distinct statement texts small enough for all of
//! them to stay prepared. A batch of 256 sends (≈1,300 rows) takes about a dozen
//! statements.
//!
//! Tables are written parents first (parties, inbox agents, conversations,
//! members, messages, events, inbox events, spans, watermarks, outbox,
//! peer cursors, then the desk's tickets, seats, settings and entries), so
//! foreign keys hold whatever the order of the batch. Within a batch,
//! watermarks and peer cursors keep their maximum, and the desk's upserted
//! rows the last write of each, as if the writes had run one by one.

use std::sync::LazyLock;

use rusqlite::{Connection, ToSql, TransactionBehavior};

use crate::model::Write;
use crate::store::batch::{EventRow, Rows};
use crate::store::{StoreError, StoreResult};

/// Rows per multi-row statement, largest first; a batch's rows of one table
/// are split greedily into these sizes.
const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// Commits `batch` atomically: all of it or, on any error, none of it.
pub(super) fn commit(conn: &mut Connection, batch: &[Write]) -> StoreResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    // Convert before touching the database, so a bad value costs nothing.
    let rows = Rows::sort(batch)?;
    // IMMEDIATE takes the write lock up front; with one writer it never
    // waits, and it never has to upgrade a read lock halfway. Dropping the
    // transaction on an error rolls it back, leaving the connection clean
    // for the next batch.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    write(&rows, &tx).map_err(duplicate_send)?;
    // WAL + synchronous=FULL: COMMIT returns after the WAL is fsync'd.
    tx.commit()?;
    Ok(())
}

/// Names a failure of `messages_by_client_msg_id` (or of
/// `desk_entries_by_client_note_id`) for what it is: a send (a note) the
/// engine took for new was stored before.
fn duplicate_send(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(e, Some(message))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && (message.contains("messages.client_msg_id")
                    || message.contains("desk_entries.client_note_id")) =>
        {
            StoreError::DuplicateSend
        }
        _ => error.into(),
    }
}

/// Writes every row inside the caller's transaction, parents first.
fn write(rows: &Rows<'_>, conn: &Connection) -> rusqlite::Result<()> {
    for p in &rows.parties {
        conn.prepare_cached(
            "INSERT INTO parties
                 (id, address, kind, display_name, password_hash, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(rusqlite::params![
            p.id,
            p.address,
            p.kind,
            p.display_name,
            p.password_hash,
            p.created_at_ms
        ])?;
    }
    for (inbox, agent) in &rows.inbox_agents {
        conn.prepare_cached(
            "INSERT INTO inbox_agents (inbox, agent, position)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(position), 0) + 1
                              FROM inbox_agents WHERE inbox = ?1))
             ON CONFLICT (inbox, agent) DO NOTHING",
        )?
        .execute(rusqlite::params![inbox, agent])?;
    }
    for c in &rows.conversations {
        conn.prepare_cached(
            "INSERT INTO conversations
                 (key, id, subject, created_by, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(rusqlite::params![
            c.key,
            c.id,
            c.subject,
            c.created_by,
            c.created_at_ms
        ])?;
    }
    chunked(
        conn,
        &MEMBERS,
        &rows.members,
        |s, &(key, party, position)| {
            s.put(key)?.put(party)?.put(position)?;
            Ok(())
        },
    )?;
    chunked(conn, &MESSAGES, &rows.messages, |s, m| {
        s.put(m.key)?
            .put(m.seq)?
            .put(m.sender)?
            .put(m.client_msg_id)?
            .put(m.sent_at_ms)?
            .put(m.body.as_slice())?;
        Ok(())
    })?;
    let event = |s: &mut Binder<'_, '_>, e: &EventRow| {
        s.put(e.party)?
            .put(e.seq)?
            .put(e.key)?
            .put(e.kind)?
            .put(e.ref_seq)?
            .put(e.actor)?
            .put(e.at_ms)?;
        Ok(())
    };
    chunked(conn, &EVENTS, &rows.events, event)?;
    chunked(conn, &INBOX_EVENTS, &rows.inbox_events, event)?;
    chunked(
        conn,
        &SPANS,
        &rows.spans,
        |s, &(party, seq, inbox, iseq)| {
            s.put(party)?.put(seq)?.put(inbox)?.put(iseq)?;
            Ok(())
        },
    )?;
    chunked(
        conn,
        &WATERMARKS,
        &rows.watermarks,
        |s, &(key, party, kind, up_to)| {
            s.put(key)?.put(party)?.put(kind)?.put(up_to)?;
            Ok(())
        },
    )?;
    for (peer, seq, payload, enqueued_at_ms) in &rows.outbox {
        conn.prepare_cached(
            "INSERT INTO outbox (peer, seq, payload, enqueued_at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(rusqlite::params![peer, seq, payload, enqueued_at_ms])?;
    }
    for (peer, up_to, at_ms) in &rows.peer_committed {
        conn.prepare_cached(
            "INSERT INTO peer_cursors (peer, committed, committed_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer) DO UPDATE SET committed = MAX(committed, excluded.committed),
                 committed_at_ms = MAX(committed_at_ms, excluded.committed_at_ms)",
        )?
        .execute(rusqlite::params![peer, up_to, at_ms])?;
    }
    for u in &rows.undelivered {
        conn.prepare_cached(
            "INSERT INTO undelivered (peer, seq, refused, reason, payload, enqueued_at_ms,
                 failed_at_ms, party, event_seq, key, notice, replayed_as)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(rusqlite::params![
            u.peer,
            u.seq,
            u.refused,
            u.reason,
            u.payload,
            u.enqueued_at_ms,
            u.failed_at_ms,
            u.party,
            u.event_seq,
            u.key,
            u.notice,
            u.replayed_as
        ])?;
    }
    for (key, sender, client_msg_id) in &rows.submitted {
        conn.prepare_cached(
            "INSERT INTO submissions (key, sender, client_msg_id) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(rusqlite::params![key, sender, client_msg_id])?;
    }
    for (peer, seq, as_seq) in &rows.replayed {
        conn.prepare_cached(
            "UPDATE undelivered SET replayed_as = ?3 WHERE peer = ?1 AND seq = ?2",
        )?
        .execute(rusqlite::params![peer, seq, as_seq])?;
    }
    chunked(conn, &TICKETS, &rows.tickets.rows, |s, t| {
        s.put(t.key)?
            .put(t.inbox)?
            .put(t.status)?
            .put(t.status_at_ms)?
            .put(t.owner_kind)?
            .put(t.owner)?
            .put(t.priority)?
            .put(t.last_dseq)?
            .put(t.updated_at_ms)?
            .put(t.state)?;
        Ok(())
    })?;
    chunked(conn, &SEATS, &rows.seats.rows, |s, seat| {
        s.put(seat.inbox)?
            .put(seat.agent)?
            .put(seat.availability)?
            .put(seat.capacity)?
            .put(seat.last_assigned_ms)?;
        Ok(())
    })?;
    chunked(
        conn,
        &DESK_SETTINGS,
        &rows.desk_settings.rows,
        |s, &(inbox, settings)| {
            s.put(inbox)?.put(settings)?;
            Ok(())
        },
    )?;
    chunked(conn, &DESK_ENTRIES, &rows.desk_entries, |s, d| {
        s.put(d.key)?
            .put(d.dseq)?
            .put(d.inbox)?
            .put(d.at_ms)?
            .put(d.actor)?
            .put(d.client_note_id)?
            .put(d.payload)?;
        Ok(())
    })?;
    Ok(())
}

// --- multi-row statements ------------------------------------------------------

/// One statement per chunk size, all of the form `head VALUES (…), (…) tail`.
struct MultiRow {
    /// One per entry of [`CHUNKS`].
    texts: [&'static str; CHUNKS.len()],
}

impl MultiRow {
    /// Builds the texts for rows of `columns` parameters each.
    fn new(head: &str, columns: usize, tail: &str) -> Self {
        let row = format!("({})", vec!["?"; columns].join(", "));
        let texts = CHUNKS.map(|n| {
            let text = format!("{head} VALUES {}{tail}", vec![row.as_str(); n].join(", "));
            // Built once per process and kept for its lifetime, because
            // sqlx takes statement texts as `&'static str`.
            &*Box::leak(text.into_boxed_str())
        });
        Self { texts }
    }
}

static MEMBERS: LazyLock<MultiRow> =
    LazyLock::new(|| MultiRow::new("INSERT INTO members (key, party, position)", 3, ""));

static MESSAGES: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO messages (key, seq, sender, client_msg_id, sent_at_ms, body)",
        6,
        "",
    )
});

static EVENTS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO events (party, seq, key, kind, ref_seq, actor, at_ms)",
        7,
        "",
    )
});

static INBOX_EVENTS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO inbox_events (inbox, iseq, key, kind, ref_seq, actor, at_ms)",
        7,
        "",
    )
});

static SPANS: LazyLock<MultiRow> =
    LazyLock::new(|| MultiRow::new("INSERT INTO event_spans (party, seq, inbox, iseq)", 4, ""));

static WATERMARKS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO watermarks (key, party, kind, up_to)",
        4,
        " ON CONFLICT (key, party, kind) DO UPDATE SET up_to = MAX(up_to, excluded.up_to)",
    )
});

static TICKETS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO tickets (key, inbox, status, status_at_ms, owner_kind, owner, priority,
                              last_dseq, updated_at_ms, state)",
        10,
        " ON CONFLICT (key) DO UPDATE SET inbox = excluded.inbox, status = excluded.status,
              status_at_ms = excluded.status_at_ms, owner_kind = excluded.owner_kind,
              owner = excluded.owner, priority = excluded.priority,
              last_dseq = excluded.last_dseq, updated_at_ms = excluded.updated_at_ms,
              state = excluded.state",
    )
});

static SEATS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO seats (inbox, agent, availability, capacity, last_assigned_ms)",
        5,
        " ON CONFLICT (inbox, agent) DO UPDATE SET availability = excluded.availability,
              capacity = excluded.capacity, last_assigned_ms = excluded.last_assigned_ms",
    )
});

static DESK_SETTINGS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO desk_settings (inbox, settings)",
        2,
        " ON CONFLICT (inbox) DO UPDATE SET settings = excluded.settings",
    )
});

static DESK_ENTRIES: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO desk_entries (key, dseq, inbox, at_ms, actor, client_note_id, payload)",
        7,
        "",
    )
});

/// Runs `statements` over `rows` in as few chunks as [`CHUNKS`] allows.
fn chunked<T>(
    conn: &Connection,
    statements: &MultiRow,
    rows: &[T],
    bind: impl Fn(&mut Binder<'_, '_>, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut rest = rows;
    for (&n, &text) in CHUNKS.iter().zip(&statements.texts) {
        while rest.len() >= n {
            let (chunk, tail) = rest.split_at(n);
            let mut statement = conn.prepare_cached(text)?;
            let mut binder = Binder {
                statement: &mut statement,
                next: 1,
            };
            for row in chunk {
                bind(&mut binder, row)?;
            }
            statement.raw_execute()?;
            rest = tail;
        }
    }
    Ok(())
}

/// Binds a multi-row statement's parameters one after the other.
struct Binder<'s, 'c> {
    statement: &'s mut rusqlite::CachedStatement<'c>,
    next: usize,
}

impl Binder<'_, '_> {
    /// Binds the next parameter.
    fn put(&mut self, value: impl ToSql) -> rusqlite::Result<&mut Self> {
        self.statement.raw_bind_parameter(self.next, value)?;
        self.next += 1;
        Ok(self)
    }
}
