//! The device registry as the gateway consults it: every registered
//! device by its static key, in memory, so an unknown or revoked key is
//! refused without a database read. Operators' changes on this node apply
//! at once; changes another node made (several nodes on one database) are
//! read again every [`REFRESH`].

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::model::Device;
use crate::store::{Store, StoreResult};

/// How often the registry is read again from the store.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

/// Registered devices by key.
#[derive(Debug, Default)]
pub(crate) struct DeviceRegistry {
    by_key: RwLock<HashMap<[u8; 32], Arc<Device>>>,
}

impl DeviceRegistry {
    /// Reads every registered device from `store`.
    pub(crate) async fn reload(&self, store: &dyn Store) -> StoreResult<usize> {
        let devices = store.devices().await?;
        let by_key: HashMap<_, _> = devices.into_iter().map(|d| (d.key, Arc::new(d))).collect();
        let count = by_key.len();
        *self.by_key.write().unwrap_or_else(PoisonError::into_inner) = by_key;
        Ok(count)
    }

    /// The device registered with `key`, revoked or not.
    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Arc<Device>> {
        self.read().get(key).cloned()
    }

    /// Records a device as the store now holds it.
    pub(crate) fn put(&self, device: Device) {
        self.by_key
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(device.key, Arc::new(device));
    }

    /// The device whose party is `party`.
    pub(crate) fn get_by_party(&self, party: crate::model::PartyId) -> Option<Arc<Device>> {
        self.read().values().find(|d| d.party == party).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<[u8; 32], Arc<Device>>> {
        self.by_key.read().unwrap_or_else(PoisonError::into_inner)
    }
}
