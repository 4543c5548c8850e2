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

/// Accepts each initiation counter above its device's last one, one
/// statement per device (the row lock orders two nodes' updates), in one
/// transaction; whether each was.
pub(super) async fn advance_initiations(
    writer: &PgPool,
    batch: &[([u8; 32], u32)],
) -> StoreResult<Vec<bool>> {
    let mut tx = writer.begin().await?;
    let mut accepted = Vec::with_capacity(batch.len());
    for (key, counter) in batch {
        let changed = sqlx::query(
            "UPDATE devices SET last_initiation = $2 WHERE key = $1 AND last_initiation < $2",
        )
        .bind(&key[..])
        .bind(i64::from(*counter))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        accepted.push(changed > 0);
    }
    tx.commit().await?;
    Ok(accepted)
}
