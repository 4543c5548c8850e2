//! Peer servers and acknowledgements of the outbox, written on the write
//! pool (`store::reads` reads them; the engine's batches queue outbox rows
//! and raise committed cursors, `write.rs`).

use sqlx::PgPool;

use crate::model::PeerRecord;
use crate::store::StoreResult;
use crate::store::columns::seq_to_db;

/// Stores a peer server, replacing the one with its domain.
pub(super) async fn put_peer(writer: &PgPool, peer: &PeerRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO peers (domain, address, fingerprint, added_at_ms)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (domain) DO UPDATE SET address = excluded.address,
             fingerprint = excluded.fingerprint, added_at_ms = excluded.added_at_ms",
    )
    .bind(&peer.domain)
    .bind(&peer.address)
    .bind(&peer.fingerprint)
    .bind(peer.added_at_ms)
    .execute(writer)
    .await?;
    Ok(())
}

/// Removes a peer server; whether it was configured.
pub(super) async fn remove_peer(writer: &PgPool, domain: &str) -> StoreResult<bool> {
    let removed = sqlx::query("DELETE FROM peers WHERE domain = $1")
        .bind(domain)
        .execute(writer)
        .await?
        .rows_affected();
    Ok(removed > 0)
}

/// Deletes the outbox rows toward `peer` up to `up_to` and raises its
/// acknowledged cursor, in one transaction (two nodes' acks of one peer
/// meet at the cursor's row lock, and it keeps the higher).
pub(super) async fn ack_outbox(writer: &PgPool, peer: &str, up_to: u64) -> StoreResult<()> {
    let up_to = seq_to_db(up_to)?;
    let mut tx = writer.begin().await?;
    sqlx::query("DELETE FROM outbox WHERE peer = $1 AND seq <= $2")
        .bind(peer)
        .bind(up_to)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO peer_cursors (peer, acked) VALUES ($1, $2)
         ON CONFLICT (peer) DO UPDATE SET acked = GREATEST(peer_cursors.acked, excluded.acked)",
    )
    .bind(peer)
    .bind(up_to)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
