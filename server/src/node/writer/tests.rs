//! The writer against a real SQLite store whose commits can be held at a
//! gate, to observe what requesters see while a batch is being made durable.

use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt as _;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::pb;
use tokio::sync::{Semaphore, mpsc};

use super::*;
use crate::model::{
    ConversationKey, ConversationRecord, NewParty, Party, PartyId, PartyKind, ReceiptKind, Session,
    StoredSend, Write,
};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreResult};

/// The real store, except that each `commit` first announces itself and then
/// waits for a permit.
struct GatedStore {
    inner: SqliteStore,
    entered: mpsc::UnboundedSender<usize>,
    gate: Semaphore,
    /// When set, the next commit let through fails instead (and clears it).
    fail_next: std::sync::atomic::AtomicBool,
}

impl GatedStore {
    /// A gated store in `dir` whose gate lets `permits` commits through;
    /// the receiver hears of each commit (its row count) as it arrives.
    async fn open(
        dir: &std::path::Path,
        permits: usize,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<usize>) {
        let (entered, arrivals) = mpsc::unbounded_channel();
        let store = Arc::new(Self {
            inner: SqliteStore::open(&dir.join("kanal.db"))
                .await
                .expect("open"),
            entered,
            gate: Semaphore::new(permits),
            fail_next: false.into(),
        });
        (store, arrivals)
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn commit(&self, batch: Vec<Write>) -> StoreResult<()> {
        let _ = self.entered.send(batch.len());
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        permit.forget();
        if self
            .fail_next
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(crate::store::StoreError::Corrupt("injected failure".into()));
        }
        self.inner.commit(batch).await
    }
    async fn create_party(&self, party: NewParty) -> StoreResult<Party> {
        self.inner.create_party(party).await
    }
    async fn party_by_address(&self, address: &Address) -> StoreResult<Option<Party>> {
        self.inner.party_by_address(address).await
    }
    async fn party_by_id(&self, id: PartyId) -> StoreResult<Option<Party>> {
        self.inner.party_by_id(id).await
    }
    async fn password_hash(&self, id: PartyId) -> StoreResult<Option<String>> {
        self.inner.password_hash(id).await
    }
    async fn add_inbox_agent(&self, inbox: PartyId, agent: PartyId) -> StoreResult<()> {
        self.inner.add_inbox_agent(inbox, agent).await
    }
    async fn inbox_agents(&self, inbox: PartyId) -> StoreResult<Vec<PartyId>> {
        self.inner.inbox_agents(inbox).await
    }
    async fn agent_inboxes(&self, agent: PartyId) -> StoreResult<Vec<PartyId>> {
        self.inner.agent_inboxes(agent).await
    }
    async fn directory_version(&self) -> StoreResult<i64> {
        self.inner.directory_version().await
    }
    async fn parties(&self) -> StoreResult<Vec<Party>> {
        self.inner.parties().await
    }
    async fn create_session(
        &self,
        party: PartyId,
        token_hash: [u8; 32],
        client: &str,
    ) -> StoreResult<Session> {
        self.inner.create_session(party, token_hash, client).await
    }
    async fn session_by_token_hash(&self, token_hash: [u8; 32]) -> StoreResult<Option<Session>> {
        self.inner.session_by_token_hash(token_hash).await
    }
    async fn ack_session(&self, session: i64, seq: u64) -> StoreResult<()> {
        self.inner.ack_session(session, seq).await
    }
    async fn load_conversation(
        &self,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>> {
        self.inner.load_conversation(id).await
    }
    async fn max_conversation_key(&self) -> StoreResult<ConversationKey> {
        self.inner.max_conversation_key().await
    }
    async fn event_head(&self, party: PartyId) -> StoreResult<u64> {
        self.inner.event_head(party).await
    }
    async fn find_send(
        &self,
        key: ConversationKey,
        sender: PartyId,
        cmid: &str,
    ) -> StoreResult<Option<StoredSend>> {
        self.inner.find_send(key, sender, cmid).await
    }
    async fn watermark(
        &self,
        key: ConversationKey,
        party: PartyId,
        kind: ReceiptKind,
    ) -> StoreResult<u64> {
        self.inner.watermark(key, party, kind).await
    }
    async fn can_see(&self, key: ConversationKey, party: PartyId) -> StoreResult<bool> {
        self.inner.can_see(key, party).await
    }
    async fn history(
        &self,
        key: ConversationKey,
        before: u64,
        limit: u32,
    ) -> StoreResult<(Vec<pb::Message>, bool)> {
        self.inner.history(key, before, limit).await
    }
    async fn events_since(
        &self,
        party: PartyId,
        since: u64,
        limit: u32,
    ) -> StoreResult<Vec<pb::Event>> {
        self.inner.events_since(party, since, limit).await
    }
    async fn conversations_of(
        &self,
        party: PartyId,
        limit: u32,
        offset: u32,
    ) -> StoreResult<(Vec<pb::Conversation>, bool)> {
        self.inner.conversations_of(party, limit, offset).await
    }
    async fn conversation_view(
        &self,
        key: ConversationKey,
        viewer: PartyId,
    ) -> StoreResult<Option<pb::Conversation>> {
        self.inner.conversation_view(key, viewer).await
    }
}

fn text(s: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(s.into())),
    }
}

async fn party(store: &dyn Store, local: &str, kind: PartyKind) -> Party {
    store
        .create_party(NewParty {
            address: Address::new(local, "localhost").expect("valid"),
            kind,
            display_name: String::new(),
            password_hash: None,
        })
        .await
        .expect("party")
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
        Reply::Conversation(conversation) => conversation.id.parse().expect("id"),
        other => panic!("create failed: {other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_acknowledged_before_its_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut entered) = GatedStore::open(dir.path(), 0).await;
    let alice = party(store.as_ref(), "alice", PartyKind::User).await;
    let bob = party(store.as_ref(), "bob", PartyKind::User).await;
    let hub = Arc::new(Hub::default());
    let (writer, task) = spawn(store.clone(), hub.clone(), "localhost".into())
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
    entered.recv().await.expect("create reaches commit");
    store.gate.add_permits(1);
    let Reply::Conversation(conversation) = create.await.expect("task") else {
        panic!("create failed");
    };
    let id: ConversationId = conversation.id.parse().expect("id");

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
    let stored = store.inner.history(1, 0, 500).await.expect("history").0;
    assert!(stored.is_empty(), "nothing is visible in the store yet");

    // Let batches through one at a time until every send is answered.
    let all_answered = futures::future::join_all(sends);
    tokio::pin!(all_answered);
    let answers = loop {
        store.gate.add_permits(1);
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
    let (stored, _) = store.inner.history(1, 0, 500).await.expect("history");
    assert_eq!(stored.len(), 200, "every acknowledged send is in the store");
    drop(writer);
    store.gate.add_permits(1000);
    task.await.expect("writer ends when its handles are gone");
}

/// A retry of a send the writer has no memory of (here: sent before a
/// restart) is answered as the duplicate it is, and the sends batched with
/// it are stored without a gap.
#[tokio::test]
async fn a_retry_older_than_the_writers_memory_is_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("kanal.db"))
            .await
            .expect("open"),
    );
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
    let (writer, task) = spawn(store.clone(), Arc::new(Hub::default()), "localhost".into())
        .await
        .expect("writer");
    let id = create(&writer, &alice, &bob, "restart").await;
    assert_eq!(send(&writer, &id, "old").await, (1, false));
    drop(writer);
    task.await.expect("writer ends");

    // After it: the retry, queued together with new sends.
    let (writer, task) = spawn(store.clone(), Arc::new(Hub::default()), "localhost".into())
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
    let (stored, _) = store.history(1, 0, 50).await.expect("history");
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<u64>>()
    );
    drop(writer);
    task.await.expect("writer ends");
}

/// A failed commit refuses its batch and resets the engine to the database:
/// the batch queued behind it is stored without a gap where the failed
/// batch would have been.
#[tokio::test]
async fn a_failed_commit_leaves_no_gap_for_the_batches_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mut entered) = GatedStore::open(dir.path(), 1).await;
    let alice = party(store.as_ref(), "alice", PartyKind::User).await;
    let bob = party(store.as_ref(), "bob", PartyKind::User).await;
    let (writer, task) = spawn(store.clone(), Arc::new(Hub::default()), "localhost".into())
        .await
        .expect("writer");
    let id = create(&writer, &alice, &bob, "failing").await;
    entered.recv().await.expect("the create was committed");
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
    store
        .fail_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    store.gate.add_permits(1000);

    for send in doomed {
        match send.await.expect("task") {
            Reply::Refused(code, _) => assert_eq!(code, pb::ErrorCode::Internal),
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
    let (stored, _) = store.inner.history(1, 0, 50).await.expect("history");
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<u64>>()
    );
    drop(writer);
    task.await.expect("writer ends");
}
