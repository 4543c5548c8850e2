//! SQLite's side of the reads (`store::reads` has the statements both
//! backends share): its pool as a [`Reader`], with SQLite's names in the
//! `events_since` statement and batched send lookups in `VALUES` lists.

use std::sync::LazyLock;

use sqlx::SqlitePool;

use crate::model::StoredSend;
use crate::store::StoreResult;
use crate::store::columns;
use crate::store::reads::{self, Columns, Param, Reader, SendKey};

impl Reader for SqlitePool {
    async fn rows<R: Columns>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> StoreResult<Vec<R>> {
        Ok(reads::bind(sqlx::query_as(sql), params)
            .fetch_all(self)
            .await?)
    }

    fn events_since_sql(&self) -> &'static str {
        &EVENTS_SINCE
    }

    fn tickets_sql(&self) -> &'static str {
        &TICKETS
    }

    async fn find_sends(&self, wanted: &[SendKey]) -> StoreResult<Vec<(SendKey, StoredSend)>> {
        find_sends(self, wanted).await
    }
}

/// [`reads::events_since_sql`] in SQLite's SQL: its scalar MAX and MIN
/// take several arguments.
static EVENTS_SINCE: LazyLock<&'static str> =
    LazyLock::new(|| reads::events_since_sql("MAX", "MIN", "length"));

/// [`reads::tickets_sql`] in SQLite's SQL: a JSON array's values are
/// the rows of `json_each`.
static TICKETS: LazyLock<&'static str> =
    LazyLock::new(|| reads::tickets_sql("SELECT value FROM json_each({})"));

/// Triples per lookup statement, largest first; a lookup is split greedily
/// into these sizes so only a few statement texts exist (all stay prepared).
const LOOKUP_CHUNKS: [usize; 4] = [128, 32, 8, 1];

/// One statement text per entry of [`LOOKUP_CHUNKS`], built once per
/// process and kept for its lifetime (sqlx takes texts as `&'static str`).
static LOOKUP_TEXTS: LazyLock<[&'static str; 4]> = LazyLock::new(|| {
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
async fn find_sends(
    reader: &SqlitePool,
    wanted: &[SendKey],
) -> StoreResult<Vec<(SendKey, StoredSend)>> {
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
            let stored = columns::stored_send(seq, sent_at_ms)?;
            found.push(((key, sender, client_msg_id), stored));
        }
        rest = tail;
    }
    Ok(found)
}
