//! Checks of what federation keeps: the peer servers the operator
//! configured, the outbox toward each peer as the peer acknowledges it, and
//! how far the transactions from each peer are applied.

use bytes::Bytes;

use super::{conversation_id, message, new_conversation, new_party};
use crate::model::{
    DeliveryFailure, Event, EventRef, FailureNotice, OutboxRow, PartyKind, PeerRecord, Undelivered,
    Write,
};
use crate::store::{Store, StoreError};

/// A peer server's configuration.
fn peer(domain: &str, address: &str, added_at_ms: i64) -> PeerRecord {
    PeerRecord {
        domain: domain.into(),
        address: address.into(),
        fingerprint: format!("{:064x}", added_at_ms),
        added_at_ms,
    }
}

/// Outbox row `seq` toward `peer`, queued at `100 * seq`.
fn row(peer: &str, seq: u64) -> OutboxRow {
    OutboxRow {
        peer: peer.into(),
        seq,
        payload: Bytes::from(format!("{peer}#{seq}")),
        enqueued_at_ms: i64::try_from(seq).expect("small seq") * 100,
    }
}

/// The seqs of the outbox rows toward `peer`.
async fn queued<S: Store>(store: &S, peer: &str) -> Vec<u64> {
    store
        .outbox(peer, 0, 100)
        .await
        .expect("outbox")
        .iter()
        .map(|r| r.seq)
        .collect()
}

/// Peers are stored by domain: put again, replaced; listed by domain;
/// removed once, and their outbox and cursors stay when they are.
pub async fn peers_are_put_replaced_listed_and_removed<S: Store>(store: &S) {
    assert!(store.peers().await.expect("peers").is_empty());
    let later = peer("zeta.example", "zeta.example:7443", 1);
    let first = peer("alpha.example", "alpha.example:7443", 2);
    store.put_peer(&later).await.expect("put");
    store.put_peer(&first).await.expect("put");
    assert_eq!(
        store.peers().await.expect("peers"),
        vec![first.clone(), later.clone()],
        "by domain"
    );

    let moved = peer("alpha.example", "10.0.0.7:8443", 3);
    store.put_peer(&moved).await.expect("replace");
    assert_eq!(
        store.peers().await.expect("peers"),
        vec![moved, later.clone()],
        "replaced, not added"
    );

    store
        .commit(vec![Write::Outbox(row("alpha.example", 1))])
        .await
        .expect("queue");
    store.ack_outbox("alpha.example", 1).await.expect("ack");
    store
        .commit(vec![Write::Outbox(row("alpha.example", 2))])
        .await
        .expect("queue");
    assert!(store.remove_peer("alpha.example").await.expect("remove"));
    assert!(
        !store.remove_peer("alpha.example").await.expect("remove"),
        "once"
    );
    assert!(
        !store.remove_peer("nobody.example").await.expect("remove"),
        "never configured"
    );
    assert_eq!(store.peers().await.expect("peers"), vec![later]);
    assert_eq!(
        queued(store, "alpha.example").await,
        vec![2],
        "outbox stays"
    );
    assert_eq!(
        store.outbox_acked("alpha.example").await.expect("acked"),
        1,
        "cursors stay"
    );
}

/// Outbox rows read back with when they were queued; an ack deletes the
/// rows up to it and keeps the head, never lowers the acknowledged cursor,
/// and touches no other peer's rows; only peers with rows are listed.
pub async fn outbox_acks_delete_rows_and_keep_the_head<S: Store>(store: &S) {
    let (home, other) = ("home.example", "other.example");
    assert_eq!(store.outbox_head(home).await.expect("head"), 0);
    assert_eq!(store.outbox_acked(home).await.expect("acked"), 0);
    assert!(store.outbox_peers().await.expect("peers").is_empty());

    let mut batch: Vec<Write> = (1..=4).map(|seq| Write::Outbox(row(home, seq))).collect();
    batch.push(Write::Outbox(row(other, 1)));
    store.commit(batch).await.expect("queue");
    assert_eq!(
        store.outbox(home, 0, 10).await.expect("outbox"),
        (1..=4).map(|seq| row(home, seq)).collect::<Vec<_>>(),
        "payloads and queueing times read back"
    );
    assert_eq!(store.outbox_head(home).await.expect("head"), 4);
    assert_eq!(
        store.outbox_peers().await.expect("peers"),
        vec![home.to_owned(), other.to_owned()]
    );

    store.ack_outbox(home, 2).await.expect("ack");
    assert_eq!(queued(store, home).await, vec![3, 4]);
    assert_eq!(store.outbox_acked(home).await.expect("acked"), 2);
    assert_eq!(store.outbox_head(home).await.expect("head"), 4);
    assert_eq!(queued(store, other).await, vec![1], "another peer's rows");
    assert_eq!(store.outbox_acked(other).await.expect("acked"), 0);

    // Everything acknowledged: no rows left, and the head stays where the
    // numbering goes on from.
    store.ack_outbox(home, 4).await.expect("ack");
    assert!(queued(store, home).await.is_empty());
    assert_eq!(store.outbox_head(home).await.expect("head"), 4);
    assert_eq!(
        store.outbox_peers().await.expect("peers"),
        vec![other.to_owned()],
        "only peers with rows"
    );

    // A late, lower ack lowers nothing.
    store.ack_outbox(home, 1).await.expect("late ack");
    assert_eq!(store.outbox_acked(home).await.expect("acked"), 4);
    assert_eq!(store.outbox_head(home).await.expect("head"), 4);

    store
        .commit(vec![Write::Outbox(row(home, 5))])
        .await
        .expect("queue after the ack");
    assert_eq!(store.outbox_head(home).await.expect("head"), 5);
    assert_eq!(queued(store, home).await, vec![5]);

    // An ack of a peer nothing was queued toward only records it.
    store.ack_outbox("new.example", 0).await.expect("ack");
    assert_eq!(store.outbox_head("new.example").await.expect("head"), 0);
    assert_eq!(store.outbox_acked("new.example").await.expect("acked"), 0);
}

/// A peer's committed cursor rises with the batch that applies its
/// transactions and never lowers; a batch that fails commits neither its
/// outbox rows nor its cursor.
pub async fn peer_committed_commits_with_its_batch<S: Store>(store: &S) {
    let home = "home.example";
    assert_eq!(store.peer_committed(home).await.expect("committed"), 0);
    let carla = new_party(store, "carla@home.example", PartyKind::User).await;
    let replica = conversation_id("home.example/r1");
    let mut batch = new_conversation(1, &replica, carla.id, &[carla.id], 10);
    batch.extend([
        message(1, 1, carla.id, "h1", 11, "from the host"),
        Write::PeerCommitted {
            peer: home.into(),
            up_to: 3,
            at_ms: 100,
        },
        // Twice in one batch: the higher holds.
        Write::PeerCommitted {
            peer: home.into(),
            up_to: 5,
            at_ms: 300,
        },
        Write::PeerCommitted {
            peer: home.into(),
            up_to: 4,
            at_ms: 200,
        },
        Write::Outbox(row(home, 1)),
    ]);
    store.commit(batch).await.expect("apply");
    assert_eq!(store.peer_committed(home).await.expect("committed"), 5);
    // When: the latest of the batch's.
    for (since, listed) in [(0, true), (300, true), (301, false)] {
        let peers = store.peers_committed_since(since, 10).await.expect("since");
        assert_eq!(peers == [home], listed, "since {since}: {peers:?}");
    }
    assert_eq!(
        store.outbox_acked(home).await.expect("acked"),
        0,
        "the other cursor"
    );
    assert_eq!(
        store
            .peer_committed("other.example")
            .await
            .expect("committed"),
        0
    );

    store
        .commit(vec![Write::PeerCommitted {
            peer: home.into(),
            up_to: 2,
            at_ms: 0,
        }])
        .await
        .expect("a lower cursor");
    assert_eq!(
        store.peer_committed(home).await.expect("committed"),
        5,
        "never lowers"
    );
    assert_eq!(
        store.peers_committed_since(300, 10).await.expect("since"),
        [home],
        "nor its time"
    );

    // A retry of a stored send fails the batch: nothing of it is stored.
    let doomed = vec![
        Write::PeerCommitted {
            peer: home.into(),
            up_to: 9,
            at_ms: 0,
        },
        Write::PeerCommitted {
            peer: "new.example".into(),
            up_to: 1,
            at_ms: 0,
        },
        Write::Outbox(row(home, 2)),
        Write::Outbox(row("new.example", 1)),
        message(1, 2, carla.id, "h1", 12, "a retry taken for new"),
    ];
    assert!(matches!(
        store.commit(doomed).await,
        Err(StoreError::DuplicateSend)
    ));
    assert_eq!(store.peer_committed(home).await.expect("committed"), 5);
    assert_eq!(
        store
            .peer_committed("new.example")
            .await
            .expect("committed"),
        0
    );
    assert_eq!(
        store.peers_committed_since(0, 10).await.expect("since"),
        [home],
        "nothing of the failed batch"
    );
    // The latest first, as many as asked.
    store
        .commit(vec![Write::PeerCommitted {
            peer: "later.example".into(),
            up_to: 1,
            at_ms: 400,
        }])
        .await
        .expect("another peer");
    assert_eq!(
        store.peers_committed_since(0, 10).await.expect("since"),
        ["later.example", home]
    );
    assert_eq!(
        store.peers_committed_since(0, 1).await.expect("since"),
        ["later.example"]
    );
    assert_eq!(queued(store, home).await, vec![1]);
    assert_eq!(store.outbox_head(home).await.expect("head"), 1);
    assert_eq!(
        store.outbox_peers().await.expect("peers"),
        vec![home.to_owned()]
    );

    store
        .commit(vec![
            Write::PeerCommitted {
                peer: home.into(),
                up_to: 6,
                at_ms: 0,
            },
            Write::Outbox(row(home, 2)),
        ])
        .await
        .expect("the store goes on");
    assert_eq!(store.peer_committed(home).await.expect("committed"), 6);
    assert_eq!(queued(store, home).await, vec![1, 2]);
}

/// A transaction given up is kept with what it carried; the sender's event
/// reads back from its log as the failure told; a replay marks it, and a
/// transaction told nobody reads back without a notice.
pub async fn undelivered_transactions_are_kept_told_and_replayed<S: Store>(store: &S) {
    let home = "home.example";
    let carla = new_party(store, "carla@here.example", PartyKind::User).await;
    let id = conversation_id("home.example/c1");
    store
        .commit(new_conversation(1, &id, carla.id, &[carla.id], 10))
        .await
        .expect("conversation");
    let failure = DeliveryFailure {
        conversation: id.clone(),
        client_msg_id: "m1".into(),
        seq: 0,
        server: home.into(),
        refused: true,
        reason: "no party nobody@home.example".into(),
    };
    let told = Undelivered {
        peer: home.into(),
        seq: 3,
        refused: true,
        reason: failure.reason.clone(),
        payload: Bytes::from_static(b"transaction 3"),
        enqueued_at_ms: 20,
        failed_at_ms: 30,
        told: Some(FailureNotice {
            party: carla.id,
            event_seq: 1,
            key: 1,
            failure: failure.clone(),
        }),
        replayed_as: None,
    };
    let untold = Undelivered {
        seq: 4,
        refused: false,
        told: None,
        reason: "unreachable".into(),
        ..told.clone()
    };
    store
        .commit(vec![
            Write::Event {
                party: carla.id,
                seq: 1,
                key: 1,
                what: EventRef::DeliveryFailed { seq: 3 },
                at_ms: 30,
            },
            Write::Undelivered(Box::new(told.clone())),
            Write::Undelivered(Box::new(untold.clone())),
        ])
        .await
        .expect("give up");
    assert_eq!(
        store.undelivered(home).await.expect("undelivered"),
        vec![told.clone(), untold.clone()]
    );
    assert!(
        store
            .undelivered("other.example")
            .await
            .expect("undelivered")
            .is_empty()
    );
    let log = store
        .events_since(carla.id, 0, 10, 1 << 20)
        .await
        .expect("log");
    assert_eq!(log, vec![(1, Event::DeliveryFailed(failure))]);

    store
        .commit(vec![Write::Replayed {
            peer: home.into(),
            seq: 3,
            as_seq: 9,
        }])
        .await
        .expect("replay");
    let after = store.undelivered(home).await.expect("undelivered");
    assert_eq!(after[0].replayed_as, Some(9));
    assert_eq!(after[1].replayed_as, None);
}

/// A message submitted to another host is recorded once, by conversation,
/// sender and client message id.
pub async fn submissions_are_recorded<S: Store>(store: &S) {
    let carla = new_party(store, "carla@here.example", PartyKind::User).await;
    let id = conversation_id("host.example/c2");
    store
        .commit(new_conversation(1, &id, carla.id, &[carla.id], 10))
        .await
        .expect("conversation");
    assert!(!store.submitted(1, carla.id, "m1").await.expect("read"));
    let submitted = Write::Submitted {
        key: 1,
        sender: carla.id,
        client_msg_id: "m1".into(),
    };
    store.commit(vec![submitted.clone()]).await.expect("submit");
    store
        .commit(vec![submitted])
        .await
        .expect("a repeat is one");
    assert!(store.submitted(1, carla.id, "m1").await.expect("read"));
    assert!(!store.submitted(1, carla.id, "m2").await.expect("read"));
    assert!(!store.submitted(2, carla.id, "m1").await.expect("read"));
}
