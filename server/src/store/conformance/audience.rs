//! Checks that the store's listings and visibility follow the one audience
//! rule (`core::audience`), and that the store holds what federation will
//! need: remote parties, replicas of conversations hosted elsewhere, and
//! outbox rows committed with the change they carry.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

use super::{add_agent, added, conversation_id, message, new_conversation, new_party};
use crate::core::audience;
use crate::model::{OutboxRow, Party, PartyId, PartyKind, Write};
use crate::store::Store;

/// For every party and conversation of a generated directory, the store's
/// `conversations_of` and `can_see` say what the audience rule says.
pub async fn listings_follow_the_audience_rule<S: Store>(store: &S) {
    let mut parties: Vec<Party> = Vec::new();
    for (address, kind) in [
        ("ana@kanal.test", PartyKind::User),
        ("bo@kanal.test", PartyKind::User),
        ("support@kanal.test", PartyKind::Inbox),
        ("sales@kanal.test", PartyKind::Inbox),
        ("ann@kanal.test", PartyKind::Agent),
        ("ben@kanal.test", PartyKind::Agent),
        ("cy@kanal.test", PartyKind::Agent),
        ("bot@kanal.test", PartyKind::Bot),
        ("washer-7@kanal.test", PartyKind::Device),
        ("dora@home.example", PartyKind::User),
    ] {
        parties.push(new_party(store, address, kind).await);
    }
    let id_of = |local: &str| {
        parties
            .iter()
            .find(|p| p.address.local() == local)
            .map(|p| p.id)
            .expect("party")
    };
    let mut agents: HashMap<PartyId, Vec<PartyId>> = HashMap::new();
    for (inbox, agent) in [
        ("support", "ann"),
        ("support", "ben"),
        ("sales", "ben"),
        ("sales", "cy"),
    ] {
        add_agent(store, id_of(inbox), id_of(agent)).await;
        agents.entry(id_of(inbox)).or_default().push(id_of(agent));
    }
    // Conversations of 2–4 members drawn from every kind of party.
    let mut random = 0x9e37_79b9_7f4a_7c15_u64;
    let mut conversations: Vec<(i64, Vec<Party>)> = Vec::new();
    for key in 1..=24 {
        let mut members: Vec<Party> = Vec::new();
        let count = 2 + (key as usize % 3);
        while members.len() < count {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let party = &parties[(random % parties.len() as u64) as usize];
            if !members.contains(party) {
                members.push(party.clone());
            }
        }
        let ids: Vec<PartyId> = members.iter().map(|m| m.id).collect();
        let id = conversation_id(&format!("kanal.test/a{key}"));
        store
            .commit(new_conversation(key, &id, ids[0], &ids, key))
            .await
            .expect("conversation");
        conversations.push((key, members));
    }

    let no_agents: Vec<PartyId> = Vec::new();
    for party in &parties {
        let expected: BTreeSet<String> = conversations
            .iter()
            .filter(|(_, members)| {
                audience::viewers(members, |inbox| {
                    agents.get(&inbox).unwrap_or(&no_agents).as_slice()
                })
                .contains(&party.id)
            })
            .map(|(key, _)| format!("kanal.test/a{key}"))
            .collect();
        let (listed, more) = store
            .conversations_of(party.id, 100, 0)
            .await
            .expect("conversations_of");
        assert!(!more);
        let listed: BTreeSet<String> = listed.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(listed, expected, "conversations of {}", party.address);
        for (key, _) in &conversations {
            let id = format!("kanal.test/a{key}");
            assert_eq!(
                store.can_see(*key, party.id).await.expect("can_see"),
                expected.contains(&id),
                "{} sees {id}",
                party.address
            );
        }
    }
}

/// A conversation hosted by another server is held here by its host's id
/// and seqs, with remote members; outbox rows commit atomically with the
/// change they carry and are read back per peer in seq order.
pub async fn replicas_remote_parties_and_outbox<S: Store>(store: &S) {
    let carla = new_party(store, "carla@home.example", PartyKind::User).await;
    let local = new_party(store, "dora@kanal.test", PartyKind::User).await;
    assert_eq!(
        store
            .party_by_address(&carla.address)
            .await
            .expect("remote"),
        Some(carla.clone())
    );
    // A replica: the host's id and its seqs, applied in the host's order.
    let replica = conversation_id("home.example/r1");
    let row = |peer: &str, seq: u64| {
        Write::Outbox(OutboxRow {
            peer: peer.into(),
            seq,
            payload: Bytes::from(format!("{peer}#{seq}")),
            enqueued_at_ms: 10,
        })
    };
    let mut batch = new_conversation(1, &replica, carla.id, &[carla.id, local.id], 10);
    batch.extend([
        added(local.id, 1, 1, 10),
        message(1, 1, carla.id, "h1", 11, "from the host"),
        row("home.example", 1),
        row("other.example", 1),
    ]);
    store.commit(batch).await.expect("replica and outbox");
    let record = store
        .load_conversation(&replica)
        .await
        .expect("load")
        .expect("replica held");
    assert_eq!((record.last_seq, record.members.len()), (1, 2));
    assert!(record.is_hosted_by("home.example") && !record.is_hosted_by("kanal.test"));

    // A failing batch takes its outbox rows with it.
    let doomed = vec![
        row("home.example", 2),
        message(1, 1, carla.id, "h1-again", 12, "same seq"),
    ];
    assert!(store.commit(doomed).await.is_err());
    store
        .commit(vec![row("home.example", 2), row("home.example", 3)])
        .await
        .expect("more rows");
    let queued = store.outbox("home.example", 0, 10).await.expect("outbox");
    let seqs: Vec<u64> = queued.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(queued[1].payload, Bytes::from("home.example#2"));
    let after = store.outbox("home.example", 2, 10).await.expect("after 2");
    assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(
        store
            .outbox("other.example", 0, 10)
            .await
            .expect("other")
            .len(),
        1
    );
    assert!(
        store
            .outbox("nobody.example", 0, 10)
            .await
            .expect("none")
            .is_empty()
    );
    assert!(
        store.commit(vec![row("home.example", 3)]).await.is_err(),
        "an outbox seq is taken once per peer"
    );
}
