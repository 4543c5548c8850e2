//! Sessions, written on the write pool (`store::reads` reads them).

use sqlx::PgPool;
use sqlx::error::ErrorKind;

use crate::model::{PartyId, Session};
use crate::store::columns::seq_to_db;
use crate::store::{StoreError, StoreResult};

/// Stores a session under the hash of its resume token.
pub(super) async fn create_session(
    writer: &PgPool,
    party: PartyId,
    token_hash: [u8; 32],
    client: &str,
    now_ms: i64,
) -> StoreResult<Session> {
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO sessions (party, token_hash, client, acked_seq, created_at_ms)
         VALUES ($1, $2, $3, 0, $4) RETURNING id",
    )
    .bind(party)
    .bind(&token_hash[..])
    .bind(client)
    .bind(now_ms)
    .fetch_one(writer)
    .await
    .map_err(|e| missing_party(e, party))?;
    Ok(Session {
        id,
        party,
        acked_seq: 0,
    })
}

/// Raises a session's acknowledged seq; never lowers it.
pub(super) async fn ack_session(writer: &PgPool, session: i64, seq: u64) -> StoreResult<()> {
    let updated =
        sqlx::query("UPDATE sessions SET acked_seq = GREATEST(acked_seq, $2) WHERE id = $1")
            .bind(session)
            .bind(seq_to_db(seq)?)
            .execute(writer)
            .await?
            .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound(format!("session {session}")));
    }
    Ok(())
}

/// Turns a foreign-key violation (a session of a party that does not
/// exist) into [`StoreError::NotFound`].
fn missing_party(error: sqlx::Error, party: PartyId) -> StoreError {
    match error.as_database_error().map(|e| e.kind()) {
        Some(ErrorKind::ForeignKeyViolation) => StoreError::NotFound(format!("party {party}")),
        _ => error.into(),
    }
}
