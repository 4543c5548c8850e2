//! The writer against the in-memory store, whose commits can be held at a
//! gate, to observe what requesters see while a batch is being made durable.

use std::sync::Arc;

use futures::FutureExt as _;
use kanal_proto::address::{Address, ConversationId};

use super::*;
use crate::model::{Body, NewParty, Party, PartyKind, RefusalCode, Write};
use crate::node::hub::Hub;
use crate::store::Store;
use crate::store::memory::MemoryStore;

fn text(s: &str) -> Body {
    Body::Text(s.into())
}

/// Creates a party in the store before the writer starts.
async fn party(store: &dyn Store, local: &str, kind: PartyKind) -> Party {
    let id = store.counters().await.expect("counters").max_party + 1;
    let address = Address::new(local, "localhost").expect("valid");
    let new = NewParty {
        address: address.clone(),
        kind,
        display_name: String::new(),
        password_hash: None,
    };
    store
        .commit(vec![Write::NewParty {
            id,
            party: new,
            created_at_ms: 0,
        }])
        .await
        .expect("party");
    Party {
        id,
        address,
        kind,
        display_name: String::new(),
    }
}

/// Asserts conversation 1 holds exactly the messages `seqs`.
async fn assert_stored_seqs(store: &dyn Store, seqs: std::ops::RangeInclusive<u64>) {
    let (stored, _) = store.history(1, 0, 500).await.expect("history");
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        seqs.collect::<Vec<u64>>()
    );
}

/// Submits a send by `by` as a task of its own, so many can queue at once.
fn send_task(
    writer: &WriterHandle,
    by: &Party,
    id: &ConversationId,
    client_msg_id: String,
) -> tokio::task::JoinHandle<Reply> {
    let (writer, by, id) = (writer.clone(), by.clone(), id.clone());
    tokio::spawn(async move {
        writer
            .submit(Command::Send {
                by,
                conversation: id,
                client_msg_id,
                body: text("hi"),
            })
            .await
    })
}

/// Creates a conversation of `by` with `to` and returns its id.
async fn create(writer: &WriterHandle, by: &Party, to: &Party, opaque: &str) -> ConversationId {
    match writer
        .submit(Command::CreateConversation {
            by: by.clone(),
            to: vec![to.clone()],
            subject: String::new(),
            opaque: opaque.into(),
        })
        .await
    {
        Reply::Conversation(conversation) => conversation.id,
        other => panic!("create failed: {other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_acknowledged_before_its_commit() {
    let (store, mut entered) = MemoryStore::gated(2);
    let store = Arc::new(store);
    let alice = party(store.as_ref(), "alice", PartyKind::User).await;
    let bob = party(store.as_ref(), "bob", PartyKind::User).await;
    let hub = Arc::new(Hub::default());
    let (writer, task) = spawn(
        store.clone(),
        hub.clone(),
        "localhost".into(),
        Arc::default(),
        Duration::ZERO,
    )
    .await
    .expect("writer");

    // Create a conversation (one commit, let through).
    let create = tokio::spawn({
        let writer = writer.clone();
        let (alice, bob) = (alice.clone(), bob.clone());
        async move {
            writer
                .submit(Command::CreateConversation {
                    by: alice,
                    to: vec![bob],
                    subject: String::new(),
                    opaque: "gated".into(),
                })
                .await
        }
    });
    entered.recv().await.expect("party alice");
    entered.recv().await.expect("party bob");
    entered.recv().await.expect("create reaches commit");
    store.open_gate(1);
    let Reply::Conversation(conversation) = create.await.expect("task") else {
        panic!("create failed");
    };
    let id = conversation.id;

    // Many sends; the first batch is held at the gate.
    let mut sends: Vec<_> = (0..200)
        .map(|i| send_task(&writer, &alice, &id, format!("m{i}")))
        .collect();
    let mut held_rows = entered.recv().await.expect("a batch reaches commit");
    // While the commit is held, no requester has an answer and nobody saw an event.
    for send in &mut sends {
        assert!(
            send.now_or_never().is_none(),
            "a send was answered before its commit"
        );
    }
    let stored = store.history(1, 0, 500).await.expect("history").0;
    assert!(stored.is_empty(), "nothing is visible in the store yet");

    // Let batches through one at a time until every send is answered.
    let all_answered = futures::future::join_all(sends);
    tokio::pin!(all_answered);
    let answers = loop {
        store.open_gate(1);
        tokio::select! {
            answers = &mut all_answered => break answers,
            rows = entered.recv() => held_rows += rows.expect("the writer is alive"),
        }
    };
    let mut seqs = Vec::new();
    for answer in answers {
        match answer.expect("task") {
            Reply::Sent(sent) => seqs.push(sent.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    assert!(
        held_rows >= 200 * 3,
        "each send wrote its message, activity and events"
    );
    let (stored, _) = store.history(1, 0, 500).await.expect("history");
    assert_eq!(stored.len(), 200, "every acknowledged send is in the store");
    drop(writer);
    store.open_gate(1000);
    task.await.expect("writer ends when its handles are gone");
}

/// A retry of a send the writer has no memory of (here: sent before a
/// restart) is answered as the duplicate it is, and the sends batched with
/// it are stored without a gap.
#[tokio::test]
async fn a_retry_older_than_the_writers_memory_is_a_duplicate() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let alice = party(store.as_ref(), "alice", PartyKind::User).await;
    let bob = party(store.as_ref(), "bob", PartyKind::User).await;
    let send = |writer: &WriterHandle, id: &ConversationId, client_msg_id: &str| {
        let task = send_task(writer, &alice, id, client_msg_id.to_owned());
        async move {
            match task.await.expect("task") {
                Reply::Sent(sent) => (sent.seq, sent.duplicate),
                other => panic!("unexpected {other:?}"),
            }
        }
    };

    // Before the restart: one send.
    let (writer, task) = spawn(
        store.clone(),
        Arc::new(Hub::default()),
        "localhost".into(),
        Arc::default(),
        Duration::ZERO,
    )
    .await
    .expect("writer");
    let id = create(&writer, &alice, &bob, "restart").await;
    assert_eq!(send(&writer, &id, "old").await, (1, false));
    drop(writer);
    task.await.expect("writer ends");

    // After it: the retry, queued together with new sends.
    let (writer, task) = spawn(
        store.clone(),
        Arc::new(Hub::default()),
        "localhost".into(),
        Arc::default(),
        Duration::ZERO,
    )
    .await
    .expect("writer");
    let retry = send(&writer, &id, "old");
    let fresh: Vec<_> = (0..8)
        .map(|i| send(&writer, &id, &format!("new{i}")))
        .collect();
    assert_eq!(retry.await, (1, true));
    let mut seqs = Vec::new();
    for fresh in fresh {
        let (seq, duplicate) = fresh.await;
        assert!(!duplicate);
        seqs.push(seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=9).collect::<Vec<u64>>());
    // A second retry is answered from memory, and the next send follows on.
    assert_eq!(send(&writer, &id, "old").await, (1, true));
    assert_eq!(send(&writer, &id, "next").await, (10, false));
    assert_stored_seqs(store.as_ref(), 1..=10).await;
    drop(writer);
    task.await.expect("writer ends");
}

/// A failed commit refuses its batch and resets the engine to the database:
/// the batch queued behind it is stored without a gap where the failed
/// batch would have been.
#[tokio::test]
async fn a_failed_commit_leaves_no_gap_for_the_batches_after_it() {
    let (store, mut entered) = MemoryStore::gated(3);
    let store = Arc::new(store);
    let alice = party(store.as_ref(), "alice", PartyKind::User).await;
    let bob = party(store.as_ref(), "bob", PartyKind::User).await;
    let (writer, task) = spawn(
        store.clone(),
        Arc::new(Hub::default()),
        "localhost".into(),
        Arc::default(),
        Duration::ZERO,
    )
    .await
    .expect("writer");
    let id = create(&writer, &alice, &bob, "failing").await;
    for _ in 0..3 {
        entered
            .recv()
            .await
            .expect("parties and the create were committed");
    }
    let sends = |from: usize, to: usize| -> Vec<_> {
        (from..to)
            .map(|i| send_task(&writer, &alice, &id, format!("m{i}")))
            .collect()
    };

    // The first batch is held at the gate and will fail; meanwhile a second
    // batch queues behind it.
    let doomed = sends(0, 10);
    entered
        .recv()
        .await
        .expect("the first batch reaches its commit");
    let after = sends(10, 20);
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    store.fail_next_commit();
    store.open_gate(1000);

    for send in doomed {
        match send.await.expect("task") {
            Reply::Refused(refusal) => assert_eq!(refusal.code, RefusalCode::Internal),
            other => panic!("a send of the failed batch got {other:?}"),
        }
    }
    let mut seqs = Vec::new();
    for send in after {
        match send.await.expect("task") {
            Reply::Sent(sent) => seqs.push(sent.seq),
            other => panic!("a send after the failed batch got {other:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<u64>>(),
        "numbered as if the failed batch never was"
    );
    assert_stored_seqs(store.as_ref(), 1..=10).await;
    drop(writer);
    task.await.expect("writer ends");
}

/// With a commit window, what is queued within it after a batch waits for
/// its end and commits as one batch; past the window nothing waits.
#[tokio::test(start_paused = true)]
async fn a_commit_window_gathers_what_comes_within_it_and_delays_nothing_after() {
    use std::sync::atomic::Ordering;
    const WINDOW: Duration = Duration::from_millis(50);
    let store = Arc::new(MemoryStore::new());
    let alice = party(store.as_ref(), "alice", PartyKind::User).await;
    let bob = party(store.as_ref(), "bob", PartyKind::User).await;
    let (writer, task) = spawn(
        store.clone(),
        Arc::new(Hub::default()),
        "localhost".into(),
        Arc::default(),
        WINDOW,
    )
    .await
    .expect("writer");
    let batches = || writer.stats.batches.load(Ordering::Relaxed);

    // The first batch does not wait: no batch came before it.
    let started = tokio::time::Instant::now();
    let id = create(&writer, &alice, &bob, "window").await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    let after_create = batches();

    // Sends right after it wait for the window's end, and commit together.
    let sends: Vec<_> = (0..5)
        .map(|i| send_task(&writer, &alice, &id, format!("m{i}")))
        .collect();
    for send in sends {
        assert!(matches!(send.await.expect("task"), Reply::Sent(_)));
    }
    assert_eq!(started.elapsed(), WINDOW, "they waited out the window");
    assert_eq!(batches(), after_create + 1, "in one batch");

    // Once the window is over, a send is committed at once.
    tokio::time::advance(WINDOW * 2).await;
    let late = tokio::time::Instant::now();
    let reply = send_task(&writer, &alice, &id, "late".into()).await;
    assert!(matches!(reply.expect("task"), Reply::Sent(_)));
    assert_eq!(late.elapsed(), Duration::ZERO);
    assert_stored_seqs(store.as_ref(), 1..=6).await;
    drop(writer);
    task.await.expect("writer ends");
}
