//! PostgreSQL's side of the reads (`store::reads` has the statements both
//! backends share): its pool as a [`Reader`], with PostgreSQL's names in
//! the `events_since` statement and batched send lookups over arrays.

use std::sync::LazyLock;

use sqlx::PgPool;

use crate::model::{InboxHead, PartyId, StoredSend};
use crate::store::StoreResult;
use crate::store::columns;
use crate::store::reads::{self, Columns, Param, Reader, SendKey};

impl Reader for PgPool {
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

/// [`reads::events_since_sql`] in PostgreSQL's SQL.
static EVENTS_SINCE: LazyLock<&'static str> =
    LazyLock::new(|| reads::events_since_sql("GREATEST", "LEAST", "octet_length"));

/// [`reads::tickets_sql`] in PostgreSQL's SQL.
static TICKETS: LazyLock<&'static str> = LazyLock::new(|| {
    reads::tickets_sql("SELECT value::bigint FROM jsonb_array_elements_text(({})::jsonb)")
});

/// The stored sends among `wanted`, in one statement for the whole set.
async fn find_sends(
    reader: &PgPool,
    wanted: &[SendKey],
) -> StoreResult<Vec<(SendKey, StoredSend)>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<i64> = wanted.iter().map(|w| w.0).collect();
    let senders: Vec<i64> = wanted.iter().map(|w| w.1).collect();
    let ids: Vec<&str> = wanted.iter().map(|w| w.2.as_str()).collect();
    let rows = sqlx::query_as::<_, (i64, i64, String, i64, i64)>(
        "SELECT m.key, m.sender, m.client_msg_id, m.seq, m.sent_at_ms
         FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS wanted (k, s, c)
         JOIN messages m
           ON m.key = wanted.k AND m.sender = wanted.s AND m.client_msg_id = wanted.c",
    )
    .bind(keys)
    .bind(senders)
    .bind(ids)
    .fetch_all(reader)
    .await?;
    rows.into_iter()
        .map(|(key, sender, client_msg_id, seq, sent_at_ms)| {
            Ok((
                (key, sender, client_msg_id),
                columns::stored_send(seq, sent_at_ms)?,
            ))
        })
        .collect()
}

/// Where an inbox's log ends, with its follower version: one statement, so
/// one snapshot.
pub(super) async fn inbox_head(reader: &PgPool, inbox: PartyId) -> StoreResult<InboxHead> {
    let (head, version): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(iseq), 0) FROM inbox_events WHERE inbox = $1),
                (SELECT COALESCE(MAX(version), 0) FROM inbox_versions WHERE inbox = $1)",
    )
    .bind(inbox)
    .fetch_one(reader)
    .await?;
    Ok(InboxHead {
        head: columns::seq_from_db(head, "inbox_events.iseq")?,
        version: columns::seq_from_db(version, "inbox_versions.version")?,
    })
}
