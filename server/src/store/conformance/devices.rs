//! Checks of the device registry.

use super::new_party;
use crate::model::{NewDevice, PartyKind};
use crate::store::{Store, StoreError};

/// Devices are registered once (by key and by serial), found by key,
/// listed by serial, revoked once, linked and unlinked; an initiation
/// counter is accepted only above the last one.
pub async fn devices_register_revoke_link_and_count_initiations<S: Store>(store: &S) {
    let inbox = new_party(store, "support@kanal.test", PartyKind::Inbox).await;
    let owner = new_party(store, "olga@kanal.test", PartyKind::User).await;
    let heater = new_party(store, "hp-2@kanal.test", PartyKind::Device).await;
    let washer = new_party(store, "wm-1@kanal.test", PartyKind::Device).await;
    let new = |key: u8, party, serial: &str| NewDevice {
        key: [key; 32],
        party,
        serial: serial.into(),
        model: "HP 300".into(),
        inbox: inbox.id,
        owner: None,
    };

    let added = store
        .add_device(new(2, heater.id, "hp-2"), 1_000)
        .await
        .expect("add");
    assert_eq!((added.last_initiation, added.revoked_at_ms), (0, None));
    assert_eq!(added.added_at_ms, 1_000);
    store
        .add_device(new(1, washer.id, "wm-1"), 2_000)
        .await
        .expect("add a second");
    let same_key = store.add_device(new(2, washer.id, "other"), 3_000).await;
    assert!(
        matches!(same_key, Err(StoreError::DeviceTaken(_))),
        "{same_key:?}"
    );
    let same_serial = store.add_device(new(3, washer.id, "hp-2"), 3_000).await;
    assert!(
        matches!(same_serial, Err(StoreError::DeviceTaken(_))),
        "{same_serial:?}"
    );

    let listed: Vec<String> = store
        .devices()
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.serial)
        .collect();
    assert_eq!(listed, ["hp-2", "wm-1"]);
    assert_eq!(
        store.device_by_key([2; 32]).await.expect("by key"),
        Some(added)
    );
    assert_eq!(store.device_by_key([9; 32]).await.expect("unknown"), None);

    assert!(store.advance_initiation([2; 32], 5).await.expect("first"));
    assert!(!store.advance_initiation([2; 32], 5).await.expect("again"));
    assert!(!store.advance_initiation([2; 32], 4).await.expect("below"));
    assert!(store.advance_initiation([2; 32], 6).await.expect("above"));
    assert!(!store.advance_initiation([9; 32], 1).await.expect("unknown"));
    // A batch: in order, one commit; a key twice as if one after the other.
    let batch = vec![([2; 32], 8), ([9; 32], 1), ([2; 32], 7), ([2; 32], 9)];
    assert_eq!(
        store.advance_initiations(batch).await.expect("a batch"),
        [true, false, false, true]
    );
    assert!(
        !store
            .advance_initiation([2; 32], 9)
            .await
            .expect("after the batch")
    );
    let heater_now = store
        .device_by_key([2; 32])
        .await
        .expect("read")
        .expect("there");
    assert_eq!(heater_now.last_initiation, 9);

    assert!(
        store
            .link_device("hp-2", Some(owner.id))
            .await
            .expect("link")
    );
    assert!(
        !store
            .link_device("nope", Some(owner.id))
            .await
            .expect("unknown")
    );
    let linked = store
        .device_by_key([2; 32])
        .await
        .expect("read")
        .expect("there");
    assert_eq!(linked.owner, Some(owner.id));
    let owned = |devices: Vec<crate::model::Device>| -> Vec<String> {
        devices.into_iter().map(|d| d.serial).collect()
    };
    assert_eq!(
        owned(store.devices_of(owner.id).await.expect("owned")),
        ["hp-2"]
    );
    assert!(
        store
            .link_device("wm-1", Some(owner.id))
            .await
            .expect("link")
    );
    assert_eq!(
        owned(store.devices_of(owner.id).await.expect("owned")),
        ["hp-2", "wm-1"]
    );
    assert!(store.devices_of(inbox.id).await.expect("none").is_empty());
    assert!(store.link_device("wm-1", None).await.expect("unlink"));
    assert!(store.link_device("hp-2", None).await.expect("unlink"));
    assert!(store.devices_of(owner.id).await.expect("none").is_empty());

    assert!(store.revoke_device("hp-2", 9_000).await.expect("revoke"));
    assert!(!store.revoke_device("hp-2", 9_500).await.expect("twice"));
    assert!(!store.revoke_device("nope", 9_500).await.expect("unknown"));
    let revoked = store
        .device_by_key([2; 32])
        .await
        .expect("read")
        .expect("there");
    assert_eq!((revoked.revoked_at_ms, revoked.owner), (Some(9_000), None));
}
