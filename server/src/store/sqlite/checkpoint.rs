//! Checkpoints off the writer's path.
//!
//! In WAL mode every commit appends pages to the WAL, and a checkpoint copies
//! them back into the database file and fsyncs it. The WAL can only start
//! over from its beginning when a write transaction begins with every frame
//! copied; until then it grows.
//!
//! Left to the writer connection (`wal_autocheckpoint`), the whole
//! checkpoint runs inside some unlucky commit, and every send queued behind
//! it waits. Here a connection of its own does the copying, concurrently with
//! the writer (a PASSIVE checkpoint never blocks writers or readers), once
//! every [`INTERVAL`] in which something was committed. Commits made during a
//! pass are not in it, so the pass repeats while passes take long. Then, if
//! the WAL has grown to [`RESTART_FRAMES`], the writer thread itself runs a
//! last pass between two batches: it copies only what was committed since,
//! and, with no commit running beside it, completes, so the next commit
//! starts the WAL over. The writer pauses for that last pass, a few
//! milliseconds once per cycle, instead of for a whole checkpoint.
//!
//! The WAL therefore holds about one [`INTERVAL`] of commits. The writer's
//! autocheckpoint stays on as the backstop should this task fall behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::task::JoinHandle;

use super::write_thread::WriteThread;
use crate::store::StoreResult;

/// Time between checkpoint cycles while something is committed. Each cycle
/// makes the writer pause once (see the module docs), so a longer interval
/// means fewer pauses and a longer WAL. Measured with `kanal-bench latency
/// --rate 10000 --clients 64 --receivers 4` (BENCHMARKS.md), a fresh server
/// per run: at 1 s, p99 3.7–6.6 ms over 10 runs (median 4.5 ms) with a WAL
/// of about 250 MB at that rate; at 500 ms, 4.3–5.4 ms over 5 runs (median
/// 4.8 ms); with no cycles at all the WAL grows without end and p99 was
/// 6–55 ms. (Measured before sends stopped rewriting their conversation's
/// row; BENCHMARKS.md has the current figures.)
const INTERVAL: Duration = Duration::from_secs(1);

/// WAL frames (pages) from which a cycle ends with the writer's closing
/// pass, so the WAL starts over: 16 MiB at 4 KiB pages. A smaller WAL is
/// left to grow until a later cycle.
const RESTART_FRAMES: i64 = 4_096;

/// A background pass this short leaves little for the next one: the cycle
/// stops repeating passes. The writer's closing pass copies what the last
/// pass left; at 10,000 msg/s it held the writer for 0.7–5 ms (trace
/// `kanal_server::store=trace`), less the shorter the last pass was.
const SHORT_PASS: Duration = Duration::from_micros(500);

/// Most background passes per cycle (each ends with an fsync of the
/// database file, beside the writer's commits).
const MAX_PASSES: usize = 8;

/// What one checkpoint cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cycle {
    /// Background passes run.
    pub(super) passes: usize,
    /// Frames in the WAL at the last background pass.
    pub(super) frames: i64,
    /// Whether every frame was copied, so the WAL starts over: by the
    /// writer's closing pass, or by a background pass that caught up with
    /// the commits (a later pass then finds the WAL started over).
    pub(super) complete: bool,
    /// How long the writer was held by the closing pass, if there was one
    /// (waiting for its turn included).
    pub(super) closing: Option<Duration>,
}

/// The background checkpoint task; it stops when this is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    task: JoinHandle<()>,
    /// What the task checkpoints with.
    pub(super) checkpoints: Checkpoints,
    /// Set by each commit, cleared by the cycle that follows it.
    dirty: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Opens a connection with `options` and starts checkpointing the
    /// database that `writer` writes.
    pub(super) async fn start(
        options: SqliteConnectOptions,
        writer: Arc<WriteThread>,
    ) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let checkpoints = Checkpoints { pool, writer };
        let dirty = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(checkpoints.clone(), dirty.clone()));
        Ok(Self {
            task,
            checkpoints,
            dirty,
        })
    }

    /// Says the WAL has grown: a cycle follows within [`INTERVAL`].
    pub(super) fn nudge(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Stops the background cycles but keeps the connections, so a test
    /// can run cycles itself without one of the background's beside it.
    #[cfg(test)]
    pub(super) fn pause_background(&self) {
        self.task.abort();
    }

    /// Stops checkpointing and closes the connection.
    pub(super) async fn stop(&self) {
        self.task.abort();
        self.checkpoints.pool.close().await;
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(checkpoints: Checkpoints, dirty: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        let started = Instant::now();
        match checkpoints.cycle(RESTART_FRAMES).await {
            Ok(done) => tracing::trace!(?done, took = ?started.elapsed(), "checkpoint cycle"),
            Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
        }
    }
}

/// The connections a cycle uses: its own for the background passes, the
/// writer's for the closing pass.
#[derive(Debug, Clone)]
pub(super) struct Checkpoints {
    pool: SqlitePool,
    writer: Arc<WriteThread>,
}

impl Checkpoints {
    /// Runs one cycle, ending with the writer's closing pass if the WAL
    /// holds at least `restart_frames` frames.
    pub(super) async fn cycle(&self, restart_frames: i64) -> StoreResult<Cycle> {
        let mut done = Cycle {
            passes: 0,
            frames: 0,
            complete: false,
            closing: None,
        };
        while done.passes < MAX_PASSES {
            let started = Instant::now();
            let (_busy, frames, _copied): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&self.pool)
                    .await?;
            done.passes += 1;
            if frames < done.frames {
                // Fewer frames than the last pass saw: an earlier pass
                // copied every frame and a commit has started the WAL over.
                done.complete = true;
            }
            done.frames = frames;
            if started.elapsed() < SHORT_PASS {
                break;
            }
        }
        if done.frames >= restart_frames {
            let started = Instant::now();
            done.complete = self
                .writer
                .call(|conn| {
                    let (frames, copied): (i64, i64) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                            Ok((row.get(1)?, row.get(2)?))
                        })?;
                    Ok(frames == copied)
                })
                .await?;
            done.closing = Some(started.elapsed());
        }
        Ok(done)
    }
}
