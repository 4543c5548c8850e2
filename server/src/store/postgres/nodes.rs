//! What each node of several says of itself (`nodes`, migration 0003), and
//! which slots of conversations it orders (`slots`, migration 0004).

use sqlx::PgPool;

use crate::model::{NodeStatus, SlotLease};
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

/// One round of node `node`'s leases, in one transaction: renew what it
/// holds, give up what is beyond `fair`, take free or expired slots up to
/// `fair` (skipping slots another node is leasing at this moment), take
/// orphans (slots whose holder let a whole lease pass without renewing:
/// it died, and the others may not count it out yet), and read who holds
/// each slot.
pub(super) async fn lease_slots(
    writer: &PgPool,
    node: i64,
    fair: u32,
    lease_ms: i64,
    now_ms: i64,
) -> StoreResult<Vec<SlotLease>> {
    let until = now_ms + lease_ms;
    let mut tx = writer.begin().await?;
    let mut held: Vec<i64> =
        sqlx::query_scalar("UPDATE slots SET expires_at_ms = $2 WHERE owner = $1 RETURNING slot")
            .bind(node)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?;
    held.sort_unstable();
    let fair = usize::try_from(fair).unwrap_or(usize::MAX);
    if held.len() > fair {
        let excess = held.split_off(fair);
        sqlx::query(
            "UPDATE slots SET owner = NULL, expires_at_ms = 0 WHERE slot = ANY($1) AND owner = $2",
        )
        .bind(&excess)
        .bind(node)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "UPDATE slots SET owner = $1, expires_at_ms = $2
             WHERE slot IN (SELECT slot FROM slots
                            WHERE owner IS NOT NULL AND owner <> $1 AND expires_at_ms < $3
                            ORDER BY slot FOR UPDATE SKIP LOCKED)",
        )
        .bind(node)
        .bind(until)
        .bind(now_ms - lease_ms)
        .execute(&mut *tx)
        .await?;
    }
    if held.len() < fair {
        let wanted = i64::try_from(fair - held.len()).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE slots SET owner = $1, expires_at_ms = $2
             WHERE slot IN (SELECT slot FROM slots
                            WHERE owner IS NULL OR expires_at_ms < $3
                            ORDER BY slot LIMIT $4 FOR UPDATE SKIP LOCKED)",
        )
        .bind(node)
        .bind(until)
        .bind(now_ms)
        .bind(wanted)
        .execute(&mut *tx)
        .await?;
    }
    let leases = read_slots(&mut tx, now_ms).await?;
    tx.commit().await?;
    Ok(leases)
}

/// Who holds each slot at `now_ms`.
pub(super) async fn slots(reader: &PgPool, now_ms: i64) -> StoreResult<Vec<SlotLease>> {
    let mut conn = reader.acquire().await?;
    read_slots(&mut conn, now_ms).await
}

async fn read_slots(conn: &mut sqlx::PgConnection, now_ms: i64) -> StoreResult<Vec<SlotLease>> {
    let rows: Vec<(i64, Option<i64>, i64)> =
        sqlx::query_as("SELECT slot, owner, expires_at_ms FROM slots ORDER BY slot")
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(slot, owner, expires_at_ms)| {
            Some(SlotLease {
                slot: u32::try_from(slot).ok()?,
                owner: owner.filter(|_| expires_at_ms >= now_ms),
            })
        })
        .collect())
}
