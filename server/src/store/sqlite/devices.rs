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

/// Accepts an initiation counter above the last one; whether it was.
pub(super) fn advance_initiation(
    writer: &mut Connection,
    key: [u8; 32],
    counter: u32,
) -> StoreResult<bool> {
    let changed = writer
        .prepare_cached(
            "UPDATE devices SET last_initiation = ?2 WHERE key = ?1 AND last_initiation < ?2",
        )?
        .execute(params![&key[..], counter])?;
    Ok(changed > 0)
}
