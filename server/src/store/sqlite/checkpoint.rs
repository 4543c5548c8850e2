//! Checkpoints off the writer's thread.
//!
//! In WAL mode every commit appends pages to the WAL, and a checkpoint copies
//! them back into the database file (and fsyncs it). Left to the writer
//! connection (`wal_autocheckpoint`), a checkpoint of thousands of pages runs
//! inside some unlucky commit, and every send queued behind it waits; its
//! large fsync of the database file also delays the WAL's fsyncs. Here a
//! connection of its own runs a PASSIVE checkpoint every [`INTERVAL`] in
//! which something was committed, concurrently with the writer (PASSIVE
//! never blocks writers or readers): many small checkpoints instead of a few
//! large ones, and none while nothing is written. The writer's own autocheckpoint
//! stays on as the backstop that lets the WAL start over: when it runs, the
//! pages are mostly copied already.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::task::JoinHandle;

use crate::store::StoreResult;

/// Time between background checkpoints. Measured on the project's 2-core
/// machine (`kanal-bench`, back to back on one machine state): at 200 ms,
/// throughput 52,700–55,600 msg/s and p99 latency at 10,000 msg/s
/// 8.6–8.8 ms; at 10 ms, 48,400–51,700 msg/s and 5.9–8.0 ms; at 50 ms,
/// 48,800–49,700 msg/s and 7.4–7.6 ms. Shorter intervals trade a little
/// throughput (the checkpoints' own CPU) for a shorter latency tail; 200 ms
/// keeps the throughput target met.
const INTERVAL: Duration = Duration::from_millis(200);

/// The background checkpoint task; it stops when this is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    task: JoinHandle<()>,
    pool: SqlitePool,
    /// Set by each commit, cleared by the checkpoint that follows it.
    dirty: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Opens a connection with `options` and starts checkpointing.
    pub(super) async fn start(options: SqliteConnectOptions) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let dirty = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(pool.clone(), dirty.clone()));
        Ok(Self { task, pool, dirty })
    }

    /// Says the WAL has grown: a checkpoint follows within [`INTERVAL`].
    pub(super) fn nudge(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Stops checkpointing and closes the connection.
    pub(super) async fn stop(&self) {
        self.task.abort();
        self.pool.close().await;
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(pool: SqlitePool, dirty: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "background checkpoint failed");
        }
    }
}
