//! The device registry, written on the write pool (`store::reads` reads
//! it).

use sqlx::PgPool;

use crate::model::{Device, NewDevice, PartyId};
use crate::store::{StoreResult, columns};

/// Registers a device; refused if its key or serial is registered.
pub(super) async fn add(writer: &PgPool, device: NewDevice, now_ms: i64) -> StoreResult<Device> {
    let inserted = sqlx::query(
        "INSERT INTO devices (key, party, serial, model, inbox, owner, added_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&device.key[..])
    .bind(device.party)
    .bind(&device.serial)
    .bind(&device.model)
    .bind(device.inbox)
    .bind(device.owner)
    .bind(now_ms)
    .execute(writer)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(columns::device_taken(&device.serial));
    }
    Ok(columns::added_device(device, now_ms))
}

/// Revokes a device; whether it was registered and not revoked yet.
pub(super) async fn revoke(writer: &PgPool, serial: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE devices SET revoked_at_ms = $2 WHERE serial = $1 AND revoked_at_ms IS NULL",
    )
    .bind(serial)
    .bind(now_ms)
    .execute(writer)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// Links a device to its owner (or unlinks it); whether it is registered.
pub(super) async fn link(
    writer: &PgPool,
    serial: &str,
    owner: Option<PartyId>,
) -> StoreResult<bool> {
    let changed = sqlx::query("UPDATE devices SET owner = $2 WHERE serial = $1")
        .bind(serial)
        .bind(owner)
        .execute(writer)
        .await?
        .rows_affected();
    Ok(changed > 0)
}

/// Accepts an initiation counter above the last one, in one statement (the
/// row lock orders two nodes' updates); whether it was.
pub(super) async fn advance_initiation(
    writer: &PgPool,
    key: [u8; 32],
    counter: u32,
) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE devices SET last_initiation = $2 WHERE key = $1 AND last_initiation < $2",
    )
    .bind(&key[..])
    .bind(i64::from(counter))
    .execute(writer)
    .await?
    .rows_affected();
    Ok(changed > 0)
}
