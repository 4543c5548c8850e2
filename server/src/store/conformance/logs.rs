//! Logs through inbox logs: a party's log made of rows of its own and spans
//! over an inbox's log reads back gapless, page by page, with the same
//! events as if every one had been a row of its own.

use super::{
    add_agent, address, conversation_id, event, message, new_conversation, new_party, text,
};
use crate::model::{Event, EventRef, LogHead, Message, PartyId, PartyKind, Write};
use crate::store::Store;

/// An event of `inbox`'s log.
fn inbox_event(inbox: PartyId, iseq: u64, key: i64, what: EventRef, at: i64) -> Write {
    Write::InboxEvent {
        inbox,
        iseq,
        key,
        what,
        at_ms: at,
    }
}

/// `party`'s seq `seq` is `inbox`'s event `iseq`, and so on.
fn span(party: PartyId, seq: u64, inbox: PartyId, iseq: u64) -> Write {
    Write::Span {
        party,
        seq,
        inbox,
        iseq,
    }
}

/// Spans over an inbox log read back as rows of their own would; heads
/// and open spans follow the inbox log as it grows.
pub async fn logs_follow_inbox_logs<S: Store>(store: &S) {
    let alice = new_party(store, "alice@kanal.test", PartyKind::User).await;
    let support = new_party(store, "support@kanal.test", PartyKind::Inbox).await;
    let ann = new_party(store, "ann@kanal.test", PartyKind::Agent).await;
    let ben = new_party(store, "ben@kanal.test", PartyKind::Agent).await;
    add_agent(store, support.id, ann.id).await;
    add_agent(store, support.id, ben.id).await;
    assert_eq!(store.inbox_head(support.id).await.expect("head").head, 0);
    assert_eq!(
        store.log_head(ann.id).await.expect("head"),
        LogHead::default()
    );

    // Conversation 1 with the inbox: messages 1..=5 go through its log.
    // Conversation 2 between the agents: ann's own rows.
    let washer = conversation_id("kanal.test/washer");
    let direct = conversation_id("kanal.test/direct");
    let mut batch = new_conversation(1, &washer, alice.id, &[alice.id, support.id], 10);
    batch.extend(new_conversation(2, &direct, ann.id, &[ann.id, ben.id], 10));
    for seq in 1..=5 {
        let at = 100 * seq as i64;
        batch.push(message(1, seq, alice.id, &format!("w{seq}"), at, "washer"));
        batch.push(inbox_event(
            support.id,
            seq,
            1,
            EventRef::Message { seq },
            at,
        ));
    }
    batch.push(message(2, 1, ben.id, "d1", 250, "direct"));
    // ann: seq 1-2 = inbox 1-2, seq 3 her own (the direct message), seq 4-6
    // = inbox 3-5 (an open span).
    batch.extend([
        span(ann.id, 1, support.id, 1),
        event(ann.id, 3, 2, EventRef::Message { seq: 1 }, 250),
        span(ann.id, 4, support.id, 3),
    ]);
    // ben joined at inbox event 4: seq 1-2 = inbox 4-5.
    batch.push(span(ben.id, 1, support.id, 4));
    store.commit(batch).await.expect("commit");

    let washer_message = |seq: u64| {
        Event::Message(Message {
            conversation: washer.clone(),
            seq,
            sender: alice.address.clone(),
            client_msg_id: format!("w{seq}"),
            sent_at_ms: 100 * seq as i64,
            body: text("washer"),
        })
    };
    let direct_message = Event::Message(Message {
        conversation: direct.clone(),
        seq: 1,
        sender: address("ben@kanal.test"),
        client_msg_id: "d1".into(),
        sent_at_ms: 250,
        body: text("direct"),
    });
    let ann_log = vec![
        (1, washer_message(1)),
        (2, washer_message(2)),
        (3, direct_message),
        (4, washer_message(3)),
        (5, washer_message(4)),
        (6, washer_message(5)),
    ];
    let ben_log = vec![(1, washer_message(4)), (2, washer_message(5))];
    for (party, log) in [(ann.id, &ann_log), (ben.id, &ben_log)] {
        for since in 0..=log.len() as u64 + 1 {
            for limit in 1..=log.len() as u32 + 1 {
                let page = store
                    .events_since(party, since, limit, usize::MAX)
                    .await
                    .expect("page");
                let expected: Vec<_> = log
                    .iter()
                    .filter(|(seq, _)| *seq > since)
                    .take(limit as usize)
                    .cloned()
                    .collect();
                assert_eq!(page, expected, "party {party} since {since} limit {limit}");
            }
        }
    }
    assert_eq!(store.inbox_head(support.id).await.expect("head").head, 5);
    let follows = Some((support.id, 6));
    assert_eq!(
        store.log_head(ann.id).await.expect("head"),
        LogHead {
            head: 6,
            follows,
            last_row: 4
        }
    );
    assert_eq!(
        store.log_head(ben.id).await.expect("head"),
        LogHead {
            head: 2,
            follows,
            last_row: 1
        }
    );
    assert_eq!(store.event_head(ann.id).await.expect("head"), 6);

    // The inbox's log grows: an open span grows with it. A row of ann's own
    // then ends her span; the inbox's next event is not hers (she receives
    // it through another span, at her next seq, in this test a row).
    let batch = vec![
        message(1, 6, alice.id, "w6", 600, "washer"),
        inbox_event(support.id, 6, 1, EventRef::Message { seq: 6 }, 600),
        message(2, 2, ben.id, "d2", 700, "direct"),
        event(ann.id, 8, 2, EventRef::Message { seq: 2 }, 700),
        message(1, 7, alice.id, "w7", 800, "washer"),
        inbox_event(support.id, 7, 1, EventRef::Message { seq: 7 }, 800),
    ];
    store.commit(batch).await.expect("commit");
    let ann_head = store.log_head(ann.id).await.expect("head");
    assert_eq!(
        ann_head,
        LogHead {
            head: 8,
            follows: None,
            last_row: 8
        }
    );
    let ann_tail = store
        .events_since(ann.id, 6, 10, usize::MAX)
        .await
        .expect("tail");
    let seqs: Vec<u64> = ann_tail.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, vec![7, 8], "the span ends where her own row starts");
    assert_eq!(ann_tail[0].1, washer_message(6));
    let ben_head = store.log_head(ben.id).await.expect("head");
    assert_eq!(ben_head.head, 4, "ben's open span took in events 6 and 7");

    // A page's bodies are bounded across rows of both kinds.
    let page = store
        .events_since(ann.id, 0, 10, 1)
        .await
        .expect("bounded page");
    assert_eq!(
        page.len(),
        1,
        "the first event always comes, then the budget ends the page"
    );
}
