//! Handshake initiation counters, group-committed. Every accepted
//! handshake advances its device's counter in the store before the session
//! exists (so a replayed initiation is refused across restarts and
//! nodes), and a burst of handshakes — a fleet coming back after an outage
//! — must not pay one commit each: the counters waiting while one commit
//! runs go into the next, together.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::Store;

/// Counters committed together at most; more wait for the next commit.
const MAX_BATCH: usize = 256;

/// One counter waiting for its commit.
struct Waiting {
    key: [u8; 32],
    counter: u32,
    accepted: oneshot::Sender<Result<bool, String>>,
}

/// Where the gateway's handshakes advance their counters.
#[derive(Debug, Clone)]
pub(crate) struct Initiations {
    queue: mpsc::Sender<Waiting>,
}

impl Initiations {
    /// Starts committing counters to `store`; the task ends when every
    /// handle is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> (Self, JoinHandle<()>) {
        let (queue, waiting) = mpsc::channel(MAX_BATCH * 2);
        (Self { queue }, tokio::spawn(commit(store, waiting)))
    }

    /// Accepts initiation `counter` of the device `key` if it is above the
    /// last one accepted; whether it was, once committed.
    pub(crate) async fn advance(&self, key: [u8; 32], counter: u32) -> Result<bool, String> {
        let (accepted, answer) = oneshot::channel();
        let waiting = Waiting {
            key,
            counter,
            accepted,
        };
        if self.queue.send(waiting).await.is_err() {
            return Err("the device gateway is stopping".into());
        }
        answer
            .await
            .map_err(|_| "the device gateway is stopping".to_owned())?
    }
}

/// Commits what waits, a batch at a time, until every handle is gone.
async fn commit(store: Arc<dyn Store>, mut waiting: mpsc::Receiver<Waiting>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let counters = batch.iter().map(|w| (w.key, w.counter)).collect();
        match store.advance_initiations(counters).await {
            Ok(accepted) => {
                for (waiting, accepted) in batch.drain(..).zip(accepted) {
                    let _ = waiting.accepted.send(Ok(accepted));
                }
            }
            Err(e) => {
                let error = e.to_string();
                for waiting in batch.drain(..) {
                    let _ = waiting.accepted.send(Err(error.clone()));
                }
            }
        }
    }
}
