//! Parties, inbox agents and sessions.

use kanal_proto::address::Address;
use rusqlite::{Connection, ffi, params};
use sqlx::SqlitePool;

use super::{address, party_kind, seq_from_db, seq_to_db};
use crate::model::{Party, PartyId, Session};
use crate::store::{StoreError, StoreResult};

/// Columns of `parties` as [`party_row`] reads them.
type PartyRow = (i64, String, i64, String);

/// Finds a party by address.
pub(super) async fn party_by_address(
    reader: &SqlitePool,
    address: &Address,
) -> StoreResult<Option<Party>> {
    sqlx::query_as::<_, PartyRow>(
        "SELECT id, address, kind, display_name FROM parties WHERE address = $1",
    )
    .bind(address.as_str())
    .fetch_optional(reader)
    .await?
    .map(party_row)
    .transpose()
}

/// Finds a party by id.
pub(super) async fn party_by_id(reader: &SqlitePool, id: PartyId) -> StoreResult<Option<Party>> {
    sqlx::query_as::<_, PartyRow>(
        "SELECT id, address, kind, display_name FROM parties WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(reader)
    .await?
    .map(party_row)
    .transpose()
}

/// The party's password hash, if it has one.
pub(super) async fn password_hash(reader: &SqlitePool, id: PartyId) -> StoreResult<Option<String>> {
    let hash =
        sqlx::query_scalar::<_, Option<String>>("SELECT password_hash FROM parties WHERE id = $1")
            .bind(id)
            .fetch_optional(reader)
            .await?;
    Ok(hash.flatten())
}

/// Every party, ordered by address.
pub(super) async fn parties(reader: &SqlitePool) -> StoreResult<Vec<Party>> {
    sqlx::query_as::<_, PartyRow>(
        "SELECT id, address, kind, display_name FROM parties ORDER BY address",
    )
    .fetch_all(reader)
    .await?
    .into_iter()
    .map(party_row)
    .collect()
}

/// The agents of `inbox`, in the order they were added.
pub(super) async fn inbox_agents(reader: &SqlitePool, inbox: PartyId) -> StoreResult<Vec<PartyId>> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT agent FROM inbox_agents WHERE inbox = $1 ORDER BY position",
    )
    .bind(inbox)
    .fetch_all(reader)
    .await?)
}

/// The inboxes `agent` answers for.
pub(super) async fn agent_inboxes(
    reader: &SqlitePool,
    agent: PartyId,
) -> StoreResult<Vec<PartyId>> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT inbox FROM inbox_agents WHERE agent = $1 ORDER BY inbox",
    )
    .bind(agent)
    .fetch_all(reader)
    .await?)
}

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

/// Finds a session by the hash of its resume token.
pub(super) async fn session_by_token_hash(
    reader: &SqlitePool,
    token_hash: [u8; 32],
) -> StoreResult<Option<Session>> {
    let row = sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT id, party, acked_seq FROM sessions WHERE token_hash = $1",
    )
    .bind(&token_hash[..])
    .fetch_optional(reader)
    .await?;
    row.map(|(id, party, acked)| {
        Ok(Session {
            id,
            party,
            acked_seq: seq_from_db(acked, "sessions.acked_seq")?,
        })
    })
    .transpose()
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

/// A party from its `parties` columns.
fn party_row((id, address_text, kind, display_name): PartyRow) -> StoreResult<Party> {
    Ok(Party {
        id,
        address: address(&address_text)?,
        kind: party_kind(kind)?,
        display_name,
    })
}

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
