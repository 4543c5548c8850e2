//! Checks of parties, inbox agents and sessions.

use super::{add_agent, address, new_party, new_party_with};
use crate::model::{NewParty, PartyId, PartyKind, Write};
use crate::store::Store;

/// Parties are created under the engine's ids, found by address and id,
/// listed by address, and an address is taken only once.
pub async fn parties<S: Store>(store: &S) {
    let zed = new_party(store, "zed@kanal.test", PartyKind::User).await;
    let alice = new_party_with(
        store,
        "alice@kanal.test",
        PartyKind::Agent,
        Some("$argon2id$fake"),
    )
    .await;
    assert_ne!(zed.id, alice.id);
    assert_eq!(alice.kind, PartyKind::Agent);
    assert!(
        store.counters().await.expect("counters").max_party >= alice.id,
        "numbering starts after what is in use"
    );

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
        .commit(vec![Write::NewParty {
            id: alice.id + 1,
            party: NewParty {
                address: address("ALICE@kanal.test"),
                kind: PartyKind::User,
                display_name: "Another Alice".into(),
                password_hash: None,
            },
            created_at_ms: 2,
        }])
        .await;
    assert!(taken.is_err(), "a taken address fails its batch");

    assert_eq!(store.parties().await.expect("parties"), vec![alice, zed]);
}

/// Agents answer for inboxes in the order they were added, once each.
pub async fn inbox_agents<S: Store>(store: &S) {
    let support = new_party(store, "support@kanal.test", PartyKind::Inbox).await;
    let sales = new_party(store, "sales@kanal.test", PartyKind::Inbox).await;
    let ann = new_party(store, "ann@kanal.test", PartyKind::Agent).await;
    let ben = new_party(store, "ben@kanal.test", PartyKind::Agent).await;
    assert_eq!(
        store.inbox_agents(support.id).await.expect("none"),
        Vec::<PartyId>::new()
    );

    add_agent(store, support.id, ben.id).await;
    add_agent(store, support.id, ann.id).await;
    add_agent(store, support.id, ben.id).await;
    add_agent(store, sales.id, ann.id).await;

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
        Vec::<PartyId>::new()
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
