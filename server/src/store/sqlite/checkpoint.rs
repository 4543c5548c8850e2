//! Checkpoints off the writer's thread.
//!
//! In WAL mode every commit appends pages to the WAL, and a checkpoint copies
//! them back into the database file (and fsyncs it). Left to the writer
//! connection (`wal_autocheckpoint`), a checkpoint of thousands of pages runs
//! inside some unlucky commit, and every send queued behind it waits. Here a
//! connection of its own runs a PASSIVE checkpoint every [`INTERVAL`],
//! concurrently with the writer (PASSIVE never blocks writers or readers).
//! The writer's own autocheckpoint stays on as the backstop that lets the WAL
//! start over: when it runs, the pages are mostly copied already.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::task::JoinHandle;

use crate::store::StoreResult;

/// Time between background checkpoints. Long enough that a page rewritten by
/// many batches (a busy conversation's last page) is copied once, short
/// enough that the writer's backstop checkpoint finds little left to do.
const INTERVAL: Duration = Duration::from_millis(200);

/// The background checkpoint task; it stops when this is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    task: JoinHandle<()>,
    pool: SqlitePool,
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
        let task = tokio::spawn(run(pool.clone()));
        Ok(Self { task, pool })
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

async fn run(pool: SqlitePool) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "background checkpoint failed");
        }
    }
}
