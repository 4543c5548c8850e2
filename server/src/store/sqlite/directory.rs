//! Parties, inbox agents and sessions.

use kanal_proto::address::Address;
use sqlx::SqlitePool;
use sqlx::error::ErrorKind;

use super::{address, party_kind, seq_from_db, seq_to_db};
use crate::model::{NewParty, Party, PartyId, Session};
use crate::store::{StoreError, StoreResult};

/// Columns of `parties` as [`party_row`] reads them.
type PartyRow = (i64, String, i64, String);

/// Inserts a party and bumps the directory version, in one transaction.
pub(super) async fn create_party(
    writer: &SqlitePool,
    party: NewParty,
    now_ms: i64,
) -> StoreResult<Party> {
    let mut tx = writer.begin().await?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO parties (address, kind, display_name, password_hash, created_at_ms)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(party.address.as_str())
    .bind(party.kind.as_i64())
    .bind(party.display_name.as_str())
    .bind(party.password_hash.as_deref())
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await;
    let id = match inserted {
        Ok(id) => id,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StoreError::AddressTaken(party.address));
        }
        Err(e) => return Err(e.into()),
    };
    bump_version(&mut tx).await?;
    tx.commit().await?;
    Ok(Party {
        id,
        address: party.address,
        kind: party.kind,
        display_name: party.display_name,
    })
}

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

/// Makes `agent` answer for `inbox`; bumps the directory version only when
/// that is new.
pub(super) async fn add_inbox_agent(
    writer: &SqlitePool,
    inbox: PartyId,
    agent: PartyId,
) -> StoreResult<()> {
    let mut tx = writer.begin().await?;
    let added = sqlx::query(
        "INSERT INTO inbox_agents (inbox, agent, position)
         VALUES ($1, $2, (SELECT COALESCE(MAX(position), 0) + 1
                          FROM inbox_agents WHERE inbox = $1))
         ON CONFLICT (inbox, agent) DO NOTHING",
    )
    .bind(inbox)
    .bind(agent)
    .execute(&mut *tx)
    .await
    .map_err(|e| missing_party(e, [inbox, agent]))?;
    if added.rows_affected() > 0 {
        bump_version(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
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

/// The directory version.
pub(super) async fn version(reader: &SqlitePool) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT version FROM directory WHERE id = 1")
            .fetch_one(reader)
            .await?,
    )
}

/// Stores a session under the hash of its resume token.
pub(super) async fn create_session(
    writer: &SqlitePool,
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
pub(super) async fn ack_session(writer: &SqlitePool, session: i64, seq: u64) -> StoreResult<()> {
    let updated = sqlx::query("UPDATE sessions SET acked_seq = MAX(acked_seq, $2) WHERE id = $1")
        .bind(session)
        .bind(seq_to_db(seq)?)
        .execute(writer)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("session {session}")));
    }
    Ok(())
}

// --- helpers -------------------------------------------------------------------

/// Marks the directory as changed (inside the caller's transaction).
async fn bump_version(tx: &mut sqlx::SqliteConnection) -> StoreResult<()> {
    sqlx::query("UPDATE directory SET version = version + 1 WHERE id = 1")
        .execute(tx)
        .await?;
    Ok(())
}

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
fn missing_party<const N: usize>(error: sqlx::Error, parties: [PartyId; N]) -> StoreError {
    match error {
        sqlx::Error::Database(e) if e.kind() == ErrorKind::ForeignKeyViolation => {
            StoreError::NotFound(format!("party among {parties:?}"))
        }
        e => e.into(),
    }
}
