//! Committing the engine's batches: one transaction on the writer, and as
//! few statements as the batch allows.
//!
//! Every statement costs a round trip to the connection's worker thread, so
//! a batch is sorted by table and written with multi-row statements: rows
//! are sent in chunks of power-of-two sizes ([`CHUNKS`]), which keeps the
//! number of distinct statement texts small enough for all of them to stay
//! prepared in the connection's statement cache. A batch of 256 sends
//! (≈1,300 rows) takes about a dozen statements.
//!
//! Tables are written parents first (conversations, members, messages,
//! activity, events, watermarks), so foreign keys hold whatever the order of
//! the batch. Within a batch, the last `Activity` of a conversation wins and
//! watermarks keep their maximum, as if the writes had run one by one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::LazyLock;

use sqlx::sqlite::{Sqlite, SqliteArguments};
use sqlx::{SqliteConnection, SqlitePool};

use super::seq_to_db;
use crate::model::{EventRef, ReceiptKind, Write};
use crate::store::{StoreError, StoreResult};

/// Event kinds as stored in `events.kind`.
pub(super) mod event_kind {
    /// A message; `ref_seq` is its seq.
    pub(crate) const MESSAGE: i64 = 1;
    /// The party was added to the conversation.
    pub(crate) const CONVERSATION_ADDED: i64 = 2;
    /// `actor`'s delivered watermark moved to `ref_seq`.
    pub(crate) const DELIVERED: i64 = 3;
    /// `actor`'s read watermark moved to `ref_seq`.
    pub(crate) const READ: i64 = 4;
}

/// Rows per multi-row statement, largest first; a batch's rows of one table
/// are split greedily into these sizes.
const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// Commits `batch` atomically: all of it or, on any error, none of it.
pub(super) async fn commit(writer: &SqlitePool, batch: &[Write]) -> StoreResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    // Convert before touching the database, so a bad value costs nothing.
    let rows = Rows::sort(batch)?;
    // IMMEDIATE takes the write lock up front; with one writer it never
    // waits, and it never has to upgrade a read lock halfway.
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    match rows.write(&mut tx).await.map_err(duplicate_send) {
        Ok(()) => {
            // WAL + synchronous=FULL: COMMIT returns after the WAL is fsync'd.
            tx.commit().await?;
            Ok(())
        }
        Err(e) => {
            // Roll back now rather than on drop, so the connection is clean
            // for the next batch; the error worth returning is the cause.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rolling back a failed batch failed");
            }
            Err(e)
        }
    }
}

/// Names a failure of `messages_by_client_msg_id` for what it is: a send
/// the engine took for new was stored before.
fn duplicate_send(error: StoreError) -> StoreError {
    match error {
        StoreError::Database(sqlx::Error::Database(e))
            if e.is_unique_violation() && e.message().contains("messages.client_msg_id") =>
        {
            StoreError::DuplicateSend
        }
        other => other,
    }
}

/// A conversation row.
struct ConversationRow<'a> {
    key: i64,
    id: &'a str,
    subject: &'a str,
    created_by: i64,
    created_at_ms: i64,
}

/// A message row.
struct MessageRow<'a> {
    key: i64,
    seq: i64,
    sender: i64,
    client_msg_id: &'a str,
    sent_at_ms: i64,
    body: &'a [u8],
}

/// An event row.
struct EventRow {
    party: i64,
    seq: i64,
    key: i64,
    kind: i64,
    ref_seq: i64,
    actor: Option<i64>,
    at_ms: i64,
}

/// A batch sorted by table.
#[derive(Default)]
struct Rows<'a> {
    conversations: Vec<ConversationRow<'a>>,
    /// (key, party, position)
    members: Vec<(i64, i64, i64)>,
    messages: Vec<MessageRow<'a>>,
    /// (key, last_seq, last_activity_ms), one per conversation.
    activity: Vec<(i64, i64, i64)>,
    events: Vec<EventRow>,
    /// (key, party, kind, up_to), one per watermark.
    watermarks: Vec<(i64, i64, i64, i64)>,
}

impl<'a> Rows<'a> {
    /// Sorts a batch into rows per table, coalescing updates of one row.
    fn sort(batch: &'a [Write]) -> StoreResult<Self> {
        let mut rows = Rows::default();
        let mut activity_at: HashMap<i64, usize> = HashMap::new();
        let mut watermark_at: HashMap<(i64, i64, i64), usize> = HashMap::new();
        for write in batch {
            match write {
                Write::NewConversation {
                    key,
                    id,
                    subject,
                    created_by,
                    created_at_ms,
                    members,
                } => {
                    rows.conversations.push(ConversationRow {
                        key: *key,
                        id: id.as_str(),
                        subject,
                        created_by: *created_by,
                        created_at_ms: *created_at_ms,
                    });
                    for (position, party) in (1..).zip(members) {
                        rows.members.push((*key, *party, position));
                    }
                }
                Write::Message {
                    key,
                    seq,
                    sender,
                    client_msg_id,
                    sent_at_ms,
                    body,
                } => rows.messages.push(MessageRow {
                    key: *key,
                    seq: seq_to_db(*seq)?,
                    sender: *sender,
                    client_msg_id,
                    sent_at_ms: *sent_at_ms,
                    body,
                }),
                Write::Activity {
                    key,
                    last_seq,
                    last_activity_ms,
                } => {
                    let row = (*key, seq_to_db(*last_seq)?, *last_activity_ms);
                    match activity_at.entry(*key) {
                        Entry::Occupied(at) => rows.activity[*at.get()] = row,
                        Entry::Vacant(at) => {
                            at.insert(rows.activity.len());
                            rows.activity.push(row);
                        }
                    }
                }
                Write::Event {
                    party,
                    seq,
                    key,
                    what,
                    at_ms,
                } => {
                    let (kind, ref_seq, actor) = match *what {
                        EventRef::Message { seq } => (event_kind::MESSAGE, seq_to_db(seq)?, None),
                        EventRef::ConversationAdded => (event_kind::CONVERSATION_ADDED, 0, None),
                        EventRef::Receipt { party, kind, up_to } => {
                            let kind = match kind {
                                ReceiptKind::Delivered => event_kind::DELIVERED,
                                ReceiptKind::Read => event_kind::READ,
                            };
                            (kind, seq_to_db(up_to)?, Some(party))
                        }
                    };
                    rows.events.push(EventRow {
                        party: *party,
                        seq: seq_to_db(*seq)?,
                        key: *key,
                        kind,
                        ref_seq,
                        actor,
                        at_ms: *at_ms,
                    });
                }
                Write::Watermark {
                    key,
                    party,
                    kind,
                    up_to,
                } => {
                    let up_to = seq_to_db(*up_to)?;
                    match watermark_at.entry((*key, *party, kind.as_i64())) {
                        Entry::Occupied(at) => {
                            let row = &mut rows.watermarks[*at.get()];
                            row.3 = row.3.max(up_to);
                        }
                        Entry::Vacant(at) => {
                            at.insert(rows.watermarks.len());
                            rows.watermarks.push((*key, *party, kind.as_i64(), up_to));
                        }
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Writes every row inside the caller's transaction, parents first.
    async fn write(&self, conn: &mut SqliteConnection) -> StoreResult<()> {
        for c in &self.conversations {
            sqlx::query(
                "INSERT INTO conversations
                     (key, id, subject, created_by, created_at_ms, last_seq, last_activity_ms)
                 VALUES ($1, $2, $3, $4, $5, 0, $5)",
            )
            .bind(c.key)
            .bind(c.id)
            .bind(c.subject)
            .bind(c.created_by)
            .bind(c.created_at_ms)
            .execute(&mut *conn)
            .await?;
        }
        chunked(
            conn,
            &MEMBERS,
            &self.members,
            |q, &(key, party, position)| q.bind(key).bind(party).bind(position),
        )
        .await?;
        chunked(conn, &MESSAGES, &self.messages, |q, m| {
            q.bind(m.key)
                .bind(m.seq)
                .bind(m.sender)
                .bind(m.client_msg_id)
                .bind(m.sent_at_ms)
                .bind(m.body)
        })
        .await?;
        chunked(conn, &ACTIVITY, &self.activity, |q, &(key, seq, at)| {
            q.bind(key).bind(seq).bind(at)
        })
        .await?;
        chunked(conn, &EVENTS, &self.events, |q, e| {
            q.bind(e.party)
                .bind(e.seq)
                .bind(e.key)
                .bind(e.kind)
                .bind(e.ref_seq)
                .bind(e.actor)
                .bind(e.at_ms)
        })
        .await?;
        chunked(
            conn,
            &WATERMARKS,
            &self.watermarks,
            |q, &(key, party, kind, up_to)| q.bind(key).bind(party).bind(kind).bind(up_to),
        )
        .await?;
        Ok(())
    }
}

// --- multi-row statements ------------------------------------------------------

/// A query under construction.
type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

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

/// `UPDATE … FROM (VALUES …)`: one statement sets the activity of many
/// conversations (keys are unique within it, see [`Rows::sort`]).
static ACTIVITY: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "UPDATE conversations SET last_seq = v.column2, last_activity_ms = v.column3 FROM (",
        3,
        ") AS v WHERE conversations.key = v.column1",
    )
});

static EVENTS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO events (party, seq, key, kind, ref_seq, actor, at_ms)",
        7,
        "",
    )
});

static WATERMARKS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO watermarks (key, party, kind, up_to)",
        4,
        " ON CONFLICT (key, party, kind) DO UPDATE SET up_to = MAX(up_to, excluded.up_to)",
    )
});

/// Runs `statements` over `rows` in as few chunks as [`CHUNKS`] allows.
async fn chunked<T>(
    conn: &mut SqliteConnection,
    statements: &MultiRow,
    rows: &[T],
    bind: impl for<'q> Fn(Query<'q>, &'q T) -> Query<'q>,
) -> StoreResult<()> {
    let mut rest = rows;
    for (&n, &text) in CHUNKS.iter().zip(&statements.texts) {
        while rest.len() >= n {
            let (chunk, tail) = rest.split_at(n);
            let query = chunk.iter().fold(sqlx::query(text), &bind);
            query.execute(&mut *conn).await?;
            rest = tail;
        }
    }
    Ok(())
}
