//! Invite codes, written on the writer thread (`store::reads` lists them).

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::model::{Invite, NewInvite};
use crate::store::{StoreResult, columns};

/// Stores a new invite.
pub(super) fn create(
    writer: &mut Connection,
    invite: &NewInvite,
    now_ms: i64,
) -> StoreResult<Invite> {
    let id = writer
        .prepare_cached(
            "INSERT INTO invites (code_hash, uses_left, expires_at_ms, created_at_ms, note)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )?
        .query_row(
            params![
                &invite.code_hash[..],
                invite.uses,
                invite.expires_at_ms,
                now_ms,
                invite.note
            ],
            |row| row.get::<_, i64>(0),
        )?;
    Ok(columns::issued_invite(id, invite, now_ms))
}

/// Takes one use of a working invite, in one statement: two takes of the
/// last use cannot both succeed.
pub(super) fn take(writer: &mut Connection, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool> {
    let taken = writer
        .prepare_cached(
            "UPDATE invites SET uses_left = uses_left - 1
             WHERE code_hash = ?1 AND uses_left > 0
               AND (expires_at_ms IS NULL OR expires_at_ms > ?2)
             RETURNING id",
        )?
        .query_row(params![&code_hash[..], now_ms], |row| row.get::<_, i64>(0))
        .optional()?;
    Ok(taken.is_some())
}

/// Gives back a use.
pub(super) fn give_back(writer: &mut Connection, code_hash: [u8; 32]) -> StoreResult<()> {
    writer
        .prepare_cached("UPDATE invites SET uses_left = uses_left + 1 WHERE code_hash = ?1")?
        .execute(params![&code_hash[..]])?;
    Ok(())
}

/// Removes an invite; whether it existed.
pub(super) fn revoke(writer: &mut Connection, id: i64) -> StoreResult<bool> {
    let removed = writer
        .prepare_cached("DELETE FROM invites WHERE id = ?1")?
        .execute(params![id])?;
    Ok(removed > 0)
}
