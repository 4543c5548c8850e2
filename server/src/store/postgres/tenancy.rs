//! Who uses the database: one node alone, or several nodes together.
//!
//! A node that runs alone (no `nats`) takes an exclusive advisory lock on
//! the database for as long as it runs, on a connection of its own;
//! clustered nodes each take the same lock shared. So a second lone node,
//! or a clustered node beside a lone one, is refused at start with a
//! message saying why. A node that holds the lock alone needs no claims
//! checked at commit: no one else writes. Should its connection drop (the
//! database restarted), it checks every commit from then on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection as _, PgConnection};
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// The advisory lock's key: "KANAL" in ASCII.
const KEY: i64 = 0x4b_41_4e_41_4c;

/// How often the holder checks that its connection (and lock) is alive.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Takes the lock (`shared` or exclusively) on a connection of its own,
/// and holds it until `release` is sent (or dropped); `checks` is cleared
/// if the lock is exclusive, and set again if its connection is lost.
pub(super) async fn hold(
    options: &sqlx::postgres::PgConnectOptions,
    shared: bool,
    checks: Arc<AtomicBool>,
    mut release: oneshot::Receiver<oneshot::Sender<()>>,
) -> StoreResult<()> {
    let mut conn = PgConnection::connect_with(options).await?;
    let sql = if shared {
        "SELECT pg_try_advisory_lock_shared($1)"
    } else {
        "SELECT pg_try_advisory_lock($1)"
    };
    let held: bool = sqlx::query_scalar(sql)
        .bind(KEY)
        .fetch_one(&mut conn)
        .await?;
    if !held {
        let _ = conn.close().await;
        return Err(StoreError::Unsupported(if shared {
            "another kanald uses this database alone (without `nats`); \
             several nodes on one database all need `nats`"
        } else {
            "another kanald uses this database; several nodes on one database \
             all need `nats` (see README, \"Several nodes\")"
        }));
    }
    if !shared {
        checks.store(false, Ordering::Release);
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                released = &mut release => {
                    // Closing the connection gives the lock back at once.
                    let _ = conn.close().await;
                    if let Ok(done) = released {
                        let _ = done.send(());
                    }
                    return;
                }
            }
            if let Err(e) = conn.ping().await {
                if !shared {
                    checks.store(true, Ordering::Release);
                    tracing::warn!(
                        error = %e,
                        "lost the connection holding this node's use of the database alone; \
                         every commit is checked against other writers from now on"
                    );
                }
                return;
            }
        }
    });
    Ok(())
}
