//! Typing between servers (FEDERATION.md §8): QUIC datagrams on whichever
//! connection with the peer is open, relayed to the conversation's local
//! recipients. Best effort, as typing is for clients: never queued, and a
//! peer sending more than [`RATE`] a second has the excess dropped.

use bytes::Bytes;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::{fed, pb};
use prost::Message as _;

use std::sync::Arc;

use crate::node::Node;
use crate::node::limits::Buckets;

/// Typing datagrams a peer may send per second, on average (all its
/// parties together).
const RATE: f64 = 200.0;

/// Typing datagrams a peer may send at once after a quiet spell.
const BURST: f64 = 400.0;

/// The typing datagrams each peer may send, over all its connections.
pub(super) fn budget() -> Buckets<String> {
    Buckets::new(BURST, std::time::Duration::from_secs(1).div_f64(RATE))
}

/// `connection` with `origin` is open: its datagrams are read, within
/// `origin`'s share of `budget`, and typing toward `origin` may use it,
/// until it closes.
pub(super) fn attach(
    node: &Arc<Node>,
    budget: &Arc<Buckets<String>>,
    origin: &str,
    connection: &quinn::Connection,
) {
    node.federation.linked(origin, connection);
    let (node, budget) = (node.clone(), budget.clone());
    let (origin, connection) = (origin.to_owned(), connection.clone());
    tokio::spawn(async move {
        while let Ok(datagram) = connection.read_datagram().await {
            if budget.try_take(&origin).is_ok() {
                relay(&node, &origin, datagram).await;
            }
        }
        node.federation.unlinked(&origin, &connection);
    });
}

/// Relays a typing datagram from `origin` to the conversation's local
/// recipients, if it is one `origin` may send: from one of its parties,
/// who sees the conversation or, if `origin` hosts it, answers for it.
async fn relay(node: &Node, origin: &str, datagram: Bytes) {
    let Ok(typing) = fed::Typing::decode(datagram) else {
        return;
    };
    let (Ok(id), Ok(from)) = (
        typing.conversation.parse::<ConversationId>(),
        typing.from.parse::<Address>(),
    ) else {
        return;
    };
    if from.domain() != origin {
        return;
    }
    let Ok(Some((_, audience))) = node.audience(&id).await else {
        return;
    };
    // The host speaks for its own parties (its agents answer through the
    // inbox, members or not); another server only for a member's.
    if origin != id.host() {
        let Ok(Some(party)) = node.store.party_by_address(&from).await else {
            return;
        };
        if !audience.sees(party.id) {
            return;
        }
    }
    let relayed = pb::Datagram {
        kind: Some(pb::datagram::Kind::Typing(pb::Typing {
            conversation: id.to_string(),
            active: typing.active,
            from: from.to_string(),
        })),
    };
    node.hub
        .relay_datagram(audience.recipients(), 0, relayed.encode_to_vec().into());
}

/// The typing datagram toward another server.
pub(crate) fn datagram(conversation: &ConversationId, from: &Address, active: bool) -> Bytes {
    fed::Typing {
        conversation: conversation.to_string(),
        from: from.to_string(),
        active,
    }
    .encode_to_vec()
    .into()
}
