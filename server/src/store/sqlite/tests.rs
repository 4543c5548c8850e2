//! The conformance suite on real SQLite files, and what only SQLite has.

use std::time::Instant;

use bytes::Bytes;
use kanal_proto::pb;
use prost::Message as _;
use tempfile::TempDir;

use super::SqliteStore;
use crate::model::{EventRef, NewParty, PartyKind, Write};
use crate::store::{Store, StoreError, conformance};

/// A fresh store in its own temporary directory (removed on drop).
async fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("kanal.db"))
        .await
        .expect("open store");
    (dir, store)
}

crate::store_conformance_tests!(fresh);

#[tokio::test]
async fn survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kanal.db");
    conformance::survives_reopen(async || SqliteStore::open(&path).await.expect("open")).await;
}

#[tokio::test]
async fn survives_clean_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kanal.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let party = store
        .create_party(user("kept@kanal.test"))
        .await
        .expect("party");
    store.close().await;
    let store = SqliteStore::open(&path).await.expect("reopen");
    let found = store.party_by_id(party.id).await.expect("lookup");
    assert_eq!(found, Some(party));
}

#[tokio::test]
async fn opens_in_wal_mode_with_full_sync_and_foreign_keys() {
    let (_dir, store) = fresh().await;
    let mut conn = store.writer.acquire().await.expect("writer");
    let mode = sqlx::query_scalar::<_, String>("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let number = async |conn: &mut sqlx::SqliteConnection, pragma: &'static str| {
        sqlx::query_scalar::<_, i64>(pragma)
            .fetch_one(conn)
            .await
            .expect("pragma")
    };
    assert_eq!(
        number(&mut conn, "PRAGMA synchronous").await,
        2,
        "2 is FULL"
    );
    assert_eq!(number(&mut conn, "PRAGMA foreign_keys").await, 1);
    let timeout = number(&mut conn, "PRAGMA busy_timeout").await;
    assert_eq!(timeout, 5_000);
}

#[tokio::test]
async fn reader_connections_are_read_only() {
    let (_dir, store) = fresh().await;
    let refused = sqlx::query("UPDATE directory SET version = 42")
        .execute(&store.reader)
        .await;
    assert!(refused.is_err(), "a read-only connection wrote");
}

#[tokio::test]
async fn unknown_party_kind_is_corrupt() {
    let (_dir, store) = fresh().await;
    let party = store
        .create_party(user("odd@kanal.test"))
        .await
        .expect("party");
    sqlx::query("UPDATE parties SET kind = 99 WHERE id = $1")
        .bind(party.id)
        .execute(&store.writer)
        .await
        .expect("tamper");
    let read = store.party_by_id(party.id).await;
    assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    let listed = store.parties().await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");
}

#[tokio::test]
async fn undecodable_body_is_corrupt() {
    let (_dir, store) = fresh().await;
    let party = store
        .create_party(user("a@kanal.test"))
        .await
        .expect("party");
    let mut batch = conversation(1, party.id);
    batch.push(Write::Message {
        key: 1,
        seq: 1,
        sender: party.id,
        client_msg_id: "m".into(),
        sent_at_ms: 1,
        // A field header promising more bytes than there are.
        body: Bytes::from_static(&[0x0a, 0x05, b'h']),
    });
    store.commit(&batch).await.expect("commit");
    let history = store.history(1, 0, 10).await;
    assert!(
        matches!(history, Err(StoreError::Corrupt(_))),
        "{history:?}"
    );
}

#[tokio::test]
async fn seq_beyond_i64_is_refused_before_writing() {
    let (_dir, store) = fresh().await;
    let party = store
        .create_party(user("a@kanal.test"))
        .await
        .expect("party");
    let mut batch = conversation(1, party.id);
    batch.push(Write::Watermark {
        key: 1,
        party: party.id,
        kind: crate::model::ReceiptKind::Read,
        up_to: u64::MAX,
    });
    assert!(store.commit(&batch).await.is_err());
    assert_eq!(store.max_conversation_key().await.expect("max key"), 0);
}

/// Commit throughput with the engine's shape of batch: 256 sends, each to a
/// random one of 1,000 conversations, each one message, one activity update
/// and three events (for the conversation's customer, one of 20 agents and a
/// supervisor). Not a gate (wall-clock numbers depend on the disk and on
/// what else runs): run with
/// `cargo nextest run --release -p kanal-server commit_throughput --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn commit_throughput() {
    const BATCHES: usize = 300;
    const SENDS: usize = 256;
    const CONVERSATIONS: usize = 1_000;
    const AGENTS: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.db"))
        .await
        .expect("open");
    // Parties: 1 is the supervisor, 2..=21 the agents, then one customer
    // per conversation.
    let members = |c: usize| {
        let id = |n: usize| i64::try_from(n).expect("small");
        [id(2 + AGENTS + c), id(2 + c % AGENTS), 1]
    };
    let mut setup = store.writer.begin().await.expect("begin");
    for id in 1..=1 + AGENTS + CONVERSATIONS {
        sqlx::query(
            "INSERT INTO parties (id, address, kind, display_name, created_at_ms)
             VALUES ($1, $2, 1, '', 0)",
        )
        .bind(i64::try_from(id).expect("small"))
        .bind(format!("p{id}@kanal.test"))
        .execute(&mut *setup)
        .await
        .expect("party");
    }
    setup.commit().await.expect("parties");
    let conversations: Vec<Write> = (0..CONVERSATIONS)
        .map(|c| Write::NewConversation {
            key: i64::try_from(c + 1).expect("small"),
            id: format!("kanal.test/b{c}").parse().expect("id"),
            subject: String::new(),
            created_by: members(c)[0],
            created_at_ms: 0,
            members: members(c).to_vec(),
        })
        .collect();
    store.commit(&conversations).await.expect("conversations");

    let body = Bytes::from(
        pb::Body {
            kind: Some(pb::body::Kind::Text(
                "a message of a typical length, some sixty bytes long".into(),
            )),
        }
        .encode_to_vec(),
    );
    let mut seqs = vec![0_u64; CONVERSATIONS];
    let mut heads = vec![0_u64; 2 + AGENTS + CONVERSATIONS];
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    let mut batches = Vec::with_capacity(BATCHES);
    for b in 0..BATCHES {
        let mut batch = Vec::with_capacity(5 * SENDS);
        for s in 0..SENDS {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let c = usize::try_from(random % CONVERSATIONS as u64).expect("small");
            let key = i64::try_from(c + 1).expect("small");
            seqs[c] += 1;
            let seq = seqs[c];
            let at = i64::try_from(b * SENDS + s).expect("small");
            batch.push(Write::Message {
                key,
                seq,
                sender: members(c)[0],
                client_msg_id: format!("c{at}"),
                sent_at_ms: at,
                body: body.clone(),
            });
            batch.push(Write::Activity {
                key,
                last_seq: seq,
                last_activity_ms: at,
            });
            for party in members(c) {
                let head = &mut heads[usize::try_from(party).expect("small")];
                *head += 1;
                batch.push(Write::Event {
                    party,
                    seq: *head,
                    key,
                    what: EventRef::Message { seq },
                    at_ms: at,
                });
            }
        }
        batches.push(batch);
    }

    let mut latencies = Vec::with_capacity(BATCHES);
    let started = Instant::now();
    for batch in &batches {
        let commit_started = Instant::now();
        store.commit(batch).await.expect("commit");
        latencies.push(commit_started.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let messages = BATCHES * SENDS;
    println!(
        "{messages} messages in {BATCHES} batches: {:.0} messages/s; per batch: \
         mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        messages as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / BATCHES as f64,
        latencies[BATCHES / 2].as_secs_f64() * 1e3,
        latencies[BATCHES * 99 / 100].as_secs_f64() * 1e3,
        latencies[BATCHES - 1].as_secs_f64() * 1e3,
    );
}

/// A user to create.
fn user(address: &str) -> NewParty {
    NewParty {
        address: address.parse().expect("address"),
        kind: PartyKind::User,
        display_name: address.into(),
        password_hash: None,
    }
}

/// A conversation `key` with one member.
fn conversation(key: i64, party: i64) -> Vec<Write> {
    vec![Write::NewConversation {
        key,
        id: format!("kanal.test/t{key}").parse().expect("id"),
        subject: "t".into(),
        created_by: party,
        created_at_ms: 0,
        members: vec![party],
    }]
}
