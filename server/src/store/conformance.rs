//! The behaviour every [`Store`] backend must show, as checks generic over
//! the backend. A backend runs them all with [`store_conformance_tests!`]
//! (one `#[tokio::test]` per check, each on a fresh, empty store) plus
//! [`survives_reopen`], which needs to open one database twice.
//!
//! [`store_conformance_tests!`]: crate::store_conformance_tests

use bytes::Bytes;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::pb;
use prost::Message as _;

use super::{Store, StoreError};
use crate::model::{
    ConversationKey, ConversationRecord, EventRef, NewParty, Party, PartyId, PartyKind,
    ReceiptKind, StoredSend, Write,
};

/// Expands to one `#[tokio::test]` per conformance check. `$fresh` is an
/// async fn returning `(guard, store)`: a fresh, empty store, and whatever
/// must live as long as it (a temporary directory, a database to drop).
#[macro_export]
macro_rules! store_conformance_tests {
    ($fresh:path) => {
        $crate::store_conformance_tests!(@each $fresh;
            parties,
            inbox_agents_and_directory_version,
            sessions_and_acks,
            commit_and_load,
            history_pages_backwards,
            events_since_rebuilds_each_kind,
            conversations_of_ordering_and_visibility,
            watermarks_never_lower,
            failed_batch_leaves_nothing,
        );
    };
    (@each $fresh:path; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $check() {
                let (_guard, store) = $fresh().await;
                $crate::store::conformance::$check(&store).await;
            }
        )*
    };
}

/// Parties are created, found by address and id, listed by address, and an
/// address is taken only once.
pub async fn parties<S: Store>(store: &S) {
    let before = store.directory_version().await.expect("version");
    let zed = new_party(store, "zed@kanal.test", PartyKind::User).await;
    let alice = store
        .create_party(NewParty {
            address: address("alice@kanal.test"),
            kind: PartyKind::Agent,
            display_name: "Alice".into(),
            password_hash: Some("$argon2id$fake".into()),
        })
        .await
        .expect("create alice");
    assert_ne!(zed.id, alice.id);
    assert_eq!(alice.display_name, "Alice");
    assert_eq!(alice.kind, PartyKind::Agent);

    let found = store
        .party_by_address(&alice.address)
        .await
        .expect("by address");
    assert_eq!(found.as_ref(), Some(&alice));
    assert_eq!(
        store.party_by_id(zed.id).await.expect("by id"),
        Some(zed.clone())
    );
    let nobody = address("nobody@kanal.test");
    assert_eq!(
        store.party_by_address(&nobody).await.expect("unknown"),
        None
    );
    assert_eq!(
        store
            .party_by_id(alice.id + zed.id + 1000)
            .await
            .expect("unknown id"),
        None
    );

    let hash = store.password_hash(alice.id).await.expect("hash");
    assert_eq!(hash.as_deref(), Some("$argon2id$fake"));
    assert_eq!(store.password_hash(zed.id).await.expect("no hash"), None);

    let taken = store
        .create_party(NewParty {
            address: address("ALICE@kanal.test"),
            kind: PartyKind::User,
            display_name: "Another Alice".into(),
            password_hash: None,
        })
        .await;
    assert!(
        matches!(&taken, Err(StoreError::AddressTaken(a)) if *a == alice.address),
        "duplicate address: {taken:?}"
    );

    assert_eq!(store.parties().await.expect("parties"), vec![alice, zed]);
    let after = store.directory_version().await.expect("version");
    assert_ne!(
        before, after,
        "creating parties changes the directory version"
    );
}

/// Agents answer for inboxes in the order they were added; adding is
/// idempotent; every change moves the directory version.
pub async fn inbox_agents_and_directory_version<S: Store>(store: &S) {
    let support = new_party(store, "support@kanal.test", PartyKind::Inbox).await;
    let sales = new_party(store, "sales@kanal.test", PartyKind::Inbox).await;
    let ann = new_party(store, "ann@kanal.test", PartyKind::Agent).await;
    let ben = new_party(store, "ben@kanal.test", PartyKind::Agent).await;
    assert_eq!(store.inbox_agents(support.id).await.expect("none"), vec![]);

    let v0 = store.directory_version().await.expect("version");
    store
        .add_inbox_agent(support.id, ben.id)
        .await
        .expect("add ben");
    let v1 = store.directory_version().await.expect("version");
    assert_ne!(v0, v1, "adding an agent changes the directory version");
    store
        .add_inbox_agent(support.id, ann.id)
        .await
        .expect("add ann");
    let v2 = store.directory_version().await.expect("version");
    assert_ne!(v1, v2);
    store
        .add_inbox_agent(support.id, ben.id)
        .await
        .expect("add ben again");
    store
        .add_inbox_agent(sales.id, ann.id)
        .await
        .expect("ann answers sales too");

    let agents = store.inbox_agents(support.id).await.expect("agents");
    assert_eq!(
        agents,
        vec![ben.id, ann.id],
        "in the order they were added, once each"
    );
    let mut inboxes = store.agent_inboxes(ann.id).await.expect("inboxes");
    inboxes.sort_unstable();
    let mut expected = vec![support.id, sales.id];
    expected.sort_unstable();
    assert_eq!(inboxes, expected);
    assert_eq!(
        store.agent_inboxes(ben.id).await.expect("ben"),
        vec![support.id]
    );
    assert_eq!(
        store.agent_inboxes(support.id).await.expect("not an agent"),
        vec![]
    );
}

/// Sessions are found by token hash, and their ack only ever rises.
pub async fn sessions_and_acks<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let first = store
        .create_session(alice.id, [1; 32], "kanal-cli/0.1")
        .await
        .expect("session");
    let second = store
        .create_session(alice.id, [2; 32], "phone")
        .await
        .expect("session");
    assert_ne!(first.id, second.id);
    assert_eq!((first.party, first.acked_seq), (alice.id, 0));

    let found = store.session_by_token_hash([1; 32]).await.expect("lookup");
    assert_eq!(found, Some(first.clone()));
    assert_eq!(
        store.session_by_token_hash([3; 32]).await.expect("unknown"),
        None
    );

    store.ack_session(first.id, 10).await.expect("ack");
    store.ack_session(first.id, 5).await.expect("lower ack");
    let acked = |token| async move {
        let session = store.session_by_token_hash(token).await.expect("lookup");
        session.expect("session exists").acked_seq
    };
    assert_eq!(acked([1; 32]).await, 10, "an ack never lowers");
    store.ack_session(first.id, 11).await.expect("ack");
    assert_eq!(acked([1; 32]).await, 11);
    assert_eq!(acked([2; 32]).await, 0, "other sessions are untouched");
}

/// A committed batch is visible to the engine's loads.
pub async fn commit_and_load<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let bob = new_party(store, "bob@kanal.test", PartyKind::Bot).await;
    assert_eq!(store.max_conversation_key().await.expect("max key"), 0);
    store.commit(&[]).await.expect("an empty batch commits");

    let id = conversation_id("kanal.test/c1");
    let mut batch = new_conversation(1, &id, alice.id, &[alice.id, bob.id], 1_000);
    batch.extend([
        added(bob.id, 1, 1, 1_000),
        added(alice.id, 1, 1, 1_000),
        message(1, 1, alice.id, "m-1", 1_500, "hello"),
        activity(1, 1, 1_500),
        event(bob.id, 2, 1, EventRef::Message { seq: 1 }, 1_500),
        event(alice.id, 2, 1, EventRef::Message { seq: 1 }, 1_500),
        watermark(1, alice.id, ReceiptKind::Read, 1),
    ]);
    store.commit(&batch).await.expect("commit");

    let record = store.load_conversation(&id).await.expect("load");
    let expected = ConversationRecord {
        key: 1,
        id: id.clone(),
        subject: "subject of 1".into(),
        created_at_ms: 1_000,
        last_seq: 1,
        last_activity_ms: 1_500,
        members: vec![alice.clone(), bob.clone()],
    };
    assert_eq!(record, Some(expected));
    let unknown = conversation_id("kanal.test/nothere");
    assert_eq!(
        store
            .load_conversation(&unknown)
            .await
            .expect("load unknown"),
        None
    );
    assert_eq!(store.max_conversation_key().await.expect("max key"), 1);

    assert_eq!(store.event_head(bob.id).await.expect("head"), 2);
    let carol = new_party(store, "carol@kanal.test", PartyKind::User).await;
    assert_eq!(store.event_head(carol.id).await.expect("empty head"), 0);

    let sent = store.find_send(1, alice.id, "m-1").await.expect("find");
    assert_eq!(
        sent,
        Some(StoredSend {
            seq: 1,
            sent_at_ms: 1_500
        })
    );
    assert_eq!(
        store
            .find_send(1, bob.id, "m-1")
            .await
            .expect("other sender"),
        None
    );
    assert_eq!(
        store.find_send(1, alice.id, "m-2").await.expect("other id"),
        None
    );
    assert_eq!(
        store
            .find_send(2, alice.id, "m-1")
            .await
            .expect("other conv"),
        None
    );

    let view = store.conversation_view(1, alice.id).await.expect("view");
    let view = view.expect("conversation exists");
    assert_eq!(view.id, "kanal.test/c1");
    assert_eq!(view.members, vec![alice.to_pb(), bob.to_pb()]);
    assert_eq!(
        (view.last_seq, view.delivered_up_to, view.read_up_to),
        (1, 0, 1)
    );
    assert_eq!(
        store
            .conversation_view(7, alice.id)
            .await
            .expect("view unknown"),
        None
    );
}

/// History pages backwards from the newest message with exact seqs and a
/// correct `has_more`, across 1,000 messages.
pub async fn history_pages_backwards<S: Store>(store: &S) {
    const TOTAL: u64 = 1_000;
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let bob = new_party(store, "bob@kanal.test", PartyKind::User).await;
    let id = conversation_id("kanal.test/long");
    store
        .commit(&new_conversation(3, &id, alice.id, &[alice.id, bob.id], 0))
        .await
        .expect("create");
    for first in (1..=TOTAL).step_by(250) {
        let mut batch = Vec::new();
        for seq in first..first + 250 {
            let sender = if seq % 2 == 0 { bob.id } else { alice.id };
            let at = 10 * i64::try_from(seq).expect("small");
            batch.push(message(
                3,
                seq,
                sender,
                &format!("c{seq}"),
                at,
                &format!("text {seq}"),
            ));
            batch.push(activity(3, seq, at));
        }
        store.commit(&batch).await.expect("commit messages");
    }

    let mut seen = Vec::new();
    let mut before = 0;
    loop {
        let (page, has_more) = store.history(3, before, 64).await.expect("history page");
        let seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
        let top = if before == 0 { TOTAL + 1 } else { before };
        let expected: Vec<u64> = (top.saturating_sub(64).max(1)..top).collect();
        assert_eq!(seqs, expected, "page before {before}");
        assert_eq!(
            has_more,
            expected.first() != Some(&1),
            "has_more before {before}"
        );
        seen.splice(0..0, seqs);
        match page.first() {
            Some(oldest) if has_more => before = oldest.seq,
            _ => break,
        }
    }
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());

    let (all, more) = store.history(3, 0, 1_000).await.expect("all");
    assert_eq!((all.len(), more), (1_000, false));
    let (newest, more) = store.history(3, 0, 999).await.expect("all but one");
    assert_eq!((newest.first().map(|m| m.seq), more), (Some(2), true));
    let (middle, more) = store.history(3, 501, 10).await.expect("middle");
    let seqs: Vec<u64> = middle.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, more), ((491..=500).collect(), true));
    let (none, more) = store.history(3, 1, 10).await.expect("before the first");
    assert_eq!((none.len(), more), (0, false));
    let (none, more) = store.history(4, 0, 10).await.expect("unknown conversation");
    assert_eq!((none.len(), more), (0, false));

    let m = middle.last().expect("a message");
    let expected = pb::Message {
        conversation: "kanal.test/long".into(),
        seq: 500,
        sender: bob.address.to_string(),
        client_msg_id: "c500".into(),
        sent_at_ms: 5_000,
        body: Some(text("text 500")),
    };
    assert_eq!(m, &expected);
}

/// `events_since` rebuilds messages, conversations added (as the party sees
/// them now) and receipts, in seq order, after `since`, up to `limit`.
pub async fn events_since_rebuilds_each_kind<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let bob = new_party(store, "bob@kanal.test", PartyKind::User).await;
    let id = conversation_id("kanal.test/ev");
    let mut batch = new_conversation(5, &id, alice.id, &[alice.id, bob.id], 100);
    batch.extend([
        added(bob.id, 1, 5, 100),
        message(5, 1, alice.id, "a1", 200, "hi bob"),
        activity(5, 1, 200),
        event(bob.id, 2, 5, EventRef::Message { seq: 1 }, 200),
        watermark(5, alice.id, ReceiptKind::Read, 1),
        receipt(bob.id, 3, 5, alice.id, ReceiptKind::Read, 1, 300),
        watermark(5, bob.id, ReceiptKind::Delivered, 1),
        receipt(bob.id, 4, 5, bob.id, ReceiptKind::Delivered, 1, 300),
    ]);
    store.commit(&batch).await.expect("commit");
    // Later activity shows in the conversation-added event: it is rendered
    // as the party sees the conversation now.
    let later = [
        message(5, 2, bob.id, "b1", 400, "hi alice"),
        activity(5, 2, 400),
        event(bob.id, 5, 5, EventRef::Message { seq: 2 }, 400),
    ];
    store.commit(&later).await.expect("commit later");

    let events = store.events_since(bob.id, 0, 100).await.expect("events");
    let conversation = pb::Conversation {
        id: id.to_string(),
        subject: "subject of 5".into(),
        members: vec![alice.to_pb(), bob.to_pb()],
        last_seq: 2,
        created_at_ms: 100,
        delivered_up_to: 1,
        read_up_to: 0,
        last_activity_ms: 400,
    };
    let wire_message = |seq, sender: &Party, cmid: &str, at, body: &str| pb::Message {
        conversation: id.to_string(),
        seq,
        sender: sender.address.to_string(),
        client_msg_id: cmid.into(),
        sent_at_ms: at,
        body: Some(text(body)),
    };
    let wire_receipt = |party: &Party, kind: ReceiptKind| pb::Receipt {
        conversation: id.to_string(),
        party: party.address.to_string(),
        kind: kind.to_pb() as i32,
        up_to_seq: 1,
    };
    use pb::event::Kind;
    let expected = vec![
        (1, Kind::ConversationAdded(conversation)),
        (
            2,
            Kind::Message(wire_message(1, &alice, "a1", 200, "hi bob")),
        ),
        (3, Kind::Receipt(wire_receipt(&alice, ReceiptKind::Read))),
        (4, Kind::Receipt(wire_receipt(&bob, ReceiptKind::Delivered))),
        (
            5,
            Kind::Message(wire_message(2, &bob, "b1", 400, "hi alice")),
        ),
    ];
    let expected: Vec<pb::Event> = expected
        .into_iter()
        .map(|(seq, kind)| pb::Event {
            seq,
            kind: Some(kind),
        })
        .collect();
    assert_eq!(events, expected);

    let seqs = |events: Vec<pb::Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let after = store.events_since(bob.id, 2, 100).await.expect("since 2");
    assert_eq!(seqs(after), vec![3, 4, 5]);
    let first = store.events_since(bob.id, 0, 2).await.expect("limit 2");
    assert_eq!(seqs(first), vec![1, 2]);
    assert!(
        store
            .events_since(bob.id, 5, 10)
            .await
            .expect("caught up")
            .is_empty()
    );
    assert!(
        store
            .events_since(alice.id, 0, 10)
            .await
            .expect("alice")
            .is_empty()
    );
}

/// Parties see their conversations and their inboxes' conversations, most
/// recently active first, with their own watermarks; nobody sees others'.
pub async fn conversations_of_ordering_and_visibility<S: Store>(store: &S) {
    let customer = new_party(store, "customer@kanal.test", PartyKind::User).await;
    let support = new_party(store, "support@kanal.test", PartyKind::Inbox).await;
    let agent = new_party(store, "agent@kanal.test", PartyKind::Agent).await;
    let other = new_party(store, "other@kanal.test", PartyKind::User).await;
    let outsider = new_party(store, "outsider@kanal.test", PartyKind::User).await;
    store
        .add_inbox_agent(support.id, agent.id)
        .await
        .expect("agent");

    // (key, members, last activity): 4 and 1 tie on activity, so the higher
    // key comes first; the agent is in 3 both directly and via the inbox.
    let layout: [(ConversationKey, Vec<PartyId>, i64); 4] = [
        (1, vec![customer.id, support.id], 3_000),
        (2, vec![customer.id, other.id], 1_000),
        (3, vec![other.id, support.id, agent.id], 2_000),
        (4, vec![customer.id, other.id], 3_000),
    ];
    let mut batch = Vec::new();
    for (key, members, at) in &layout {
        let id = conversation_id(&format!("kanal.test/k{key}"));
        batch.extend(new_conversation(*key, &id, members[0], members, 0));
        batch.push(message(*key, 1, members[0], "first", *at, "hello"));
        batch.push(activity(*key, 1, *at));
    }
    batch.push(watermark(1, customer.id, ReceiptKind::Read, 1));
    batch.push(watermark(1, customer.id, ReceiptKind::Delivered, 1));
    store.commit(&batch).await.expect("commit");

    let ids = |list: &[pb::Conversation]| list.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let page = |party: PartyId, limit, offset| async move {
        let (list, more) = store
            .conversations_of(party, limit, offset)
            .await
            .expect("conversations_of");
        (ids(&list), more, list)
    };
    let k = |keys: &[i64]| {
        keys.iter()
            .map(|k| format!("kanal.test/k{k}"))
            .collect::<Vec<_>>()
    };

    let (all, more, list) = page(customer.id, 10, 0).await;
    assert_eq!((all, more), (k(&[4, 1, 2]), false));
    let first = list
        .iter()
        .find(|c| c.id == "kanal.test/k1")
        .expect("k1 listed");
    assert_eq!(first.members, vec![customer.to_pb(), support.to_pb()]);
    assert_eq!((first.last_seq, first.last_activity_ms), (1, 3_000));
    assert_eq!(
        (first.delivered_up_to, first.read_up_to),
        (1, 1),
        "the viewer's watermarks"
    );

    assert_eq!(page(customer.id, 2, 0).await.0, k(&[4, 1]));
    assert!(
        page(customer.id, 2, 0).await.1,
        "a third conversation exists"
    );
    assert_eq!(page(customer.id, 2, 1).await.0, k(&[1, 2]));
    assert!(!page(customer.id, 2, 1).await.1);
    assert_eq!(page(customer.id, 2, 2).await.0, k(&[2]));
    assert!(!page(customer.id, 2, 2).await.1);

    let (seen, more, list) = page(agent.id, 10, 0).await;
    assert_eq!(
        (seen, more),
        (k(&[1, 3]), false),
        "the agent sees its inbox's, once each"
    );
    assert_eq!(
        (list[0].delivered_up_to, list[0].read_up_to),
        (0, 0),
        "not the customer's"
    );
    assert_eq!(page(support.id, 10, 0).await.0, k(&[1, 3]));
    assert_eq!(page(other.id, 10, 0).await.0, k(&[4, 3, 2]));
    let (nothing, more, _) = page(outsider.id, 10, 0).await;
    assert_eq!((nothing.len(), more), (0, false));

    let sees = |key, party| async move { store.can_see(key, party).await.expect("can_see") };
    assert!(sees(1, customer.id).await);
    assert!(sees(1, support.id).await);
    assert!(sees(1, agent.id).await, "an agent of a member inbox");
    assert!(sees(3, agent.id).await);
    assert!(!sees(2, agent.id).await);
    assert!(!sees(3, customer.id).await);
    assert!(!sees(1, outsider.id).await);
    assert!(!sees(99, customer.id).await);
}

/// A watermark only ever rises, across batches and within one.
pub async fn watermarks_never_lower<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let id = conversation_id("kanal.test/wm");
    store
        .commit(&new_conversation(1, &id, alice.id, &[alice.id], 0))
        .await
        .expect("create");
    let marks = |key| async move {
        let view = store.conversation_view(key, alice.id).await.expect("view");
        let view = view.expect("conversation exists");
        (view.delivered_up_to, view.read_up_to)
    };
    let read = |up_to| watermark(1, alice.id, ReceiptKind::Read, up_to);
    let delivered = |up_to| watermark(1, alice.id, ReceiptKind::Delivered, up_to);

    store.commit(&[read(5)]).await.expect("read 5");
    assert_eq!(marks(1).await, (0, 5));
    store.commit(&[read(3)]).await.expect("read 3");
    assert_eq!(marks(1).await, (0, 5), "never lowered");
    store
        .commit(&[read(7), read(6), delivered(9)])
        .await
        .expect("in one batch");
    assert_eq!(marks(1).await, (9, 7));
}

/// A batch that fails leaves nothing behind, and the store goes on working.
pub async fn failed_batch_leaves_nothing<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let one = conversation_id("kanal.test/one");
    let mut batch = new_conversation(1, &one, alice.id, &[alice.id], 10);
    batch.push(message(1, 1, alice.id, "x1", 20, "kept"));
    batch.push(activity(1, 1, 20));
    store.commit(&batch).await.expect("commit");

    // Everything valid but the last write: message 1 exists already.
    let two = conversation_id("kanal.test/two");
    let mut doomed = new_conversation(2, &two, alice.id, &[alice.id], 30);
    doomed.extend([
        added(alice.id, 1, 2, 30),
        message(2, 1, alice.id, "y1", 30, "lost"),
        activity(2, 1, 30),
        message(1, 2, alice.id, "x2", 30, "lost"),
        activity(1, 2, 30),
        watermark(1, alice.id, ReceiptKind::Read, 2),
        message(1, 1, alice.id, "x1-again", 30, "duplicate seq"),
    ]);
    assert!(
        store.commit(&doomed).await.is_err(),
        "a duplicate message seq fails"
    );

    // And a batch whose duplicates are within itself.
    let dup = [
        message(1, 2, alice.id, "x2", 40, "a"),
        message(1, 2, alice.id, "x3", 40, "b"),
    ];
    assert!(
        store.commit(&dup).await.is_err(),
        "a seq twice in one batch fails"
    );

    assert_eq!(store.load_conversation(&two).await.expect("load"), None);
    assert_eq!(store.max_conversation_key().await.expect("max key"), 1);
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
        .commit(&[
            message(1, 2, alice.id, "x2", 50, "next"),
            activity(1, 2, 50),
        ])
        .await
        .expect("a good batch after failed ones");
    assert_eq!(store.history(1, 0, 10).await.expect("history").0.len(), 2);
}

/// Everything committed is there after the store is dropped and the same
/// database opened again. `open` opens that one database each time.
pub async fn survives_reopen<S: Store>(mut open: impl AsyncFnMut() -> S) {
    let store = open().await;
    let alice = new_party(&store, "alice@kanal.test", PartyKind::User).await;
    let inbox = new_party(&store, "help@kanal.test", PartyKind::Inbox).await;
    store
        .add_inbox_agent(inbox.id, alice.id)
        .await
        .expect("agent");
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
        activity(1, 1, 6),
        event(alice.id, 2, 1, EventRef::Message { seq: 1 }, 6),
        watermark(1, alice.id, ReceiptKind::Read, 1),
    ]);
    store.commit(&batch).await.expect("commit");
    let version = store.directory_version().await.expect("version");
    let record = store.load_conversation(&id).await.expect("load");
    let events = store.events_since(alice.id, 0, 10).await.expect("events");
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
    assert_eq!(store.directory_version().await.expect("version"), version);
    let resumed = store.session_by_token_hash([7; 32]).await.expect("session");
    assert_eq!(resumed.map(|s| s.acked_seq), Some(2));
    assert_eq!(store.load_conversation(&id).await.expect("load"), record);
    assert_eq!(
        store.events_since(alice.id, 0, 10).await.expect("events"),
        events
    );
    assert_eq!(store.event_head(alice.id).await.expect("head"), 2);
    let (history, _) = store.history(1, 0, 10).await.expect("history");
    assert_eq!(
        history.first().and_then(|m| m.body.clone()),
        Some(text("still here"))
    );
    assert_eq!(store.max_conversation_key().await.expect("max key"), 1);
}

// --- builders ------------------------------------------------------------------

/// Parses a test address.
fn address(text: &str) -> Address {
    text.parse().expect("test address")
}

/// Parses a test conversation id.
fn conversation_id(text: &str) -> ConversationId {
    text.parse().expect("test conversation id")
}

/// A text body.
fn text(text: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(text.into())),
    }
}

/// Creates a party named after its address.
async fn new_party<S: Store>(store: &S, addr: &str, kind: PartyKind) -> Party {
    let address = address(addr);
    store
        .create_party(NewParty {
            display_name: address.local().to_uppercase(),
            address,
            kind,
            password_hash: None,
        })
        .await
        .expect("create party")
}

/// A new conversation with subject "subject of KEY".
fn new_conversation(
    key: ConversationKey,
    id: &ConversationId,
    created_by: PartyId,
    members: &[PartyId],
    at: i64,
) -> Vec<Write> {
    vec![Write::NewConversation {
        key,
        id: id.clone(),
        subject: format!("subject of {key}"),
        created_by,
        created_at_ms: at,
        members: members.to_vec(),
    }]
}

/// A text message.
fn message(
    key: ConversationKey,
    seq: u64,
    sender: PartyId,
    cmid: &str,
    at: i64,
    body: &str,
) -> Write {
    Write::Message {
        key,
        seq,
        sender,
        client_msg_id: cmid.into(),
        sent_at_ms: at,
        body: Bytes::from(text(body).encode_to_vec()),
    }
}

/// A conversation's activity.
fn activity(key: ConversationKey, last_seq: u64, at: i64) -> Write {
    Write::Activity {
        key,
        last_seq,
        last_activity_ms: at,
    }
}

/// An event of `party`'s log.
fn event(party: PartyId, seq: u64, key: ConversationKey, what: EventRef, at: i64) -> Write {
    Write::Event {
        party,
        seq,
        key,
        what,
        at_ms: at,
    }
}

/// A conversation-added event.
fn added(party: PartyId, seq: u64, key: ConversationKey, at: i64) -> Write {
    event(party, seq, key, EventRef::ConversationAdded, at)
}

/// A receipt event: `whose` watermark of `kind` moved to `up_to`.
fn receipt(
    party: PartyId,
    seq: u64,
    key: ConversationKey,
    whose: PartyId,
    kind: ReceiptKind,
    up_to: u64,
    at: i64,
) -> Write {
    event(
        party,
        seq,
        key,
        EventRef::Receipt {
            party: whose,
            kind,
            up_to,
        },
        at,
    )
}

/// A watermark.
fn watermark(key: ConversationKey, party: PartyId, kind: ReceiptKind, up_to: u64) -> Write {
    Write::Watermark {
        key,
        party,
        kind,
        up_to,
    }
}
