//! Checks of committed batches and the reads built on them.

use super::{
    add_agent, added, conversation_id, event, message, new_conversation, new_party, text, watermark,
};
use crate::model::{
    ConversationKey, ConversationRecord, ConversationView, Event, EventRef, Message, Party,
    PartyId, PartyKind, Receipt, ReceiptKind, StoredSend,
};
use crate::store::Store;

/// A committed batch is visible to the engine's loads.
pub async fn commit_and_load<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let bob = new_party(store, "bob@kanal.test", PartyKind::Bot).await;
    store.commit(vec![]).await.expect("an empty batch commits");

    let id = conversation_id("kanal.test/c1");
    let mut batch = new_conversation(1, &id, alice.id, &[alice.id, bob.id], 1_000);
    batch.extend([
        added(bob.id, 1, 1, 1_000),
        added(alice.id, 1, 1, 1_000),
        message(1, 1, alice.id, "m-1", 1_500, "hello"),
        event(bob.id, 2, 1, EventRef::Message { seq: 1 }, 1_500),
        event(alice.id, 2, 1, EventRef::Message { seq: 1 }, 1_500),
        watermark(1, alice.id, ReceiptKind::Read, 1),
    ]);
    store.commit(batch).await.expect("commit");

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
    // A conversation's last seq and activity come from its newest message;
    // before the first one they are 0 and its creation time.
    let quiet = conversation_id("kanal.test/quiet");
    store
        .commit(new_conversation(
            2,
            &quiet,
            alice.id,
            &[alice.id, bob.id],
            1_200,
        ))
        .await
        .expect("commit an empty conversation");
    let activity = async || {
        let record = store
            .load_conversation(&quiet)
            .await
            .expect("load")
            .expect("stored");
        (record.last_seq, record.last_activity_ms)
    };
    assert_eq!(activity().await, (0, 1_200));
    store
        .commit(vec![
            message(2, 1, bob.id, "q-1", 1_300, "one"),
            message(2, 2, bob.id, "q-2", 1_400, "two"),
        ])
        .await
        .expect("commit two messages");
    assert_eq!(activity().await, (2, 1_400));

    let unknown = conversation_id("kanal.test/nothere");
    assert_eq!(
        store
            .load_conversation(&unknown)
            .await
            .expect("load unknown"),
        None
    );
    assert!(
        store.counters().await.expect("counters").max_key >= 2,
        "numbering starts after what is in use"
    );

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
    assert_eq!(view.id.as_str(), "kanal.test/c1");
    assert_eq!(view.members, vec![alice.clone(), bob.clone()]);
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
        .commit(new_conversation(3, &id, alice.id, &[alice.id, bob.id], 0))
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
        }
        store.commit(batch).await.expect("commit messages");
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
    let expected = Message {
        conversation: conversation_id("kanal.test/long"),
        seq: 500,
        sender: bob.address.clone(),
        client_msg_id: "c500".into(),
        sent_at_ms: 5_000,
        body: text("text 500"),
    };
    assert_eq!(m, &expected);
}

/// `events_since` rebuilds messages, conversations added (as they stood when
/// the party was added) and receipts, in seq order, after `since`, up to
/// `limit`.
pub async fn events_since_rebuilds_each_kind<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let bob = new_party(store, "bob@kanal.test", PartyKind::User).await;
    let id = conversation_id("kanal.test/ev");
    let mut batch = new_conversation(5, &id, alice.id, &[alice.id, bob.id], 100);
    batch.extend([
        added(bob.id, 1, 5, 100),
        message(5, 1, alice.id, "a1", 200, "hi bob"),
        event(bob.id, 2, 5, EventRef::Message { seq: 1 }, 200),
        watermark(5, alice.id, ReceiptKind::Read, 1),
        super::receipt(bob.id, 3, 5, alice.id, ReceiptKind::Read, 1, 300),
        watermark(5, bob.id, ReceiptKind::Delivered, 1),
        super::receipt(bob.id, 4, 5, bob.id, ReceiptKind::Delivered, 1, 300),
    ]);
    store.commit(batch).await.expect("commit");
    // Later activity does not change the conversation-added event: it shows
    // the conversation as it stood then, as the live event did.
    let later = vec![
        message(5, 2, bob.id, "b1", 400, "hi alice"),
        event(bob.id, 5, 5, EventRef::Message { seq: 2 }, 400),
    ];
    store.commit(later).await.expect("commit later");

    let events = store
        .events_since(bob.id, 0, 100, usize::MAX)
        .await
        .expect("events");
    let record = store
        .load_conversation(&id)
        .await
        .expect("load")
        .expect("exists");
    let conversation = ConversationView {
        id: id.clone(),
        subject: "subject of 5".into(),
        members: vec![alice.clone(), bob.clone()],
        last_seq: 0,
        created_at_ms: 100,
        delivered_up_to: 0,
        read_up_to: 0,
        last_activity_ms: 100,
    };
    assert_eq!(
        Event::conversation_added(&record, 0, 100),
        Event::ConversationAdded(conversation.clone()),
        "the constructor the engine uses live"
    );
    let message = |seq, sender: &Party, cmid: &str, at, body: &str| {
        Event::Message(Message {
            conversation: id.clone(),
            seq,
            sender: sender.address.clone(),
            client_msg_id: cmid.into(),
            sent_at_ms: at,
            body: text(body),
        })
    };
    let receipt = |party: &Party, kind: ReceiptKind| {
        Event::Receipt(Receipt {
            conversation: id.clone(),
            party: party.address.clone(),
            kind,
            up_to: 1,
        })
    };
    let expected = vec![
        (1, Event::ConversationAdded(conversation)),
        (2, message(1, &alice, "a1", 200, "hi bob")),
        (3, receipt(&alice, ReceiptKind::Read)),
        (4, receipt(&bob, ReceiptKind::Delivered)),
        (5, message(2, &bob, "b1", 400, "hi alice")),
    ];
    assert_eq!(events, expected);

    let seqs = |events: Vec<(u64, Event)>| events.iter().map(|e| e.0).collect::<Vec<_>>();
    let after = store
        .events_since(bob.id, 2, 100, usize::MAX)
        .await
        .expect("since 2");
    assert_eq!(seqs(after), vec![3, 4, 5]);
    let first = store
        .events_since(bob.id, 0, 2, usize::MAX)
        .await
        .expect("limit 2");
    assert_eq!(seqs(first), vec![1, 2]);
    // A byte budget for message bodies: the first event always comes, then
    // events while their bodies fit (receipts and additions weigh nothing).
    let one_body = crate::store::body::encode(&text("hi bob")).len();
    let tight = store.events_since(bob.id, 0, 100, 1).await.expect("1 byte");
    assert_eq!(
        seqs(tight),
        vec![1],
        "the message does not fit after the addition"
    );
    let alone = store.events_since(bob.id, 1, 100, 1).await.expect("1 byte");
    assert_eq!(seqs(alone), vec![2], "a page always holds its first event");
    let fits = store
        .events_since(bob.id, 0, 100, one_body)
        .await
        .expect("one body");
    assert_eq!(
        seqs(fits),
        vec![1, 2, 3, 4],
        "the second message does not fit"
    );
    assert!(
        store
            .events_since(bob.id, 5, 10, usize::MAX)
            .await
            .expect("caught up")
            .is_empty()
    );
    assert!(
        store
            .events_since(alice.id, 0, 10, usize::MAX)
            .await
            .expect("alice")
            .is_empty()
    );
}

/// Parties see their conversations and their inboxes' conversations, most
/// recently active first, with their own watermarks; nobody sees others',
/// and an inbox sees nothing itself (its agents do).
pub async fn conversations_of_ordering_and_visibility<S: Store>(store: &S) {
    let customer = new_party(store, "customer@kanal.test", PartyKind::User).await;
    let support = new_party(store, "support@kanal.test", PartyKind::Inbox).await;
    let agent = new_party(store, "agent@kanal.test", PartyKind::Agent).await;
    let other = new_party(store, "other@kanal.test", PartyKind::User).await;
    let outsider = new_party(store, "outsider@kanal.test", PartyKind::User).await;
    add_agent(store, support.id, agent.id).await;

    // (key, members, last activity): 4 and 1 tie on so the higher
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
    }
    batch.push(watermark(1, customer.id, ReceiptKind::Read, 1));
    batch.push(watermark(1, customer.id, ReceiptKind::Delivered, 1));
    store.commit(batch).await.expect("commit");

    let ids = |list: &[ConversationView]| list.iter().map(|c| c.id.to_string()).collect::<Vec<_>>();
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
        .find(|c| c.id.as_str() == "kanal.test/k1")
        .expect("k1 listed");
    assert_eq!(first.members, vec![customer.clone(), support.clone()]);
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
    assert!(
        page(support.id, 10, 0).await.0.is_empty(),
        "an inbox has no view"
    );
    assert_eq!(page(other.id, 10, 0).await.0, k(&[4, 3, 2]));
    let (nothing, more, _) = page(outsider.id, 10, 0).await;
    assert_eq!((nothing.len(), more), (0, false));

    let sees = |key, party| async move { store.can_see(key, party).await.expect("can_see") };
    assert!(sees(1, customer.id).await);
    assert!(
        !sees(1, support.id).await,
        "an inbox sees through its agents"
    );
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
        .commit(new_conversation(1, &id, alice.id, &[alice.id], 0))
        .await
        .expect("create");
    let marks = |key| async move {
        let view = store.conversation_view(key, alice.id).await.expect("view");
        let view = view.expect("conversation exists");
        (view.delivered_up_to, view.read_up_to)
    };
    let read = |up_to| watermark(1, alice.id, ReceiptKind::Read, up_to);
    let delivered = |up_to| watermark(1, alice.id, ReceiptKind::Delivered, up_to);

    store.commit(vec![read(5)]).await.expect("read 5");
    assert_eq!(marks(1).await, (0, 5));
    store.commit(vec![read(3)]).await.expect("read 3");
    assert_eq!(marks(1).await, (0, 5), "never lowered");
    store
        .commit(vec![read(7), read(6), delivered(9)])
        .await
        .expect("in one batch");
    assert_eq!(marks(1).await, (9, 7));
}
