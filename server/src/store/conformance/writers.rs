//! Several nodes ordering on one database: each has an engine of its own
//! with its own cache, and they write the same logs at the same time.

use std::collections::BTreeSet;
use std::sync::Arc;

use kanal_proto::address::ConversationId;

use super::{address, text};
use crate::core::engine::{Command, Reply};
use crate::model::{Event, NewParty, Party, PartyKind, ReceiptKind};
use crate::node::sequencer::Sequencer;
use crate::store::Store;

const DOMAIN: &str = "kanal.test";

/// Batches each node orders in the race.
const ROUNDS: usize = 40;

/// Two sequencers on one database, each ordering batches that append to
/// logs the other appends to (a customer in conversations with two
/// inboxes, an agent of both inboxes who also has a direct conversation):
/// every command is applied exactly once, and every log stays gapless
/// with each event once, whatever order their commits land in.
pub async fn several_writers_keep_every_log_gapless(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let mut one = Sequencer::new(first, DOMAIN.into())
        .await
        .expect("node one");
    let mut two = Sequencer::new(second.clone(), DOMAIN.into())
        .await
        .expect("node two");

    // The directory, made through node one; node two learns it from the store.
    let alice = add(&mut one, "alice", PartyKind::User).await;
    let support = add(&mut one, "support", PartyKind::Inbox).await;
    let sales = add(&mut two, "sales", PartyKind::Inbox).await;
    let ann = add(&mut two, "ann", PartyKind::Agent).await;
    let ben = add(&mut one, "ben", PartyKind::Agent).await;
    for (on_one, inbox, agent) in [
        (true, &support, &ann),
        (false, &sales, &ann),
        (true, &support, &ben),
    ] {
        let node = if on_one { &mut one } else { &mut two };
        let command = Command::AddInboxAgent {
            inbox: inbox.clone(),
            agent: agent.clone(),
        };
        assert_eq!(order_one(node, command).await, Reply::Done);
    }
    let washer = create(&mut one, &alice, &support, "washer").await;
    let quote = create(&mut two, &alice, &sales, "quote").await;
    let direct = create(&mut one, &ann, &ben, "direct").await;

    // The race: node one carries the support conversation and ann's direct
    // messages, node two the sales conversation and ben's. Every batch
    // writes alice's or ann's log, which the other node writes too.
    let race = |mut node: Sequencer, batches: Vec<Vec<Command>>| {
        tokio::spawn(async move {
            for batch in batches {
                order_all(&mut node, batch).await;
                // On one thread (the in-memory store), let the other node
                // order a batch before the next: each works from a cache
                // the other has just made stale.
                tokio::task::yield_now().await;
            }
        })
    };
    let send = |by: &Party, conversation: &ConversationId, id: String| Command::Send {
        by: by.clone(),
        conversation: conversation.clone(),
        client_msg_id: id,
        body: text("hello"),
    };
    // Most of node one's batches only append to the support inbox's log,
    // which ann's log follows without rows of its own: her log grows
    // where node two cannot see it.
    let batches_one = (0..ROUNDS)
        .map(|round| {
            let mut batch = vec![
                send(&alice, &washer, format!("w{round}")),
                send(&ann, &washer, format!("wa{round}")),
            ];
            if round % 3 == 0 {
                batch.push(send(&ann, &direct, format!("d{round}")));
            }
            batch
        })
        .collect();
    // Most of node two's batches only write ann's and ben's logs, which
    // follow the support inbox's log: node one's appends to it grow them
    // where node two cannot see, and node two's rows end their spans where
    // node one cannot see.
    let batches_two = (0..ROUNDS)
        .map(|round| {
            let mut batch = vec![send(&ben, &direct, format!("db{round}"))];
            if round % 4 == 0 {
                batch.push(send(&alice, &quote, format!("q{round}")));
                batch.push(Command::MarkReceipt {
                    by: ann.clone(),
                    conversation: quote.clone(),
                    kind: ReceiptKind::Read,
                    up_to: (round / 4) as u64 + 1,
                });
            }
            batch
        })
        .collect();
    let (ended_one, ended_two) = tokio::join!(race(one, batches_one), race(two, batches_two));
    ended_one.expect("node one");
    ended_two.expect("node two");

    // Each conversation holds each send once, gapless.
    let store = second.as_ref();
    let direct_sends = ROUNDS + ROUNDS.div_ceil(3);
    for (conversation, expected) in [
        (&washer, 2 * ROUNDS),
        (&quote, ROUNDS.div_ceil(4)),
        (&direct, direct_sends),
    ] {
        let key = store
            .conversation_key(conversation)
            .await
            .expect("key")
            .expect("stored");
        let (messages, _) = store.history(key, 0, 1000).await.expect("history");
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=expected as u64).collect::<Vec<_>>(),
            "{conversation}"
        );
        let ids: BTreeSet<&str> = messages.iter().map(|m| m.client_msg_id.as_str()).collect();
        assert_eq!(ids.len(), expected, "{conversation}: each send once");
    }

    // Each log is gapless and holds each message of what its party sees once.
    for (party, sees) in [
        (&alice, vec![&washer, &quote]),
        (&ann, vec![&washer, &quote, &direct]),
        (&ben, vec![&washer, &direct]),
    ] {
        let log = store
            .events_since(party.id, 0, 10_000, usize::MAX)
            .await
            .expect("log");
        let seqs: Vec<u64> = log.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=log.len() as u64).collect::<Vec<_>>(),
            "{}'s log is gapless",
            party.address
        );
        assert_eq!(
            store.event_head(party.id).await.expect("head"),
            log.len() as u64
        );
        let mut messages = BTreeSet::new();
        for (_, event) in &log {
            if let Event::Message(message) = event {
                assert!(
                    messages.insert((message.conversation.clone(), message.seq)),
                    "{} received {}#{} twice",
                    party.address,
                    message.conversation,
                    message.seq
                );
            }
        }
        let mut expected = BTreeSet::new();
        for conversation in sees {
            let key = store
                .conversation_key(conversation)
                .await
                .expect("key")
                .expect("stored");
            let (stored, _) = store.history(key, 0, 1000).await.expect("history");
            expected.extend(stored.iter().map(|m| (conversation.clone(), m.seq)));
        }
        assert_eq!(
            messages, expected,
            "{} received every message",
            party.address
        );
    }
}

/// A customer's own log, appended to by two nodes (her conversations with
/// two people, ordered on different nodes): a batch made with an old head
/// of her log is not applied again, its events are stored after the other
/// node's, and what it publishes carries the seqs they were stored at.
pub async fn rebasing_keeps_a_shared_log_gapless(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    let mut one = Sequencer::new(first, DOMAIN.into())
        .await
        .expect("node one");
    let mut two = Sequencer::new(second.clone(), DOMAIN.into())
        .await
        .expect("node two");
    let alice = add(&mut one, "alice", PartyKind::User).await;
    let bob = add(&mut one, "bob", PartyKind::User).await;
    let carol = add(&mut two, "carol", PartyKind::User).await;
    let with_bob = create(&mut one, &bob, &alice, "ab").await;
    let with_carol = create(&mut two, &carol, &alice, "ac").await;
    let send = |by: &Party, conversation: &ConversationId, id: &str| Command::Send {
        by: by.clone(),
        conversation: conversation.clone(),
        client_msg_id: id.into(),
        body: text(id),
    };
    // Node two knows where alice's log ends; node one then appends to it.
    let stats = two.stats();
    let (_, published) = two.order(&[send(&carol, &with_carol, "c1")], 1).await;
    assert!(!published.is_empty());
    for n in 0..3 {
        let id = format!("b{n}");
        assert!(matches!(
            order_one(&mut one, send(&bob, &with_bob, &id)).await,
            Reply::Sent(_)
        ));
    }
    let ordering = std::sync::atomic::Ordering::Relaxed;
    let (conflicts, rebased) = (stats.conflicts.load(ordering), stats.rebased.load(ordering));
    let (replies, published) = two.order(&[send(&carol, &with_carol, "c2")], 1).await;
    assert!(
        matches!(replies.as_slice(), [Reply::Sent(_)]),
        "{replies:?}"
    );
    assert_eq!(
        stats.conflicts.load(ordering),
        conflicts,
        "not applied again"
    );
    assert_eq!(
        stats.rebased.load(ordering),
        rebased + 1,
        "moved after node one's"
    );

    let store = second.as_ref();
    let log = store
        .events_since(alice.id, 0, 100, usize::MAX)
        .await
        .expect("log");
    let seqs: Vec<u64> = log.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>(), "gapless");
    // Two conversations added, then c1, b0..b2, c2.
    assert_eq!(log.len(), 7);
    let (last, event) = log.last().expect("an event");
    assert!(
        matches!(event, Event::Message(m) if m.client_msg_id == "c2"),
        "{event:?}"
    );
    let published_seq = published
        .iter()
        .flat_map(|p| &p.recipients)
        .find(|(party, _)| *party == alice.id)
        .map(|(_, seq)| *seq);
    assert_eq!(
        published_seq,
        Some(*last),
        "published at the seq it was stored at"
    );
    assert_eq!(store.event_head(alice.id).await.expect("head"), *last);
}

/// Orders one command on `node` and returns its reply.
async fn order_one(node: &mut Sequencer, command: Command) -> Reply {
    let (mut replies, _) = node.order(&[command], 1).await;
    replies.pop().expect("one reply")
}

/// Orders a batch, and again what was refused (as clients retry, with the
/// same client message ids), until every command was applied.
async fn order_all(node: &mut Sequencer, mut batch: Vec<Command>) {
    for _ in 0..20 {
        let (replies, _) = node.order(&batch, 1).await;
        batch = batch
            .into_iter()
            .zip(replies)
            .filter_map(|(command, reply)| match reply {
                Reply::Sent(_) | Reply::Done => None,
                Reply::Refused(_) => Some(command),
                other => panic!("unexpected reply {other:?}"),
            })
            .collect();
        if batch.is_empty() {
            return;
        }
    }
    panic!("commands still refused after 20 tries: {batch:?}");
}

async fn add(node: &mut Sequencer, local: &str, kind: PartyKind) -> Party {
    let command = Command::AddParty(NewParty {
        address: address(&format!("{local}@{DOMAIN}")),
        kind,
        display_name: local.into(),
        password_hash: None,
    });
    match order_one(node, command).await {
        Reply::Party(party) => party,
        other => panic!("adding {local}: {other:?}"),
    }
}

async fn create(node: &mut Sequencer, by: &Party, to: &Party, opaque: &str) -> ConversationId {
    let command = Command::CreateConversation {
        by: by.clone(),
        to: vec![to.clone()],
        subject: opaque.into(),
        opaque: opaque.into(),
    };
    match order_one(node, command).await {
        Reply::Conversation(view) => view.id,
        other => panic!("creating {opaque}: {other:?}"),
    }
}
