//! Room for responses that are computed and not yet handed to QUIC: each
//! connection has [`PER_CONNECTION`] bytes of its own, and all connections
//! together [`IN_TOTAL`]. A request takes [`Room`] in both before it is
//! handled and keeps what its response turns out to need until the
//! response is written; a client that never reads loses its stream after
//! `FRAME_STALL_SECS`, and the room with it.

use std::sync::Arc;

use kanal_proto::limits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of responses one connection may hold.
pub(crate) const PER_CONNECTION: usize = 4 * limits::MAX_RESPONSE_FRAME;

/// Bytes of responses all connections together may hold.
pub(crate) const IN_TOTAL: usize = 256 * limits::MAX_RESPONSE_FRAME;

/// What a request reserves before it is handled: the largest response.
pub(crate) const PER_REQUEST: usize = limits::MAX_RESPONSE_FRAME;

/// One connection's budget, and the server's it shares.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    connection: Arc<Semaphore>,
    total: Arc<Semaphore>,
}

/// Room held in a connection's budget and in the server's.
#[derive(Debug)]
pub(crate) struct Room {
    connection: OwnedSemaphorePermit,
    total: OwnedSemaphorePermit,
}

impl Budget {
    /// The server's shared budget of `bytes`.
    pub(crate) fn total(bytes: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(bytes))
    }

    /// A new connection's budget of `bytes`, sharing `total`.
    pub(crate) fn for_connection(bytes: usize, total: &Arc<Semaphore>) -> Self {
        Self {
            connection: Arc::new(Semaphore::new(bytes)),
            total: total.clone(),
        }
    }

    /// Waits for `bytes` of room in both budgets. Cancel-safe: room taken
    /// in the first is given back if the wait for the second is dropped.
    pub(crate) async fn reserve(&self, bytes: usize) -> Option<Room> {
        let bytes = u32::try_from(bytes).ok()?;
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(bytes)
            .await
            .ok()?;
        let total = self.total.clone().acquire_many_owned(bytes).await.ok()?;
        Some(Room { connection, total })
    }
}

impl Room {
    /// Gives back everything beyond `bytes`.
    pub(crate) fn keep(&mut self, bytes: usize) {
        for permit in [&mut self.connection, &mut self.total] {
            let extra = permit.num_permits().saturating_sub(bytes);
            drop(permit.split(extra));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn room_is_bounded_per_connection_and_in_total() {
        let total = Budget::total(3);
        let a = Budget::for_connection(2, &total);
        let b = Budget::for_connection(2, &total);
        let first = a.reserve(2).await.expect("a's room");
        assert_eq!(a.connection.available_permits(), 0, "a holds its budget");
        let second = b.reserve(1).await.expect("b's room");
        // The total is spent: b's next request waits, though b has room.
        let mut waiting = Box::pin(b.reserve(1));
        let now = (&mut waiting).now_or_never();
        assert!(now.is_none(), "b waits for the total");
        drop(first);
        let third = waiting.await.expect("a's room given back frees the total");
        drop(second);
        assert_eq!(total.available_permits(), 2, "only the third is held");
        drop(third);
        assert_eq!(total.available_permits(), 3);
    }

    #[tokio::test]
    async fn keeping_less_gives_the_rest_back() {
        let total = Budget::total(10);
        let budget = Budget::for_connection(4, &total);
        let mut room = budget.reserve(4).await.expect("room");
        room.keep(1);
        assert_eq!(budget.connection.available_permits(), 3);
        assert_eq!(total.available_permits(), 9);
        drop(room);
        assert_eq!(total.available_permits(), 10);
    }
}
