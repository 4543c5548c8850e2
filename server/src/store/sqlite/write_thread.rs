//! The writer connection, on a thread of its own.
//!
//! Every write goes through one connection (more writers only add
//! `SQLITE_BUSY`). It lives on a dedicated OS thread and takes whole jobs:
//! a batch commit is one hand-off to the thread and one back, however many
//! statements it runs, and its statements stay prepared between batches.
//! (Through sqlx's async SQLite driver each statement was a hand-off of its
//! own, about ten per batch, which at 1,000 small commits a second cost
//! more than SQLite's own work.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// Prepared statements the writer keeps: multi-row statements come in nine
/// sizes for five tables, plus the directory's writes.
const STATEMENT_CACHE: usize = 128;

/// What the thread is asked to do.
enum Job {
    /// Run a closure on the connection.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Close the connection (checkpointing the WAL) and stop.
    Close(oneshot::Sender<()>),
}

/// The writer thread; see the module docs.
#[derive(Debug)]
pub(super) struct WriteThread {
    jobs: mpsc::Sender<Job>,
}

impl WriteThread {
    /// Opens the database at `path` (already created and migrated) for
    /// writing, with `pragmas` applied in order, and starts the thread.
    pub(super) fn open(
        path: &Path,
        busy_timeout: Duration,
        pragmas: &[(&str, String)],
    ) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        for (name, value) in pragmas {
            conn.pragma_update(None, name, value)?;
        }
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("kanal-sqlite-writer".into())
            .spawn(move || run(conn, &queue))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the writer connection and returns what it returns. If
    /// `f` panics, its transaction (if any) is rolled back as it unwinds,
    /// the call fails with [`StoreError::Aborted`], and the thread goes on
    /// serving later calls.
    pub(super) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Run(Box::new(move |conn| {
                let result =
                    catch_unwind(AssertUnwindSafe(|| f(&mut *conn))).unwrap_or_else(|_| {
                        // A transaction guard rolls back as it unwinds; this
                        // covers one begun without a guard.
                        if !conn.is_autocommit() {
                            let _ = conn.execute_batch("ROLLBACK");
                        }
                        Err(StoreError::Aborted)
                    });
                let _ = tx.send(result);
            })))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Closes the connection and waits until it is closed. Later calls fail.
    pub(super) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn run(conn: Connection, queue: &mpsc::Receiver<Job>) {
    let mut conn = conn;
    // Ends when every sender is gone (the store was dropped) or on Close.
    while let Ok(job) = queue.recv() {
        match job {
            Job::Run(f) => f(&mut conn),
            Job::Close(done) => {
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(error = %e, "closing the writer connection failed");
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

fn closed() -> StoreError {
    StoreError::Closed
}
