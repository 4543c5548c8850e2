//! Where the logs of the devices the gateway serves end, as the hub sees
//! them committed (here or, by the news between nodes, elsewhere), so that
//! a poll finding nothing new costs no read of the store.
//!
//! A device's poll reads its log once; when that read found no mail, the
//! gateway remembers the range it covered ([`Clear`]). A later poll inside
//! that range is answered "nothing waits" without the store for as long as
//! no event was committed to the device's log after it. The device is
//! watched *before* the read, so an event committed during the read is
//! seen; news that may have been lost (the bus between nodes down) makes
//! every remembered range void.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::model::PartyId;
use crate::node::hub::LogObserver;

/// A range of a device's log known to hold no mail: nothing after `from`
/// (a cursor) up to `through` was mail when it was read, in epoch `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clear {
    pub from: u64,
    pub through: u64,
    pub epoch: u64,
}

/// The watched devices' log heads.
#[derive(Debug, Default)]
pub(crate) struct MailHeads {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per watched device party: the highest head committed since it was
    /// watched, `None` when nothing was.
    heads: HashMap<PartyId, Option<u64>>,
    /// Raised whenever news may have been lost.
    epoch: u64,
}

impl MailHeads {
    /// Watches `party` from now on (if it was not already); returns the
    /// epoch, to record with what a read of the store then finds.
    pub(crate) fn watch(&self, party: PartyId) -> u64 {
        let mut inner = self.lock();
        inner.heads.entry(party).or_insert(None);
        inner.epoch
    }

    /// Whether `clear` still holds for a poll of `party` from `cursor`:
    /// the same epoch, the cursor inside the range, and nothing committed
    /// to the log beyond the range.
    pub(crate) fn nothing_new(&self, party: PartyId, cursor: u64, clear: Option<Clear>) -> bool {
        let Some(clear) = clear else {
            return false;
        };
        let inner = self.lock();
        clear.epoch == inner.epoch
            && cursor >= clear.from
            && inner
                .heads
                .get(&party)
                .is_some_and(|head| head.is_none_or(|head| head <= clear.through))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LogObserver for MailHeads {
    fn advanced(&self, heads: &[(PartyId, u64)]) {
        let mut inner = self.lock();
        if inner.heads.is_empty() {
            return;
        }
        for (party, head) in heads {
            if let Some(slot) = inner.heads.get_mut(party) {
                *slot = Some(slot.map_or(*head, |known| known.max(*head)));
            }
        }
    }

    fn unreliable(&self) {
        self.lock().epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: PartyId = 7;

    #[test]
    fn a_range_holds_until_the_log_grows_past_it() {
        let heads = MailHeads::default();
        let epoch = heads.watch(DEVICE);
        let clear = Some(Clear {
            from: 3,
            through: 5,
            epoch,
        });
        assert!(heads.nothing_new(DEVICE, 3, clear));
        assert!(
            !heads.nothing_new(DEVICE, 2, clear),
            "an older cursor reads"
        );
        assert!(!heads.nothing_new(DEVICE, 3, None), "nothing read yet");
        // Its own message, read by the range's read: still clear.
        heads.advanced(&[(DEVICE, 5), (8, 40)]);
        assert!(heads.nothing_new(DEVICE, 4, clear));
        heads.advanced(&[(DEVICE, 6)]);
        assert!(!heads.nothing_new(DEVICE, 4, clear), "a new event reads");
    }

    #[test]
    fn lost_news_voids_every_range_and_unwatched_parties_are_not_clear() {
        let heads = MailHeads::default();
        let clear = Some(Clear {
            from: 0,
            through: 9,
            epoch: 0,
        });
        assert!(!heads.nothing_new(DEVICE, 0, clear), "not watched");
        let epoch = heads.watch(DEVICE);
        assert!(heads.nothing_new(DEVICE, 0, clear));
        heads.unreliable();
        assert!(!heads.nothing_new(DEVICE, 0, clear));
        assert_eq!(heads.watch(DEVICE), epoch + 1);
    }
}
