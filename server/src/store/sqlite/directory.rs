//! Sessions, written on the writer thread (`store::reads` reads them).

use rusqlite::{Connection, ffi, params};

use crate::model::{PartyId, Session};
use crate::store::columns::seq_to_db;
use crate::store::{StoreError, StoreResult};

/// Stores a session under the hash of its resume token.
pub(super) fn create_session(
    writer: &mut Connection,
    party: PartyId,
    token_hash: [u8; 32],
    client: &str,
    now_ms: i64,
) -> StoreResult<Session> {
    let id = writer
        .prepare_cached(
            "INSERT INTO sessions (party, token_hash, client, acked_seq, created_at_ms)
             VALUES (?1, ?2, ?3, 0, ?4) RETURNING id",
        )?
        .query_row(params![party, &token_hash[..], client, now_ms], |row| {
            row.get::<_, i64>(0)
        })
        .map_err(|e| missing_party(e, [party]))?;
    Ok(Session {
        id,
        party,
        acked_seq: 0,
    })
}

/// Raises a session's acknowledged seq; never lowers it.
pub(super) fn ack_session(writer: &mut Connection, session: i64, seq: u64) -> StoreResult<()> {
    let updated = writer
        .prepare_cached("UPDATE sessions SET acked_seq = MAX(acked_seq, ?2) WHERE id = ?1")?
        .execute(params![session, seq_to_db(seq)?])?;
    if updated == 0 {
        return Err(StoreError::NotFound(format!("session {session}")));
    }
    Ok(())
}

// --- helpers -------------------------------------------------------------------

/// Turns a foreign-key violation (a write naming a party that does not
/// exist) into [`StoreError::NotFound`].
fn missing_party<const N: usize>(error: rusqlite::Error, parties: [PartyId; N]) -> StoreError {
    if constraint(&error) == Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) {
        StoreError::NotFound(format!("party among {parties:?}"))
    } else {
        error.into()
    }
}

/// The extended result code of a failed statement, if it failed in SQLite.
fn constraint(error: &rusqlite::Error) -> Option<i32> {
    match error {
        rusqlite::Error::SqliteFailure(e, _) => Some(e.extended_code),
        _ => None,
    }
}
