//! The conformance suite on a real PostgreSQL server, a database of its own
//! per test, and what only PostgreSQL has.
//!
//! The server is the one `KANAL_TEST_POSTGRES` names (default
//! [`DEFAULT_SERVER`]): a URL of a database to connect to, as a role that
//! may create databases. Each test creates `kanal_test_<random>` there and
//! drops it when it ends.

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use super::PgStore;
use crate::model::{Body, NewInvite, PartyKind, Write};
use crate::store::{Store, StoreError, conformance};

/// The server the tests use when `KANAL_TEST_POSTGRES` is not set.
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the database tests connect to in order to create and drop
/// their own.
fn server() -> String {
    std::env::var("KANAL_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let host = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host..].find('/') {
        Some(slash) => &base[..host + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Runs `sql` on a connection of its own to the [`server`].
async fn on_server(sql: String) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(&server()).await?;
    sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
    conn.close().await
}

/// A database of one test's own, dropped (with whatever is still connected
/// to it) when this is dropped.
struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database with a random name.
    async fn create() -> Self {
        let name = format!("kanal_test_{:016x}", rand::random::<u64>());
        on_server(format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating {name} on KANAL_TEST_POSTGRES: {e}"));
        let url = with_database(&server(), &name);
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on
        // another future: the database is dropped from a thread with a
        // runtime of its own.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sqlx::Error::Io)?
                .block_on(on_server(sql))
        })
        .join();
        if !std::thread::panicking() {
            dropped
                .expect("the thread dropping the database")
                .unwrap_or_else(|e| panic!("dropping {}: {e}", self.name));
        }
    }
}

/// A fresh store in a database of its own (dropped with the guard).
async fn fresh() -> (TestDatabase, PgStore) {
    let database = TestDatabase::create().await;
    let store = PgStore::open(&database.url).await.expect("open store");
    (database, store)
}

crate::store_conformance_tests!(fresh);

/// Two nodes' stores on one database: a shared log's rows move, not the batch.
#[tokio::test]
async fn rebasing_keeps_a_shared_log_gapless() {
    let database = TestDatabase::create().await;
    let first = PgStore::open(&database.url).await.expect("node one");
    let second = PgStore::open(&database.url).await.expect("node two");
    conformance::rebasing_keeps_a_shared_log_gapless(
        first.for_writer().expect("writer store"),
        second.for_writer().expect("writer store"),
    )
    .await;
}

/// Two nodes: two stores on one database, each with its own connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_writers_keep_every_log_gapless() {
    let database = TestDatabase::create().await;
    let first = PgStore::open(&database.url).await.expect("node one");
    let second = PgStore::open(&database.url).await.expect("node two");
    conformance::several_writers_keep_every_log_gapless(
        first.for_writer().expect("writer store"),
        second.for_writer().expect("writer store"),
    )
    .await;
}

#[tokio::test]
async fn survives_reopen() {
    let database = TestDatabase::create().await;
    conformance::survives_reopen(async || PgStore::open(&database.url).await.expect("open")).await;
}

#[tokio::test]
async fn survives_clean_close_and_reopen() {
    let database = TestDatabase::create().await;
    let store = PgStore::open(&database.url).await.expect("open");
    let party = conformance::new_party(&store, "kept@kanal.test", PartyKind::User).await;
    store.close().await;
    let store = PgStore::open(&database.url).await.expect("reopen");
    assert_eq!(
        store.party_by_id(party.id).await.expect("lookup"),
        Some(party)
    );
    store.close().await;
}

/// The value of `setting` on a connection of `pool`.
async fn setting(pool: &sqlx::PgPool, setting: &'static str) -> String {
    let sql = format!("SHOW {setting}");
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("SHOW")
}

/// Every connection of the store commits synchronously, even in a database
/// whose own default says otherwise.
#[tokio::test]
async fn every_connection_commits_synchronously() {
    let database = TestDatabase::create().await;
    on_server(format!(
        "ALTER DATABASE {} SET synchronous_commit = off",
        database.name
    ))
    .await
    .expect("a database that commits asynchronously by default");
    let mut plain = PgConnection::connect(&database.url).await.expect("connect");
    let default: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut plain)
        .await
        .expect("SHOW");
    assert_eq!(default, "off", "the database's default");
    plain.close().await.expect("close");

    let store = PgStore::open(&database.url).await.expect("open");
    for pool in [&store.writer, &store.reader, &store.writer_reader] {
        assert_eq!(setting(pool, "synchronous_commit").await, "on");
    }
    store.close().await;
}

#[tokio::test]
async fn reader_connections_are_read_only() {
    let (_database, store) = fresh().await;
    for pool in [&store.reader, &store.writer_reader] {
        assert_eq!(setting(pool, "default_transaction_read_only").await, "on");
        let refused = sqlx::query("DELETE FROM parties")
            .execute(pool)
            .await
            .expect_err("a read-only connection wrote");
        let code = refused.as_database_error().and_then(|e| e.code());
        // read_only_sql_transaction
        assert_eq!(code.as_deref(), Some("25006"), "{refused}");
    }
    assert_eq!(
        setting(&store.writer, "default_transaction_read_only").await,
        "off"
    );
}

/// Of concurrent takes of an invite's last uses, exactly as many succeed
/// as there were uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takes_share_the_last_uses() {
    const NOW: i64 = 1_800_000_000_000;
    let (_database, store) = fresh().await;
    for (code, uses) in [(1_u8, 1_u32), (2, 2), (3, 1)] {
        let invite = NewInvite {
            code_hash: [code; 32],
            uses,
            expires_at_ms: None,
            note: String::new(),
        };
        store.create_invite(invite, NOW).await.expect("create");
        let mut takes = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let store = store.clone();
            takes.spawn(async move { store.take_invite([code; 32], NOW).await });
        }
        let mut taken = 0;
        while let Some(take) = takes.join_next().await {
            taken += u32::from(take.expect("task").expect("take"));
        }
        assert_eq!(taken, uses, "code {code}");
        assert!(!store.take_invite([code; 32], NOW).await.expect("take"));
    }
}

#[tokio::test]
async fn sessions_need_a_party_and_acks_a_session() {
    let (_database, store) = fresh().await;
    let party = conformance::new_party(&store, "a@kanal.test", PartyKind::User).await;
    let orphan = store.create_session(party.id + 1, [1; 32], "cli").await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    let unknown = store.ack_session(42, 1).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn backup_is_pg_dumps_job() {
    let (_database, store) = fresh().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = store.backup(&dir.path().join("kanal.db")).await;
    assert!(
        matches!(refused, Err(StoreError::Unsupported(why)) if why.contains("pg_dump")),
        "{refused:?}"
    );
}

/// A batch far larger than PostgreSQL's 65,535 parameters per statement
/// would allow as multi-row VALUES commits whole.
#[tokio::test]
async fn a_batch_past_the_parameter_limit_commits() {
    const MESSAGES: u64 = 12_000;
    let (_database, store) = fresh().await;
    let party = conformance::new_party(&store, "big@kanal.test", PartyKind::User).await;
    let mut batch = vec![Write::NewConversation {
        key: 1,
        id: "kanal.test/big".parse().expect("id"),
        subject: String::new(),
        created_by: party.id,
        created_at_ms: 0,
        members: vec![party.id],
    }];
    for seq in 1..=MESSAGES {
        batch.push(Write::Message {
            key: 1,
            seq,
            sender: party.id,
            client_msg_id: format!("m{seq}"),
            sent_at_ms: 1,
            body: Body::Text(String::new()),
        });
    }
    store.commit(batch).await.expect("commit");
    let (messages, more) = store
        .history(1, 0, u32::try_from(MESSAGES).expect("small"))
        .await
        .expect("history");
    assert_eq!((messages.len() as u64, more), (MESSAGES, false));
}

/// Agents added in one batch (one statement) go after the inbox's agents,
/// in the batch's order, once each.
#[tokio::test]
async fn agents_added_in_one_batch_keep_its_order() {
    let (_database, store) = fresh().await;
    let inbox = conformance::new_party(&store, "help@kanal.test", PartyKind::Inbox).await;
    let mut agents = Vec::new();
    for address in ["a@kanal.test", "b@kanal.test", "c@kanal.test"] {
        agents.push(
            conformance::new_party(&store, address, PartyKind::Agent)
                .await
                .id,
        );
    }
    let [a, b, c] = <[i64; 3]>::try_from(agents).expect("three agents");
    let add = |agent| Write::InboxAgent {
        inbox: inbox.id,
        agent,
    };
    store.commit(vec![add(a)]).await.expect("first agent");
    store
        .commit(vec![add(c), add(b), add(c), add(a)])
        .await
        .expect("more agents");
    assert_eq!(
        store.inbox_agents(inbox.id).await.expect("agents"),
        vec![a, c, b]
    );
}

/// The writer's loads have connections of their own: with every client
/// read connection taken, they still run.
#[tokio::test]
async fn the_writer_reads_beside_busy_client_reads() {
    let (_database, store) = fresh().await;
    let party = conformance::new_party(&store, "busy@kanal.test", PartyKind::User).await;
    let mut taken = Vec::new();
    for _ in 0..super::READERS {
        taken.push(store.reader.acquire().await.expect("a client connection"));
    }
    let writer = store
        .for_writer()
        .expect("PostgreSQL keeps connections for the writer");
    let loaded = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        writer.party_by_id(party.id).await
    })
    .await
    .expect("the writer's loads waited for client connections");
    assert_eq!(loaded.expect("lookup"), Some(party));
    drop(taken);
}

#[tokio::test]
async fn a_missing_database_fails_the_open() {
    let missing = with_database(&server(), "kanal_test_never_created");
    let refused = PgStore::open(&missing).await;
    assert!(
        matches!(refused, Err(StoreError::Backend(_))),
        "{refused:?}"
    );
}

#[test]
fn urls_name_the_test_database() {
    for (url, expected) in [
        ("postgres://u@h:5432/postgres", "postgres://u@h:5432/t"),
        ("postgres://u@h", "postgres://u@h/t"),
        (
            "postgresql://u:p@h/db?sslmode=disable",
            "postgresql://u:p@h/t?sslmode=disable",
        ),
    ] {
        assert_eq!(with_database(url, "t"), expected, "{url}");
    }
}
