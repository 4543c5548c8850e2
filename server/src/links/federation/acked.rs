//! The point a peer acknowledged, stored behind its delivery: the delivery
//! goes on at once with every receipt, and the store learns the latest
//! point at most every [`STORE_EVERY`], in one commit however many receipts
//! came meanwhile (FEDERATION.md §5.2).
//!
//! Nothing can be lost by the delay: until a point is stored, the rows it
//! covers stay in the outbox, and a restarted server offers them again;
//! the peer's `Ready` says what it committed, and they are not sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;

/// Longest a stored point lags behind the acknowledged one while receipts
/// come in (one commit per peer this often, rather than one a receipt).
pub(super) const STORE_EVERY: Duration = Duration::from_millis(250);

/// Wait before trying again to store a point the store refused.
const RETRY: Duration = Duration::from_secs(1);

/// Stores what `peer` acknowledged, as [`AckedPoint::raise`] reports it.
/// Ends with it.
#[derive(Debug)]
pub(super) struct AckedPoint {
    point: watch::Sender<u64>,
    /// The point the store holds.
    stored: watch::Receiver<u64>,
    keeper: JoinHandle<()>,
}

impl AckedPoint {
    /// Starts storing `peer`'s point, `stored` as the store holds it.
    pub(super) fn start(shared: Arc<Shared>, peer: String, stored: u64) -> Self {
        let (point, watched) = watch::channel(stored);
        let (held, held_rx) = watch::channel(stored);
        let keeper = tokio::spawn(keep(shared, peer, held, watched));
        Self {
            point,
            stored: held_rx,
            keeper,
        }
    }

    /// Waits until the store holds the latest point (a delivery that ends
    /// leaves it for the next to start from).
    pub(super) async fn stored(&self) {
        let mut stored = self.stored.clone();
        let wanted = *self.point.borrow();
        // The keeper ends only with this point: it cannot go away first.
        let _ = stored.wait_for(|&at| at >= wanted).await;
    }

    /// The peer committed everything up to `up_to`.
    pub(super) fn raise(&self, up_to: u64) {
        self.point.send_if_modified(|point| {
            let raised = up_to > *point;
            *point = (*point).max(up_to);
            raised
        });
    }
}

impl Drop for AckedPoint {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Stores each new point, then waits [`STORE_EVERY`] before the next.
async fn keep(
    shared: Arc<Shared>,
    peer: String,
    stored: watch::Sender<u64>,
    mut watched: watch::Receiver<u64>,
) {
    while watched.changed().await.is_ok() {
        loop {
            let up_to = *watched.borrow_and_update();
            if up_to <= *stored.borrow() {
                break;
            }
            match shared.node.store.ack_outbox(&peer, up_to).await {
                Ok(()) => {
                    stored.send_replace(up_to);
                    break;
                }
                Err(e) => {
                    tracing::error!(%peer, up_to, error = %e, "federation: an acknowledgement could not be stored; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        tokio::time::sleep(STORE_EVERY).await;
    }
}
