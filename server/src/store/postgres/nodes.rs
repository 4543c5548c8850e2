//! What each node of several says of itself (`nodes`, migration 0003).

use sqlx::PgPool;

use crate::model::NodeStatus;
use crate::store::StoreResult;
use crate::store::columns::{now_ms, seq_from_db, seq_to_db};

/// A node's report is forgotten a day after it stopped reporting.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Stores `status` as node `status.id`'s latest report.
pub(super) async fn report(writer: &PgPool, status: &NodeStatus) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO nodes (id, host, listen, started_at_ms, seen_at_ms, nats_connected,
                            sessions, batches, conflicts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET
             seen_at_ms = EXCLUDED.seen_at_ms, nats_connected = EXCLUDED.nats_connected,
             sessions = EXCLUDED.sessions, batches = EXCLUDED.batches,
             conflicts = EXCLUDED.conflicts",
    )
    .bind(status.id)
    .bind(&status.host)
    .bind(&status.listen)
    .bind(status.started_at_ms)
    .bind(status.seen_at_ms)
    .bind(status.nats_connected)
    .bind(seq_to_db(status.sessions)?)
    .bind(seq_to_db(status.batches)?)
    .bind(seq_to_db(status.conflicts)?)
    .execute(writer)
    .await?;
    sqlx::query("DELETE FROM nodes WHERE seen_at_ms < $1")
        .bind(now_ms() - FORGET_AFTER_MS)
        .execute(writer)
        .await?;
    Ok(())
}

type NodeColumns = (i64, String, String, i64, i64, bool, i64, i64, i64);

/// Every node's latest report, most recently started first.
pub(super) async fn all(reader: &PgPool) -> StoreResult<Vec<NodeStatus>> {
    let rows: Vec<NodeColumns> = sqlx::query_as(
        "SELECT id, host, listen, started_at_ms, seen_at_ms, nats_connected,
                sessions, batches, conflicts
         FROM nodes ORDER BY started_at_ms DESC, id",
    )
    .fetch_all(reader)
    .await?;
    rows.into_iter()
        .map(
            |(
                id,
                host,
                listen,
                started_at_ms,
                seen_at_ms,
                nats_connected,
                sessions,
                batches,
                conflicts,
            )| {
                Ok(NodeStatus {
                    id,
                    host,
                    listen,
                    started_at_ms,
                    seen_at_ms,
                    nats_connected,
                    sessions: seq_from_db(sessions, "nodes.sessions")?,
                    batches: seq_from_db(batches, "nodes.batches")?,
                    conflicts: seq_from_db(conflicts, "nodes.conflicts")?,
                })
            },
        )
        .collect()
}
