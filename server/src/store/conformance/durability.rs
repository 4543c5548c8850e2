//! Checks of atomicity and durability.

use super::{
    add_agent, added, conversation_id, event, message, new_conversation, new_party, text, watermark,
};
use crate::model::{
    DeskEntry, EventRef, Owner, PartyKind, Priority, ReceiptKind, Status, StoredTicket, Write,
};
use crate::store::{Store, StoreError};

/// A batch that fails leaves nothing behind, and the store goes on working.
pub async fn failed_batch_leaves_nothing<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let one = conversation_id("kanal.test/one");
    let mut batch = new_conversation(1, &one, alice.id, &[alice.id], 10);
    batch.push(message(1, 1, alice.id, "x1", 20, "kept"));
    store.commit(batch).await.expect("commit");

    // Everything valid but the last write: message 1 exists already.
    let two = conversation_id("kanal.test/two");
    let mut doomed = new_conversation(2, &two, alice.id, &[alice.id], 30);
    doomed.extend([
        added(alice.id, 1, 2, 30),
        message(2, 1, alice.id, "y1", 30, "lost"),
        message(1, 2, alice.id, "x2", 30, "lost"),
        watermark(1, alice.id, ReceiptKind::Read, 2),
        message(1, 1, alice.id, "x1-again", 30, "duplicate seq"),
    ]);
    assert!(
        store.commit(doomed).await.is_err(),
        "a duplicate message seq fails"
    );

    // And a batch whose duplicates are within itself.
    let dup = vec![
        message(1, 2, alice.id, "x2", 40, "a"),
        message(1, 2, alice.id, "x3", 40, "b"),
    ];
    assert!(
        store.commit(dup).await.is_err(),
        "a seq twice in one batch fails"
    );

    assert_eq!(store.load_conversation(&two).await.expect("load"), None);
    assert!(
        store.counters().await.expect("counters").max_key >= 1,
        "numbering starts after what is in use"
    );
    assert_eq!(store.event_head(alice.id).await.expect("head"), 0);
    let (kept, _) = store.history(1, 0, 10).await.expect("history");
    assert_eq!(kept.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1]);
    assert_eq!(store.history(2, 0, 10).await.expect("history").0.len(), 0);
    let record = store
        .load_conversation(&one)
        .await
        .expect("load")
        .expect("kept");
    assert_eq!((record.last_seq, record.last_activity_ms), (1, 20));
    let view = store
        .conversation_view(1, alice.id)
        .await
        .expect("view")
        .expect("kept");
    assert_eq!(view.read_up_to, 0);
    assert_eq!(
        store.find_send(1, alice.id, "x2").await.expect("find"),
        None
    );

    // The store is not left mid-transaction.
    store
        .commit(vec![message(1, 2, alice.id, "x2", 50, "next")])
        .await
        .expect("a good batch after failed ones");
    assert_eq!(store.history(1, 0, 10).await.expect("history").0.len(), 2);
}

/// A message reusing a stored (conversation, sender, client_msg_id) fails
/// its batch with `DuplicateSend` and stores nothing; other conflicts are
/// not mistaken for it.
pub async fn reused_client_msg_id_is_a_duplicate_send<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let bob = new_party(store, "bob@kanal.test", PartyKind::User).await;
    let one = conversation_id("kanal.test/one");
    let mut batch = new_conversation(1, &one, alice.id, &[alice.id, bob.id], 10);
    batch.push(message(1, 1, alice.id, "m1", 20, "first"));
    store.commit(batch).await.expect("commit");

    let retry = vec![
        message(1, 2, bob.id, "b1", 30, "lost with the batch"),
        message(1, 3, alice.id, "m1", 30, "a retry taken for new"),
    ];
    assert!(matches!(
        store.commit(retry).await,
        Err(StoreError::DuplicateSend)
    ));
    assert_eq!(store.find_send(1, bob.id, "b1").await.expect("find"), None);

    // The same id from another sender is another key; a seq conflict is
    // not a duplicate send.
    store
        .commit(vec![message(1, 2, bob.id, "m1", 40, "bob's own")])
        .await
        .expect("another sender's id");
    let seq_conflict = store
        .commit(vec![message(1, 2, alice.id, "m2", 50, "taken seq")])
        .await;
    assert!(
        matches!(seq_conflict, Err(ref e) if !matches!(e, StoreError::DuplicateSend)),
        "{seq_conflict:?}"
    );
    assert_eq!(store.history(1, 0, 10).await.expect("history").0.len(), 2);
}

/// Everything committed is there after the store is dropped and the same
/// database opened again. `open` opens that one database each time.
pub async fn survives_reopen<S: Store>(mut open: impl AsyncFnMut() -> S) {
    let store = open().await;
    let alice = new_party(&store, "alice@kanal.test", PartyKind::User).await;
    let inbox = new_party(&store, "help@kanal.test", PartyKind::Inbox).await;
    add_agent(&store, inbox.id, alice.id).await;
    let session = store
        .create_session(alice.id, [7; 32], "cli")
        .await
        .expect("session");
    store.ack_session(session.id, 2).await.expect("ack");
    let id = conversation_id("kanal.test/durable");
    let mut batch = new_conversation(1, &id, alice.id, &[alice.id, inbox.id], 5);
    batch.extend([
        added(alice.id, 1, 1, 5),
        message(1, 1, alice.id, "d1", 6, "still here"),
        event(alice.id, 2, 1, EventRef::Message { seq: 1 }, 6),
        watermark(1, alice.id, ReceiptKind::Read, 1),
        Write::Ticket(StoredTicket {
            key: 1,
            inbox: inbox.id,
            status: Status::Open,
            owner: Owner::Agent(alice.id),
            priority: Priority::Normal,
            last_dseq: 1,
            updated_at_ms: 6,
            state: "{}".into(),
        }),
        Write::DeskSettings {
            inbox: inbox.id,
            settings: "{}".into(),
        },
        Write::DeskEntry(DeskEntry {
            key: 1,
            dseq: 1,
            inbox: inbox.id,
            at_ms: 6,
            actor: Some(alice.id),
            client_note_id: "note-1".into(),
            payload: vec![7, 0, 7].into(),
        }),
    ]);
    store.commit(batch).await.expect("commit");
    let record = store.load_conversation(&id).await.expect("load");
    let desk = store.desk(inbox.id).await.expect("desk");
    let entries = store.desk_entries(1, 0, 10).await.expect("desk log");
    let events = store
        .events_since(alice.id, 0, 10, usize::MAX)
        .await
        .expect("events");
    drop(store);

    let store = open().await;
    assert_eq!(
        store.party_by_address(&alice.address).await.expect("party"),
        Some(alice.clone())
    );
    assert_eq!(
        store.inbox_agents(inbox.id).await.expect("agents"),
        vec![alice.id]
    );
    let resumed = store.session_by_token_hash([7; 32]).await.expect("session");
    assert_eq!(resumed.map(|s| s.acked_seq), Some(2));
    assert_eq!(store.load_conversation(&id).await.expect("load"), record);
    assert_eq!(store.desk(inbox.id).await.expect("desk"), desk);
    assert_eq!(desk.tickets.len(), 1);
    assert_eq!(
        store.desk_entries(1, 0, 10).await.expect("desk log"),
        entries
    );
    assert_eq!(entries.0.len(), 1);
    assert_eq!(
        store.find_note(1, alice.id, "note-1").await.expect("note"),
        Some((1, 6))
    );
    assert_eq!(
        store
            .events_since(alice.id, 0, 10, usize::MAX)
            .await
            .expect("events"),
        events
    );
    assert_eq!(store.event_head(alice.id).await.expect("head"), 2);
    let (history, _) = store.history(1, 0, 10).await.expect("history");
    assert_eq!(
        history.first().map(|m| m.body.clone()),
        Some(text("still here"))
    );
    assert!(
        store.counters().await.expect("counters").max_key >= 1,
        "numbering starts after what is in use"
    );
}
