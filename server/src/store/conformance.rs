//! The behaviour every [`Store`] backend must show, as checks generic over
//! the backend. A backend runs them all with [`store_conformance_tests!`]
//! (one `#[tokio::test]` per check, each on a fresh, empty store) plus
//! [`survives_reopen`], which needs to open one database twice.
//!
//! [`store_conformance_tests!`]: crate::store_conformance_tests

use kanal_proto::address::{Address, ConversationId};

use super::Store;
use crate::model::{
    Body, ConversationKey, EventRef, NewParty, Party, PartyId, PartyKind, ReceiptKind, Write,
};

mod audience;
mod conversations;
mod desk;
mod devices;
mod directory;
mod durability;
mod federation;
mod invites;
mod logs;
mod writers;

pub use audience::{listings_follow_the_audience_rule, replicas_remote_parties_and_outbox};
pub use conversations::{
    commit_and_load, conversations_of_ordering_and_visibility, events_since_rebuilds_each_kind,
    history_pages_backwards, watermarks_never_lower,
};
pub use desk::{
    desk_entries_page_backwards_and_notes_are_found, desk_events_replay_from_party_and_inbox_logs,
    desk_rows_upsert_and_read_back, inbox_desk_entries_read_a_period_in_order,
    reused_client_note_id_is_a_duplicate_send, ticket_listings_filter_page_and_order,
};
pub use devices::devices_register_revoke_link_and_count_initiations;
pub use directory::{inbox_agents, parties, sessions_and_acks};
pub use durability::{
    failed_batch_leaves_nothing, reused_client_msg_id_is_a_duplicate_send, survives_reopen,
};
pub use federation::{
    outbox_acks_delete_rows_and_keep_the_head, peer_committed_commits_with_its_batch,
    peers_are_put_replaced_listed_and_removed, submissions_are_recorded,
    undelivered_transactions_are_kept_told_and_replayed,
};
pub use invites::invites_are_used_up_expire_and_revoke;
pub use logs::logs_follow_inbox_logs;
pub use writers::{rebasing_keeps_a_shared_log_gapless, several_writers_keep_every_log_gapless};

/// Expands to one `#[tokio::test]` per conformance check. `$fresh` is an
/// async fn returning `(guard, store)`: a fresh, empty store, and whatever
/// must live as long as it (a temporary directory, a database to drop).
#[macro_export]
macro_rules! store_conformance_tests {
    ($fresh:path) => {
        $crate::store_conformance_tests!(@each $fresh;
            parties,
            inbox_agents,
            sessions_and_acks,
            commit_and_load,
            history_pages_backwards,
            events_since_rebuilds_each_kind,
            logs_follow_inbox_logs,
            conversations_of_ordering_and_visibility,
            watermarks_never_lower,
            listings_follow_the_audience_rule,
            replicas_remote_parties_and_outbox,
            failed_batch_leaves_nothing,
            reused_client_msg_id_is_a_duplicate_send,
            invites_are_used_up_expire_and_revoke,
            devices_register_revoke_link_and_count_initiations,
            desk_rows_upsert_and_read_back,
            ticket_listings_filter_page_and_order,
            desk_entries_page_backwards_and_notes_are_found,
            inbox_desk_entries_read_a_period_in_order,
            reused_client_note_id_is_a_duplicate_send,
            desk_events_replay_from_party_and_inbox_logs,
            peers_are_put_replaced_listed_and_removed,
            outbox_acks_delete_rows_and_keep_the_head,
            peer_committed_commits_with_its_batch,
            undelivered_transactions_are_kept_told_and_replayed,
            submissions_are_recorded,
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
fn text(text: &str) -> Body {
    Body::Text(text.into())
}

/// Creates a party named after its address, under the next free id.
pub(crate) async fn new_party<S: Store>(store: &S, addr: &str, kind: PartyKind) -> Party {
    new_party_with(store, addr, kind, None).await
}

/// Creates a party with a password hash, under the next free id.
async fn new_party_with<S: Store>(
    store: &S,
    addr: &str,
    kind: PartyKind,
    password_hash: Option<&str>,
) -> Party {
    let address = address(addr);
    let id = store.counters().await.expect("counters").max_party + 1;
    let party = NewParty {
        display_name: address.local().to_uppercase(),
        address: address.clone(),
        kind,
        password_hash: password_hash.map(str::to_owned),
    };
    store
        .commit(vec![Write::NewParty {
            id,
            party: party.clone(),
            created_at_ms: 1,
        }])
        .await
        .expect("create party");
    Party {
        id,
        address,
        kind,
        display_name: party.display_name,
    }
}

/// Makes `agent` answer for `inbox`.
async fn add_agent<S: Store>(store: &S, inbox: PartyId, agent: PartyId) {
    store
        .commit(vec![Write::InboxAgent { inbox, agent }])
        .await
        .expect("add agent");
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
        body: text(body),
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

/// A conversation-added event, for a conversation whose last seq was 0.
fn added(party: PartyId, seq: u64, key: ConversationKey, at: i64) -> Write {
    event(
        party,
        seq,
        key,
        EventRef::ConversationAdded { last_seq: 0 },
        at,
    )
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
