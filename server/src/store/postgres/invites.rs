//! Invite codes, written on the write pool (`store::reads` lists them).

use sqlx::PgPool;

use crate::model::{Invite, NewInvite};
use crate::store::{StoreResult, columns};

/// Stores a new invite.
pub(super) async fn create(
    writer: &PgPool,
    invite: &NewInvite,
    now_ms: i64,
) -> StoreResult<Invite> {
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO invites (code_hash, uses_left, expires_at_ms, created_at_ms, note)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&invite.code_hash[..])
    .bind(i64::from(invite.uses))
    .bind(invite.expires_at_ms)
    .bind(now_ms)
    .bind(&invite.note)
    .fetch_one(writer)
    .await?;
    Ok(columns::issued_invite(id, invite, now_ms))
}

/// Takes one use of a working invite, in one statement: of two takes of
/// the last use, the second waits for the first's row lock, then finds
/// `uses_left = 0` and takes nothing.
pub(super) async fn take(writer: &PgPool, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool> {
    let taken = sqlx::query_scalar::<_, i64>(
        "UPDATE invites SET uses_left = uses_left - 1
         WHERE code_hash = $1 AND uses_left > 0
           AND (expires_at_ms IS NULL OR expires_at_ms > $2)
         RETURNING id",
    )
    .bind(&code_hash[..])
    .bind(now_ms)
    .fetch_optional(writer)
    .await?;
    Ok(taken.is_some())
}

/// Gives back a use.
pub(super) async fn give_back(writer: &PgPool, code_hash: [u8; 32]) -> StoreResult<()> {
    sqlx::query("UPDATE invites SET uses_left = uses_left + 1 WHERE code_hash = $1")
        .bind(&code_hash[..])
        .execute(writer)
        .await?;
    Ok(())
}

/// Removes an invite; whether it existed.
pub(super) async fn revoke(writer: &PgPool, id: i64) -> StoreResult<bool> {
    let removed = sqlx::query("DELETE FROM invites WHERE id = $1")
        .bind(id)
        .execute(writer)
        .await?
        .rows_affected();
    Ok(removed > 0)
}
