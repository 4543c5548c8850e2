//! Committing the engine's batches: one transaction on the writer
//! connection (on its thread, see `write_thread.rs`), and as few statements
//! as the batch allows.
//!
//! A batch is sorted by table and written with multi-row statements: rows
//! go in chunks of power-of-two sizes ([`CHUNKS`]), which keeps the number
//! of distinct statement texts small enough for all of them to stay
//! prepared. A batch of 256 sends (≈1,300 rows) takes about a dozen
//! statements.
//!
//! Tables are written parents first (parties, inbox agents, conversations,
//! members, messages, events, inbox events, spans, watermarks, outbox), so
//! foreign keys hold whatever the order of the batch. Within a batch,
//! watermarks keep their maximum, as if the writes had run one by one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::LazyLock;

use rusqlite::{Connection, ToSql, TransactionBehavior};

use super::seq_to_db;
use crate::model::{EventRef, ReceiptKind, Write};
use crate::store::{StoreError, StoreResult, body};

/// Event kinds as stored in `events.kind`.
pub(super) mod event_kind {
    /// A message; `ref_seq` is its seq.
    pub(crate) const MESSAGE: i64 = 1;
    /// The party was added to the conversation; `ref_seq` is the
    /// conversation's last seq at that moment.
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
    rows.write(&tx).map_err(duplicate_send)?;
    // WAL + synchronous=FULL: COMMIT returns after the WAL is fsync'd.
    tx.commit()?;
    Ok(())
}

/// Names a failure of `messages_by_client_msg_id` for what it is: a send
/// the engine took for new was stored before.
fn duplicate_send(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(e, Some(message))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.contains("messages.client_msg_id") =>
        {
            StoreError::DuplicateSend
        }
        _ => error.into(),
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

/// A party row.
struct PartyRow<'a> {
    id: i64,
    address: &'a str,
    kind: i64,
    display_name: &'a str,
    password_hash: Option<&'a str>,
    created_at_ms: i64,
}

/// A message row.
struct MessageRow<'a> {
    key: i64,
    seq: i64,
    sender: i64,
    client_msg_id: &'a str,
    sent_at_ms: i64,
    body: Vec<u8>,
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

impl EventRow {
    /// The row of event `seq` of `log` (a party's or an inbox's).
    fn new(log: i64, seq: u64, key: i64, what: EventRef, at_ms: i64) -> StoreResult<Self> {
        let (kind, ref_seq, actor) = match what {
            EventRef::Message { seq } => (event_kind::MESSAGE, seq_to_db(seq)?, None),
            EventRef::ConversationAdded { last_seq } => {
                (event_kind::CONVERSATION_ADDED, seq_to_db(last_seq)?, None)
            }
            EventRef::Receipt { party, kind, up_to } => {
                let kind = match kind {
                    ReceiptKind::Delivered => event_kind::DELIVERED,
                    ReceiptKind::Read => event_kind::READ,
                };
                (kind, seq_to_db(up_to)?, Some(party))
            }
        };
        Ok(Self {
            party: log,
            seq: seq_to_db(seq)?,
            key,
            kind,
            ref_seq,
            actor,
            at_ms,
        })
    }
}

/// A batch sorted by table.
#[derive(Default)]
struct Rows<'a> {
    parties: Vec<PartyRow<'a>>,
    /// (inbox, agent)
    inbox_agents: Vec<(i64, i64)>,
    conversations: Vec<ConversationRow<'a>>,
    /// (key, party, position)
    members: Vec<(i64, i64, i64)>,
    messages: Vec<MessageRow<'a>>,
    events: Vec<EventRow>,
    /// Rows of inbox logs (`party` is the inbox, `seq` its iseq).
    inbox_events: Vec<EventRow>,
    /// (party, seq, inbox, iseq)
    spans: Vec<(i64, i64, i64, i64)>,
    /// (key, party, kind, up_to), one per watermark.
    watermarks: Vec<(i64, i64, i64, i64)>,
    /// (peer, seq, payload)
    outbox: Vec<(&'a str, i64, &'a [u8])>,
}

impl<'a> Rows<'a> {
    /// Sorts a batch into rows per table, coalescing updates of one row.
    fn sort(batch: &'a [Write]) -> StoreResult<Self> {
        let mut rows = Rows::default();
        let mut watermark_at: HashMap<(i64, i64, i64), usize> = HashMap::new();
        for write in batch {
            match write {
                Write::NewParty {
                    id,
                    party,
                    created_at_ms,
                } => rows.parties.push(PartyRow {
                    id: *id,
                    address: party.address.as_str(),
                    kind: party.kind.as_i64(),
                    display_name: &party.display_name,
                    password_hash: party.password_hash.as_deref(),
                    created_at_ms: *created_at_ms,
                }),
                Write::InboxAgent { inbox, agent } => rows.inbox_agents.push((*inbox, *agent)),
                Write::Outbox(row) => {
                    rows.outbox
                        .push((row.peer.as_str(), seq_to_db(row.seq)?, &row.payload[..]));
                }
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
                    body: body::encode(body),
                }),
                Write::Event {
                    party,
                    seq,
                    key,
                    what,
                    at_ms,
                } => rows
                    .events
                    .push(EventRow::new(*party, *seq, *key, *what, *at_ms)?),
                Write::InboxEvent {
                    inbox,
                    iseq,
                    key,
                    what,
                    at_ms,
                } => rows
                    .inbox_events
                    .push(EventRow::new(*inbox, *iseq, *key, *what, *at_ms)?),
                Write::Span {
                    party,
                    seq,
                    inbox,
                    iseq,
                } => rows
                    .spans
                    .push((*party, seq_to_db(*seq)?, *inbox, seq_to_db(*iseq)?)),
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
    fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        for p in &self.parties {
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
        for (inbox, agent) in &self.inbox_agents {
            conn.prepare_cached(
                "INSERT INTO inbox_agents (inbox, agent, position)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(position), 0) + 1
                                  FROM inbox_agents WHERE inbox = ?1))
                 ON CONFLICT (inbox, agent) DO NOTHING",
            )?
            .execute(rusqlite::params![inbox, agent])?;
        }
        for c in &self.conversations {
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
            &self.members,
            |s, &(key, party, position)| {
                s.put(key)?.put(party)?.put(position)?;
                Ok(())
            },
        )?;
        chunked(conn, &MESSAGES, &self.messages, |s, m| {
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
        chunked(conn, &EVENTS, &self.events, event)?;
        chunked(conn, &INBOX_EVENTS, &self.inbox_events, event)?;
        chunked(
            conn,
            &SPANS,
            &self.spans,
            |s, &(party, seq, inbox, iseq)| {
                s.put(party)?.put(seq)?.put(inbox)?.put(iseq)?;
                Ok(())
            },
        )?;
        chunked(
            conn,
            &WATERMARKS,
            &self.watermarks,
            |s, &(key, party, kind, up_to)| {
                s.put(key)?.put(party)?.put(kind)?.put(up_to)?;
                Ok(())
            },
        )?;
        for (peer, seq, payload) in &self.outbox {
            conn.prepare_cached("INSERT INTO outbox (peer, seq, payload) VALUES (?1, ?2, ?3)")?
                .execute(rusqlite::params![peer, seq, payload])?;
        }
        Ok(())
    }
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
