//! The SQLite store: one database file in WAL mode with `synchronous = FULL`,
//! one writer connection for every write (more writers only add
//! `SQLITE_BUSY`), on a thread of its own (`write_thread.rs`), and a
//! separate pool of read-only connections.
//!
//! Durability: a commit returns once SQLite has fsync'd the WAL, which WAL
//! mode with `synchronous = FULL` does at every `COMMIT`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::columns::now_ms;
use super::reads;
use super::sql::SqlBackend;
use super::{Store, StoreError, StoreResult};
use crate::model::{
    Committed, Counters, Device, InboxHead, Invite, NewDevice, NewInvite, PartyId, PeerRecord,
    Session, Write,
};

mod checkpoint;
mod devices;
mod directory;
mod federation;
mod invites;
mod read;
mod write;
mod write_thread;

#[cfg(test)]
mod tests;

/// How long a connection waits for a lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections for clients' reads: enough to overlap a few of
/// them on a small machine.
const READERS: u32 = 4;

/// Read-only connections kept for the writer's loads, which run a few at a
/// time: clients' reads never make an ordering wait for a connection. (4
/// instead of 2 made no difference to `kanal-bench latency`.)
const WRITER_READERS: u32 = 2;

/// Prepared statements kept per read connection (batched lookups come in
/// several sizes).
const STATEMENT_CACHE: usize = 256;

/// Page cache of the writer, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// WAL frames (pages) after which a commit checkpoints on the writer
/// connection itself: 256 MiB at the default 4 KiB page. Only a backstop:
/// the checkpoint task (`checkpoint.rs`) normally starts the WAL over after
/// about a second of commits, well before this.
const WAL_CHECKPOINT_PAGES: u32 = 65_536;

/// Bytes the WAL file is truncated to when it starts over, should it ever
/// have grown past what [`WAL_CHECKPOINT_PAGES`] allows. Kept above the WAL's
/// usual size, so the file is reused rather than shrunk and regrown.
const WAL_SIZE_LIMIT: u64 = 320 * 1024 * 1024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A [`Store`] in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every write goes through it.
    writer: Arc<write_thread::WriteThread>,
    /// Read-only connections for everything else.
    reader: SqlitePool,
    /// Read-only connections only the writer's loads use (see
    /// [`Store::for_writer`]).
    writer_reader: SqlitePool,
    /// Checkpoints the WAL in the background; shared by clones, stopped
    /// when the last one is dropped.
    checkpointer: Arc<checkpoint::Checkpointer>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if missing, and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .statement_cache_capacity(STATEMENT_CACHE);

        // Create the file in WAL mode and bring the schema up to date on a
        // connection of sqlx's, then hand writing to the writer thread.
        let setup = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full),
            )
            .await
            .map_err(refuse_if_corrupt)?;
        check_integrity(&setup).await?;
        MIGRATOR.run(&setup).await?;
        setup.close().await;
        let writer = Arc::new(write_thread::WriteThread::open(
            path,
            BUSY_TIMEOUT,
            &[
                ("foreign_keys", "ON".into()),
                ("synchronous", "FULL".into()),
                ("cache_size", (-WRITER_CACHE_KIB).to_string()),
                ("temp_store", "MEMORY".into()),
                ("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string()),
                ("journal_size_limit", WAL_SIZE_LIMIT.to_string()),
            ],
        )?);

        let read_pool = |size| {
            SqlitePoolOptions::new()
                .max_connections(size)
                .min_connections(0)
                .idle_timeout(Some(Duration::from_secs(600)))
                .max_lifetime(None)
                .connect_with(base.clone().read_only(true))
        };
        let reader = read_pool(READERS).await?;
        let writer_reader = read_pool(WRITER_READERS).await?;
        let checkpointer = Arc::new(checkpoint::Checkpointer::start(base, writer.clone()).await?);

        Ok(Self {
            writer,
            reader,
            writer_reader,
            checkpointer,
        })
    }

    /// Closes every connection, waiting for them to finish. The last one to
    /// close checkpoints the WAL into the database file.
    pub async fn close(&self) {
        self.checkpointer.stop().await;
        self.reader.close().await;
        self.writer_reader.close().await;
        self.writer.close().await;
    }
}

#[async_trait]
impl SqlBackend for SqliteStore {
    type Reader = SqlitePool;

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn for_writer(&self) -> Option<Arc<dyn Store>> {
        Some(Arc::new(Self {
            reader: self.writer_reader.clone(),
            ..self.clone()
        }))
    }

    async fn create_session(
        &self,
        party: PartyId,
        token_hash: [u8; 32],
        client: &str,
    ) -> StoreResult<Session> {
        let (client, now) = (client.to_owned(), now_ms());
        self.writer
            .call(move |conn| directory::create_session(conn, party, token_hash, &client, now))
            .await
    }

    async fn ack_session(&self, session: i64, seq: u64) -> StoreResult<()> {
        self.writer
            .call(move |conn| directory::ack_session(conn, session, seq))
            .await
    }

    async fn create_invite(&self, invite: NewInvite, now_ms: i64) -> StoreResult<Invite> {
        self.writer
            .call(move |conn| invites::create(conn, &invite, now_ms))
            .await
    }

    async fn take_invite(&self, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool> {
        self.writer
            .call(move |conn| invites::take(conn, code_hash, now_ms))
            .await
    }

    async fn return_invite(&self, code_hash: [u8; 32]) -> StoreResult<()> {
        self.writer
            .call(move |conn| invites::give_back(conn, code_hash))
            .await
    }

    async fn revoke_invite(&self, id: i64) -> StoreResult<bool> {
        self.writer
            .call(move |conn| invites::revoke(conn, id))
            .await
    }

    async fn add_device(&self, device: NewDevice, now_ms: i64) -> StoreResult<Device> {
        self.writer
            .call(move |conn| devices::add(conn, device, now_ms))
            .await
    }

    async fn revoke_device(&self, serial: &str, now_ms: i64) -> StoreResult<bool> {
        let serial = serial.to_owned();
        self.writer
            .call(move |conn| devices::revoke(conn, &serial, now_ms))
            .await
    }

    async fn link_device(&self, serial: &str, owner: Option<PartyId>) -> StoreResult<bool> {
        let serial = serial.to_owned();
        self.writer
            .call(move |conn| devices::link(conn, &serial, owner))
            .await
    }

    async fn advance_initiations(&self, batch: Vec<([u8; 32], u32)>) -> StoreResult<Vec<bool>> {
        self.writer
            .call(move |conn| devices::advance_initiations(conn, &batch))
            .await
    }

    async fn commit(&self, batch: Vec<Write>) -> StoreResult<Committed> {
        self.writer
            .call(move |conn| write::commit(conn, &batch))
            .await?;
        self.checkpointer.nudge();
        // One writer: claims always hold, nothing to move.
        Ok(Committed::default())
    }

    async fn counters(&self) -> StoreResult<Counters> {
        reads::counters(self.reader()).await
    }

    async fn inbox_head(&self, inbox: PartyId) -> StoreResult<InboxHead> {
        // One writer: who follows an inbox can only change through it, so
        // there is no follower version to keep.
        Ok(InboxHead {
            head: reads::inbox_head(self.reader(), inbox).await?,
            version: 0,
        })
    }

    async fn put_peer(&self, peer: &PeerRecord) -> StoreResult<()> {
        let peer = peer.clone();
        self.writer
            .call(move |conn| federation::put_peer(conn, &peer))
            .await
    }

    async fn remove_peer(&self, domain: &str) -> StoreResult<bool> {
        let domain = domain.to_owned();
        self.writer
            .call(move |conn| federation::remove_peer(conn, &domain))
            .await
    }

    async fn ack_outbox(&self, peer: &str, up_to: u64) -> StoreResult<()> {
        let peer = peer.to_owned();
        self.writer
            .call(move |conn| federation::ack_outbox(conn, &peer, up_to))
            .await
    }

    async fn backup(&self, to: &Path) -> StoreResult<()> {
        // VACUUM INTO reads one snapshot on a reader connection and writes a
        // compact copy: commits go on meanwhile, and the copy holds exactly
        // what was committed when it began.
        if to.exists() {
            return Err(StoreError::Unsupported(
                "the backup file exists already; name a new one",
            ));
        }
        let target = to.to_str().ok_or(StoreError::Unsupported(
            "the backup path must be valid UTF-8",
        ))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.reader)
            .await?;
        Ok(())
    }
}

// --- damaged databases ------------------------------------------------------

/// The refusal to serve a damaged database file, whatever step found it.
fn corrupt(found: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "the database failed its integrity check ({found}); restore it from a backup"
    ))
}

/// An error opening the database; SQLite's "malformed" and "not a
/// database" (damage in the first pages) as [`corrupt`].
fn refuse_if_corrupt(error: sqlx::Error) -> StoreError {
    // SQLITE_CORRUPT and SQLITE_NOTADB, with any extended code.
    const DAMAGED: [i64; 2] = [11, 26];
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i64>().ok());
    match code {
        Some(code) if DAMAGED.contains(&(code & 0xff)) => corrupt(&error.to_string()),
        _ => error.into(),
    }
}

/// Refuses a database that fails SQLite's `quick_check`: serving one would
/// fail every request that touches a damaged page, forever.
async fn check_integrity(conn: &SqlitePool) -> StoreResult<()> {
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(3)")
        .fetch_all(conn)
        .await
        .map_err(|e| corrupt(&e.to_string()))?;
    match rows.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(corrupt(&rows.join("; "))),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(Box::new(error))
    }
}
