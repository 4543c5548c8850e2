//! The conformance suite on real SQLite files, and what only SQLite has.

use std::time::Instant;

use tempfile::TempDir;

use super::SqliteStore;
use crate::model::{Body, EventRef, Party, PartyKind, Write};
use crate::store::{Store, StoreError, StoreResult, conformance};

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
    let party = create_user(&store, "kept@kanal.test").await;
    store.close().await;
    let store = SqliteStore::open(&path).await.expect("reopen");
    let found = store.party_by_id(party.id).await.expect("lookup");
    assert_eq!(found, Some(party));
}

/// A damaged database is refused at open, with a message that says what
/// to do, instead of failing every request later.
#[tokio::test]
async fn a_corrupt_database_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kanal.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let party = create_user(&store, "kept@kanal.test").await;
    store
        .commit(conversation(1, party.id))
        .await
        .expect("commit");
    store.close().await;
    // Every page but the first (the schema) overwritten; the WAL, which
    // could still hold good copies, removed.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("kanal.db{suffix}")));
    }
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 4096, "the database has more than one page");
    for byte in &mut bytes[4096..] {
        *byte = 0xa5;
    }
    std::fs::write(&path, bytes).expect("corrupt");
    let refused = SqliteStore::open(&path)
        .await
        .expect_err("a corrupt database");
    let message = refused.to_string();
    assert!(
        message.contains("integrity check") && message.contains("restore it from a backup"),
        "{message}"
    );
}

#[tokio::test]
async fn opens_in_wal_mode_with_full_sync_and_foreign_keys() {
    let (_dir, store) = fresh().await;
    let (mode, numbers) = store
        .writer
        .call(|conn| {
            let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
            let mut numbers = Vec::new();
            for pragma in [
                "synchronous",
                "foreign_keys",
                "busy_timeout",
                "wal_autocheckpoint",
            ] {
                numbers.push(conn.pragma_query_value(None, pragma, |r| r.get::<_, i64>(0))?);
            }
            Ok((mode, numbers))
        })
        .await
        .expect("pragmas");
    assert_eq!(mode, "wal");
    assert_eq!(
        numbers,
        [2, 1, 5_000, i64::from(super::WAL_CHECKPOINT_PAGES)],
        "synchronous FULL (2), foreign keys on, 5 s busy timeout, checkpoint pages"
    );
}

/// Commits queue on the one writer and reads run beside them, with no
/// `SQLITE_BUSY` on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_and_reads() {
    const WRITERS: i64 = 6;
    const BATCHES: u64 = 20;
    let (_dir, store) = fresh().await;
    let party = create_user(&store, "busy@kanal.test").await;
    let mut tasks = tokio::task::JoinSet::new();
    for key in 1..=WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .commit(conversation(key, party.id))
                .await
                .expect("conversation");
            for seq in 1..=BATCHES {
                let batch = vec![Write::Message {
                    key,
                    seq,
                    sender: party.id,
                    client_msg_id: format!("{key}-{seq}"),
                    sent_at_ms: 0,
                    body: Body::Text(String::new()),
                }];
                store.commit(batch).await.expect("commit");
                store.history(key, 0, 5).await.expect("read beside commits");
            }
        });
    }
    for _ in 0..2 {
        let store = store.clone();
        tasks.spawn(async move {
            for _ in 0..50 {
                store
                    .conversations_of(party.id, 10, 0)
                    .await
                    .expect("list beside commits");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    for key in 1..=WRITERS {
        let (messages, _) = store.history(key, 0, 100).await.expect("history");
        assert_eq!(messages.len() as u64, BATCHES);
    }
}

/// Frames in the WAL now, read with a PASSIVE checkpoint on the writer
/// (which copies them, but does not start the WAL over).
async fn wal_frames(store: &SqliteStore) -> i64 {
    store
        .writer
        .call(|conn| Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?))
        .await
        .expect("wal frames")
}

/// A party named `address` and conversation 1 with it as the only member.
async fn one_conversation(store: &SqliteStore, address: &str) -> i64 {
    let party = create_user(store, address).await;
    store
        .commit(conversation(1, party.id))
        .await
        .expect("conversation");
    party.id
}

/// One checkpoint cycle, closed on the writer from `restart_frames` frames.
async fn cycle(store: &SqliteStore, restart_frames: i64) -> super::checkpoint::Cycle {
    store
        .checkpointer
        .checkpoints
        .cycle(restart_frames)
        .await
        .expect("cycle")
}

fn message(key: i64, seq: u64, sender: i64) -> Vec<Write> {
    vec![Write::Message {
        key,
        seq,
        sender,
        client_msg_id: format!("{key}-{seq}"),
        sent_at_ms: 0,
        body: Body::Text(String::new()),
    }]
}

/// A checkpoint cycle copies the WAL into the database, and its closing
/// pass on the writer lets the next commit start the WAL over, so the WAL
/// does not grow without end.
#[tokio::test]
async fn a_checkpoint_cycle_starts_the_wal_over() {
    const MESSAGES: u64 = 100;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kanal.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let party = one_conversation(&store, "ckpt@kanal.test").await;
    for seq in 1..=MESSAGES {
        store.commit(message(1, seq, party)).await.expect("commit");
    }
    let done = cycle(&store, 1).await;
    assert!(done.complete, "{done:?}");
    assert!(done.frames > 100, "{done:?}");

    store
        .commit(message(1, MESSAGES + 1, party))
        .await
        .expect("commit after the cycle");
    let frames = wal_frames(&store).await;
    assert!(
        frames < 10,
        "the WAL went on from {} frames to {frames}",
        done.frames
    );

    // Below the threshold the cycle copies but leaves the writer alone.
    let done = cycle(&store, 1_000_000).await;
    assert!(!done.complete, "{done:?}");

    store.close().await;
    let store = SqliteStore::open(&path).await.expect("reopen");
    let (messages, _) = store.history(1, 0, 1_000).await.expect("history");
    assert_eq!(messages.len() as u64, MESSAGES + 1);
}

/// Cycles run while commits go on: each one completes, and no commit made
/// during a pass is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_cycles_beside_commits_lose_nothing() {
    let (_dir, store) = fresh().await;
    // The cycles under test are this test's; a background one beside them
    // would contend for the same WAL and make them incomplete.
    store.checkpointer.pause_background();
    let party = one_conversation(&store, "busy-ckpt@kanal.test").await;
    let (progress, mut committed) = tokio::sync::watch::channel(0_u64);
    let committer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            // Until the test stops watching.
            while !progress.is_closed() {
                seq += 1;
                store.commit(message(1, seq, party)).await.expect("commit");
                progress.send_replace(seq);
            }
            seq
        })
    };
    for _ in 0..5 {
        // Some commits since the last cycle, and more during this one.
        let from = *committed.borrow_and_update();
        committed
            .wait_for(|seq| *seq >= from + 5)
            .await
            .expect("committer");
        let done = cycle(&store, 1).await;
        assert!(done.complete, "{done:?}");
    }
    drop(committed);
    let committed = committer.await.expect("committer");
    let (messages, _) = store.history(1, 0, 100_000).await.expect("history");
    assert_eq!(messages.len() as u64, committed);
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] + 1 == w[1]),
        "a gap in {seqs:?}"
    );
}

/// A write that panics fails alone with `Aborted`: what it began is rolled
/// back, with or without a transaction guard, and the writer thread goes on
/// serving commits.
#[tokio::test]
async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
    const INSERT: &str = "INSERT INTO messages (key, seq, sender, client_msg_id, sent_at_ms, body)
                          VALUES (1, ?1, ?2, ?3, 0, x'')";
    let (_dir, store) = fresh().await;
    let party = one_conversation(&store, "panic@kanal.test").await;

    let guarded = store
        .writer
        .call(move |conn| -> StoreResult<()> {
            let tx = conn.transaction()?;
            tx.execute(INSERT, rusqlite::params![1, party, "guarded"])?;
            panic!("a bug inside a guarded write");
        })
        .await;
    assert!(matches!(guarded, Err(StoreError::Aborted)), "{guarded:?}");

    let unguarded = store
        .writer
        .call(move |conn| -> StoreResult<()> {
            conn.execute_batch("BEGIN")?;
            conn.execute(INSERT, rusqlite::params![1, party, "unguarded"])?;
            panic!("a bug inside an unguarded write");
        })
        .await;
    assert!(
        matches!(unguarded, Err(StoreError::Aborted)),
        "{unguarded:?}"
    );

    let (messages, _) = store.history(1, 0, 10).await.expect("history");
    assert!(messages.is_empty(), "a panicked write was stored");
    store
        .commit(message(1, 1, party))
        .await
        .expect("a commit after the panics");
    let (messages, _) = store.history(1, 0, 10).await.expect("history");
    assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [1]);
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
    let party = create_user(&store, "odd@kanal.test").await;
    let id = party.id;
    store
        .writer
        .call(move |conn| {
            conn.execute("UPDATE parties SET kind = 99 WHERE id = ?1", [id])?;
            Ok(())
        })
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
    let party = create_user(&store, "a@kanal.test").await;
    let mut batch = conversation(1, party.id);
    batch.push(Write::Message {
        key: 1,
        seq: 1,
        sender: party.id,
        client_msg_id: "m".into(),
        sent_at_ms: 1,
        body: Body::Text("h".into()),
    });
    store.commit(batch).await.expect("commit");
    store
        .writer
        .call(|conn| {
            // A field header promising more bytes than there are.
            conn.execute("UPDATE messages SET body = X'0a0568'", [])?;
            Ok(())
        })
        .await
        .expect("tamper");
    let history = store.history(1, 0, 10).await;
    assert!(
        matches!(history, Err(StoreError::Corrupt(_))),
        "{history:?}"
    );
}

/// Desk rows with values this version never writes, and a desk event whose
/// entry is gone, are refused as corrupt.
#[tokio::test]
async fn corrupt_desk_rows_are_corrupt() {
    use crate::model::{
        Availability, DeskEntry, Owner, Priority, Status, StoredSeat, StoredTicket, TicketFilter,
    };
    let (_dir, store) = fresh().await;
    let party = create_user(&store, "a@kanal.test").await;
    let mut batch = conversation(1, party.id);
    batch.extend([
        Write::Ticket(StoredTicket {
            key: 1,
            inbox: party.id,
            status: Status::Open,
            owner: Owner::Agent(party.id),
            priority: Priority::High,
            last_dseq: 1,
            updated_at_ms: 5,
            state: "{}".into(),
        }),
        Write::Seat(StoredSeat {
            inbox: party.id,
            agent: party.id,
            availability: Availability::Online,
            capacity: Some(2),
            last_assigned_ms: 0,
        }),
        Write::DeskEntry(DeskEntry {
            key: 1,
            dseq: 1,
            inbox: party.id,
            at_ms: 5,
            actor: None,
            client_note_id: String::new(),
            payload: vec![1, 2, 3].into(),
        }),
        Write::Event {
            party: party.id,
            seq: 1,
            key: 1,
            what: EventRef::Desk { dseq: 1 },
            at_ms: 5,
        },
    ]);
    store.commit(batch).await.expect("commit");
    let tamper = async |sql: &'static str| {
        store
            .writer
            .call(move |conn| {
                conn.execute(sql, [])?;
                Ok(())
            })
            .await
            .expect("tamper");
    };
    let corrupt = |what: &str, result: StoreResult<()>| {
        assert!(
            matches!(result, Err(StoreError::Corrupt(_))),
            "{what}: {result:?}"
        );
    };
    // A snoozed ticket without its time, an owner without an id.
    tamper("UPDATE tickets SET status = 3, status_at_ms = NULL").await;
    corrupt("status", store.ticket(1).await.map(drop));
    tamper("UPDATE tickets SET status = 1, owner = NULL").await;
    corrupt("owner", store.desk(party.id).await.map(drop));
    let everyone = TicketFilter {
        inboxes: vec![party.id],
        ..TicketFilter::default()
    };
    corrupt("listing", store.tickets(&everyone, 10, 0).await.map(drop));
    tamper("UPDATE seats SET availability = 9").await;
    corrupt("availability", store.desk(party.id).await.map(drop));
    tamper("DELETE FROM desk_entries").await;
    corrupt(
        "desk event",
        store
            .events_since(party.id, 0, 10, usize::MAX)
            .await
            .map(drop),
    );
}

#[tokio::test]
async fn seq_beyond_i64_is_refused_before_writing() {
    let (_dir, store) = fresh().await;
    let party = create_user(&store, "a@kanal.test").await;
    let mut batch = conversation(1, party.id);
    batch.push(Write::Watermark {
        key: 1,
        party: party.id,
        kind: crate::model::ReceiptKind::Read,
        up_to: u64::MAX,
    });
    assert!(store.commit(batch).await.is_err());
    assert_eq!(store.counters().await.expect("counters").max_key, 0);
}

// --- benchmarks ------------------------------------------------------------------
//
// Not gates: wall-clock numbers depend on the disk and on whatever else the
// machine runs. Run with
// `cargo nextest run --release -p kanal-server commit_ --run-ignored only --no-capture -j 1`.
// The workload is the engine's shape of batch: sends to random conversations
// among 1,000, each send one message, one activity update and three events
// (for the conversation's customer, one of 20 agents, and a supervisor).

/// Conversations in the benchmark workload.
const BENCH_CONVERSATIONS: usize = 1_000;
/// Agents in the benchmark workload.
const BENCH_AGENTS: usize = 20;

/// Back-to-back batches of 256 sends: throughput, and commit latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn commit_throughput() {
    const BATCHES: usize = 300;
    const SENDS: usize = 256;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = bench_store(dir.path()).await;
    let batches = bench_batches(BATCHES, SENDS);
    let mut latencies = Vec::with_capacity(BATCHES);
    let started = Instant::now();
    for batch in batches {
        let commit_started = Instant::now();
        store.commit(batch).await.expect("commit");
        latencies.push(commit_started.elapsed());
    }
    let elapsed = started.elapsed();
    println!(
        "{} messages in {BATCHES} batches of {SENDS}: {:.0} messages/s; commit {}",
        BATCHES * SENDS,
        (BATCHES * SENDS) as f64 / elapsed.as_secs_f64(),
        percentiles(&mut latencies)
    );
}

/// 10,000 messages/s in batches of 32 (one every 3.2 ms) for 3 s: commit
/// latency under a steady, moderate load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn commit_latency_at_10k() {
    const BATCHES: usize = 940;
    const SENDS: usize = 32;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = bench_store(dir.path()).await;
    let batches = bench_batches(BATCHES, SENDS);
    let mut latencies = Vec::with_capacity(BATCHES);
    let mut tick = tokio::time::interval(std::time::Duration::from_micros(3_200));
    for batch in batches {
        tick.tick().await;
        let commit_started = Instant::now();
        store.commit(batch).await.expect("commit");
        latencies.push(commit_started.elapsed());
    }
    println!(
        "{} messages at 10,000/s in batches of {SENDS}: commit {}",
        BATCHES * SENDS,
        percentiles(&mut latencies)
    );
}

/// The parties and conversations of the benchmark workload.
async fn bench_store(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(&dir.join("bench.db"))
        .await
        .expect("open");
    store
        .writer
        .call(|conn| {
            let tx = conn.transaction()?;
            for id in 1..=1 + BENCH_AGENTS + BENCH_CONVERSATIONS {
                tx.execute(
                    "INSERT INTO parties (id, address, kind, display_name, created_at_ms)
                     VALUES (?1, ?2, 1, '', 0)",
                    rusqlite::params![
                        i64::try_from(id).expect("small"),
                        format!("p{id}@kanal.test")
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .expect("parties");
    let conversations: Vec<Write> = (0..BENCH_CONVERSATIONS)
        .map(|c| Write::NewConversation {
            key: i64::try_from(c + 1).expect("small"),
            id: format!("kanal.test/b{c}").parse().expect("id"),
            subject: String::new(),
            created_by: bench_members(c)[0],
            created_at_ms: 0,
            members: bench_members(c).to_vec(),
        })
        .collect();
    store.commit(conversations).await.expect("conversations");
    store
}

/// Party 1 is the supervisor, 2..=21 are the agents, then one customer per
/// conversation.
fn bench_members(conversation: usize) -> [i64; 3] {
    let id = |n: usize| i64::try_from(n).expect("small");
    [
        id(2 + BENCH_AGENTS + conversation),
        id(2 + conversation % BENCH_AGENTS),
        1,
    ]
}

/// `count` batches of `sends` sends each, as the engine would write them.
fn bench_batches(count: usize, sends: usize) -> Vec<Vec<Write>> {
    let body = Body::Text("a message of a typical length, some sixty bytes long".into());
    let mut seqs = vec![0_u64; BENCH_CONVERSATIONS];
    let mut heads = vec![0_u64; 2 + BENCH_AGENTS + BENCH_CONVERSATIONS];
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    let mut at = 0_i64;
    let mut batches = Vec::with_capacity(count);
    for _ in 0..count {
        let mut batch = Vec::with_capacity(5 * sends);
        for _ in 0..sends {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let c = usize::try_from(random % BENCH_CONVERSATIONS as u64).expect("small");
            let key = i64::try_from(c + 1).expect("small");
            seqs[c] += 1;
            let seq = seqs[c];
            at += 1;
            batch.push(Write::Message {
                key,
                seq,
                sender: bench_members(c)[0],
                client_msg_id: format!("c{at}"),
                sent_at_ms: at,
                body: body.clone(),
            });
            for party in bench_members(c) {
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
    batches
}

/// "p50 …, p99 …, max …" of `latencies`, in ms.
fn percentiles(latencies: &mut [std::time::Duration]) -> String {
    latencies.sort_unstable();
    let at = |q: usize| {
        let i = (latencies.len() * q / 100).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(50),
        at(99),
        at(100)
    )
}

/// Creates a user under the next free id.
async fn create_user(store: &SqliteStore, address: &str) -> Party {
    conformance::new_party(store, address, PartyKind::User).await
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

/// The writer's loads have connections of their own: with every client
/// read connection taken, they still run.
#[tokio::test]
async fn the_writer_reads_beside_busy_client_reads() {
    let (_dir, store) = fresh().await;
    let party = create_user(&store, "busy@kanal.test").await;
    let mut taken = Vec::new();
    for _ in 0..super::READERS {
        taken.push(store.reader.acquire().await.expect("a client connection"));
    }
    let writer = store
        .for_writer()
        .expect("SQLite keeps connections for the writer");
    let loaded = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        (writer.counters().await, writer.party_by_id(party.id).await)
    })
    .await
    .expect("the writer's loads waited for client connections");
    assert!(loaded.0.is_ok());
    assert_eq!(loaded.1.expect("lookup"), Some(party));
    drop(taken);
}
