//! Checks of invite codes.

use crate::model::NewInvite;
use crate::store::Store;

const NOW: i64 = 1_800_000_000_000;

fn invite(code: u8, uses: u32, expires_at_ms: Option<i64>) -> NewInvite {
    NewInvite {
        code_hash: [code; 32],
        uses,
        expires_at_ms,
        note: format!("for {code}"),
    }
}

/// An invite admits as many registrations as it allows and no more, stops
/// at its expiry, gets back a use a failed registration gives back, and
/// is gone once revoked; the listing shows only working ones.
pub async fn invites_are_used_up_expire_and_revoke<S: Store>(store: &S) {
    let twice = store
        .create_invite(invite(1, 2, None), NOW)
        .await
        .expect("create");
    assert_eq!(twice.uses_left, 2);
    assert_eq!(twice.created_at_ms, NOW);
    assert_eq!(twice.note, "for 1");
    let brief = store
        .create_invite(invite(2, 5, Some(NOW + 1000)), NOW)
        .await
        .expect("create");
    assert_ne!(twice.id, brief.id);
    assert!(
        store.create_invite(invite(1, 1, None), NOW).await.is_err(),
        "a code is stored once"
    );

    assert!(store.take_invite([1; 32], NOW).await.expect("take"));
    assert!(store.take_invite([1; 32], NOW).await.expect("take"));
    assert!(
        !store.take_invite([1; 32], NOW).await.expect("take"),
        "used up"
    );
    store.return_invite([1; 32]).await.expect("give back");
    assert!(
        store.take_invite([1; 32], NOW).await.expect("take"),
        "given back"
    );
    assert!(
        !store.take_invite([9; 32], NOW).await.expect("take"),
        "unknown"
    );

    assert!(store.take_invite([2; 32], NOW + 999).await.expect("take"));
    assert!(
        !store.take_invite([2; 32], NOW + 1000).await.expect("take"),
        "expired"
    );

    let listed = store.invites(NOW).await.expect("list");
    assert_eq!(
        listed.len(),
        1,
        "only the unexpired, unused one: {listed:?}"
    );
    assert_eq!((listed[0].id, listed[0].uses_left), (brief.id, 4));
    assert!(store.invites(NOW + 1000).await.expect("list").is_empty());

    assert!(store.revoke_invite(brief.id).await.expect("revoke"));
    assert!(
        !store.revoke_invite(brief.id).await.expect("revoke"),
        "once"
    );
    assert!(
        !store.take_invite([2; 32], NOW).await.expect("take"),
        "revoked"
    );
    store.return_invite([2; 32]).await.expect("no-op");
    assert!(
        !store.take_invite([2; 32], NOW).await.expect("take"),
        "stays revoked"
    );
}
