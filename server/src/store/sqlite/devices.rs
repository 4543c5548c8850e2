//! The device registry, written on the writer thread (`store::reads` reads
//! it).

use rusqlite::{Connection, params};

use crate::model::{Device, NewDevice, PartyId};
use crate::store::{StoreResult, columns};

/// Registers a device; refused if its key or serial is registered.
pub(super) fn add(writer: &mut Connection, device: NewDevice, now_ms: i64) -> StoreResult<Device> {
    let inserted = writer
        .prepare_cached(
            "INSERT INTO devices (key, party, serial, model, inbox, owner, added_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            &device.key[..],
            device.party,
            device.serial,
            device.model,
            device.inbox,
            device.owner,
            now_ms
        ])?;
    if inserted == 0 {
        return Err(columns::device_taken(&device.serial));
    }
    Ok(columns::added_device(device, now_ms))
}

/// Revokes a device; whether it was registered and not revoked yet.
pub(super) fn revoke(writer: &mut Connection, serial: &str, now_ms: i64) -> StoreResult<bool> {
    let changed = writer
        .prepare_cached(
            "UPDATE devices SET revoked_at_ms = ?2 WHERE serial = ?1 AND revoked_at_ms IS NULL",
        )?
        .execute(params![serial, now_ms])?;
    Ok(changed > 0)
}

/// Links a device to its owner (or unlinks it); whether it is registered.
pub(super) fn link(
    writer: &mut Connection,
    serial: &str,
    owner: Option<PartyId>,
) -> StoreResult<bool> {
    let changed = writer
        .prepare_cached("UPDATE devices SET owner = ?2 WHERE serial = ?1")?
        .execute(params![serial, owner])?;
    Ok(changed > 0)
}

/// Accepts each initiation counter above its device's last one, in one
/// transaction; whether each was.
pub(super) fn advance_initiations(
    writer: &mut Connection,
    batch: &[([u8; 32], u32)],
) -> StoreResult<Vec<bool>> {
    let tx = writer.transaction()?;
    let mut accepted = Vec::with_capacity(batch.len());
    {
        let mut update = tx.prepare_cached(
            "UPDATE devices SET last_initiation = ?2 WHERE key = ?1 AND last_initiation < ?2",
        )?;
        for (key, counter) in batch {
            accepted.push(update.execute(params![&key[..], counter])? > 0);
        }
    }
    tx.commit()?;
    Ok(accepted)
}
