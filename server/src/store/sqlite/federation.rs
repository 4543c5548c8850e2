//! Peer servers and acknowledgements of the outbox, written on the writer
//! thread (`store::reads` reads them; the engine's batches queue outbox
//! rows and raise committed cursors, `write.rs`).

use rusqlite::{Connection, params};

use crate::model::PeerRecord;
use crate::store::StoreResult;
use crate::store::columns::seq_to_db;

/// Stores a peer server, replacing the one with its domain.
pub(super) fn put_peer(writer: &mut Connection, peer: &PeerRecord) -> StoreResult<()> {
    writer
        .prepare_cached(
            "INSERT INTO peers (domain, address, fingerprint, added_at_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (domain) DO UPDATE SET address = excluded.address,
                 fingerprint = excluded.fingerprint, added_at_ms = excluded.added_at_ms",
        )?
        .execute(params![
            peer.domain,
            peer.address,
            peer.fingerprint,
            peer.added_at_ms
        ])?;
    Ok(())
}

/// Removes a peer server; whether it was configured.
pub(super) fn remove_peer(writer: &mut Connection, domain: &str) -> StoreResult<bool> {
    let removed = writer
        .prepare_cached("DELETE FROM peers WHERE domain = ?1")?
        .execute(params![domain])?;
    Ok(removed > 0)
}

/// Deletes the outbox rows toward `peer` up to `up_to` and raises its
/// acknowledged cursor, in one transaction.
pub(super) fn ack_outbox(writer: &mut Connection, peer: &str, up_to: u64) -> StoreResult<()> {
    let up_to = seq_to_db(up_to)?;
    let tx = writer.transaction()?;
    tx.prepare_cached("DELETE FROM outbox WHERE peer = ?1 AND seq <= ?2")?
        .execute(params![peer, up_to])?;
    tx.prepare_cached(
        "INSERT INTO peer_cursors (peer, acked) VALUES (?1, ?2)
         ON CONFLICT (peer) DO UPDATE SET acked = MAX(acked, excluded.acked)",
    )?
    .execute(params![peer, up_to])?;
    tx.commit()?;
    Ok(())
}
