//! The PostgreSQL store: one database, its schema brought up to date at
//! open (`migrations/postgres`), a pool of connections for writes, and two
//! pools of read-only connections, one for clients' reads and a small one
//! for the writer's loads (as the SQLite store has).
//!
//! Durability: every connection runs with `synchronous_commit = on`, set
//! when it connects (over whatever the server, the database or the role
//! sets), so a commit returns once the server has flushed its WAL record
//! to disk (with the server's `fsync = on`, its default). A batch is one
//! transaction: all of it or none of it.

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use std::time::Duration;
use tokio::sync::oneshot;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::columns::now_ms;
use super::sql::SqlBackend;
use super::{Store, StoreError, StoreResult};
use crate::model::{
    Committed, Counters, Device, InboxHead, Invite, NewDevice, NewInvite, NodeStatus, PartyId,
    PeerRecord, Session, SlotLease, Write,
};

mod claims;
mod devices;
mod directory;
mod federation;
mod invites;
mod nodes;
mod read;
mod tenancy;
mod write;

#[cfg(test)]
mod tests;

/// Read-only connections for clients' reads.
const READERS: u32 = 4;

/// Read-only connections kept for the writer's loads, so that clients'
/// reads never make an ordering wait for a connection.
const WRITER_READERS: u32 = 2;

/// Connections for writes: the engine's commits (one at a time) and, beside
/// them, sessions, acks and invites.
const WRITERS: u32 = 3;

/// Ids in a block of `id_blocks` (migrations/postgres/0002).
const ID_BLOCK: i64 = 1 << 20;

/// How long an idle connection is kept.
const IDLE: Duration = Duration::from_secs(600);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A [`Store`] in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Connections for every write.
    writer: PgPool,
    /// Read-only connections for everything else.
    reader: PgPool,
    /// Read-only connections only the writer's loads use (see
    /// [`Store::for_writer`]).
    writer_reader: PgPool,
    /// How to connect (for the connection holding the tenancy lock).
    options: Arc<PgConnectOptions>,
    /// Whether commits check their claims: unless this node uses the
    /// database alone (`tenancy`).
    checks_claims: Arc<AtomicBool>,
    /// Gives the tenancy lock back (answering once it is).
    tenancy: Arc<Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>>,
}

impl PgStore {
    /// Connects to the database at `url`
    /// (`postgres://user:password@host:port/database`, with parameters such
    /// as `?sslmode=require`), which must exist, and brings its schema up
    /// to date. The role needs to create tables in it the first time.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let base = PgConnectOptions::from_str(url)?.options([
            ("synchronous_commit", "on"),
            // PostgreSQL's notices ("relation already exists, skipping") are
            // not for Kanal's operators.
            ("client_min_messages", "warning"),
        ]);
        let read_only = base
            .clone()
            .options([("default_transaction_read_only", "on")]);
        let pool = |size, options: &PgConnectOptions| {
            PgPoolOptions::new()
                .max_connections(size)
                .min_connections(0)
                .idle_timeout(Some(IDLE))
                .connect_lazy_with(options.clone())
        };
        let writer = pool(WRITERS, &base);
        // The pools connect when first used: this is the first use, so a
        // wrong address, password or database name fails the open, and
        // says so before any migration is tried.
        let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&writer).await?;
        if fsync != "on" {
            tracing::warn!(
                %fsync,
                "PostgreSQL runs with fsync off: an acknowledged message survives a crash \
                 of kanald, but not one of the database's host"
            );
        }
        MIGRATOR.run(&writer).await?;
        Ok(Self {
            writer,
            reader: pool(READERS, &read_only),
            writer_reader: pool(WRITER_READERS, &read_only),
            options: Arc::new(base),
            checks_claims: Arc::new(AtomicBool::new(true)),
            tenancy: Arc::default(),
        })
    }

    /// Takes the tenancy lock (`tenancy`), kept until [`Store::stop_using`].
    async fn hold(&self, shared: bool) -> StoreResult<()> {
        let (release, released) = oneshot::channel();
        tenancy::hold(&self.options, shared, self.checks_claims.clone(), released).await?;
        *self.tenancy.lock().unwrap_or_else(PoisonError::into_inner) = Some(release);
        Ok(())
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer_reader.close().await;
        self.writer.close().await;
    }
}

#[async_trait]
impl SqlBackend for PgStore {
    type Reader = PgPool;

    fn reader(&self) -> &PgPool {
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
        directory::create_session(&self.writer, party, token_hash, client, now_ms()).await
    }

    async fn ack_session(&self, session: i64, seq: u64) -> StoreResult<()> {
        directory::ack_session(&self.writer, session, seq).await
    }

    async fn create_invite(&self, invite: NewInvite, now_ms: i64) -> StoreResult<Invite> {
        invites::create(&self.writer, &invite, now_ms).await
    }

    async fn add_device(&self, device: NewDevice, now_ms: i64) -> StoreResult<Device> {
        devices::add(&self.writer, device, now_ms).await
    }

    async fn revoke_device(&self, serial: &str, now_ms: i64) -> StoreResult<bool> {
        devices::revoke(&self.writer, serial, now_ms).await
    }

    async fn link_device(&self, serial: &str, owner: Option<PartyId>) -> StoreResult<bool> {
        devices::link(&self.writer, serial, owner).await
    }

    async fn advance_initiations(&self, batch: Vec<([u8; 32], u32)>) -> StoreResult<Vec<bool>> {
        devices::advance_initiations(&self.writer, &batch).await
    }

    async fn take_invite(&self, code_hash: [u8; 32], now_ms: i64) -> StoreResult<bool> {
        invites::take(&self.writer, code_hash, now_ms).await
    }

    async fn return_invite(&self, code_hash: [u8; 32]) -> StoreResult<()> {
        invites::give_back(&self.writer, code_hash).await
    }

    async fn revoke_invite(&self, id: i64) -> StoreResult<bool> {
        invites::revoke(&self.writer, id).await
    }

    async fn commit(&self, batch: Vec<Write>) -> StoreResult<Committed> {
        let checks = self.checks_claims.load(Ordering::Acquire);
        write::commit(&self.writer, &batch, checks).await
    }

    async fn use_alone(&self) -> StoreResult<()> {
        self.hold(false).await
    }

    async fn use_with_others(&self) -> StoreResult<()> {
        self.hold(true).await
    }

    async fn stop_using(&self) {
        let release = self
            .tenancy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(release) = release {
            let (done, released) = oneshot::channel();
            if release.send(done).is_ok() {
                let _ = released.await;
            }
        }
    }

    async fn counters(&self) -> StoreResult<Counters> {
        // Several nodes may number rows in this database: each takes a
        // block of ids of its own (on a connection that may write).
        let block: i64 = sqlx::query_scalar("SELECT nextval('id_blocks')")
            .fetch_one(&self.writer)
            .await?;
        let (Some(start), Some(end)) = (
            block.checked_mul(ID_BLOCK),
            block.checked_add(1).and_then(|b| b.checked_mul(ID_BLOCK)),
        ) else {
            return Err(StoreError::Corrupt(format!("id block {block}")));
        };
        Ok(Counters {
            max_key: start - 1,
            max_party: start - 1,
            key_end: Some(end),
            party_end: Some(end),
        })
    }

    async fn inbox_head(&self, inbox: PartyId) -> StoreResult<InboxHead> {
        read::inbox_head(&self.reader, inbox).await
    }

    async fn report_node(&self, status: &NodeStatus) -> StoreResult<()> {
        nodes::report(&self.writer, status).await
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeStatus>> {
        nodes::all(&self.reader).await
    }

    async fn slots(&self, now_ms: i64) -> StoreResult<Vec<SlotLease>> {
        nodes::slots(&self.reader, now_ms).await
    }

    async fn lease_slots(
        &self,
        node: i64,
        fair: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<SlotLease>> {
        nodes::lease_slots(&self.writer, node, fair, lease_ms, now_ms).await
    }

    async fn put_peer(&self, peer: &PeerRecord) -> StoreResult<()> {
        federation::put_peer(&self.writer, peer).await
    }

    async fn remove_peer(&self, domain: &str) -> StoreResult<bool> {
        federation::remove_peer(&self.writer, domain).await
    }

    async fn ack_outbox(&self, peer: &str, up_to: u64) -> StoreResult<()> {
        federation::ack_outbox(&self.writer, peer, up_to).await
    }

    async fn backup(&self, _to: &Path) -> StoreResult<()> {
        Err(StoreError::Unsupported(
            "back up a PostgreSQL database with pg_dump",
        ))
    }
}
