//! Typing between servers (FEDERATION.md §8): QUIC datagrams on whichever
//! connection with the peer is open, relayed to the conversation's local
//! recipients. Best effort, as typing is for clients: never queued, and a
//! peer sending more than [`RATE`] a second has the excess dropped.

use bytes::Bytes;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::{fed, pb};
use prost::Message as _;
use tokio::time::Instant;

use std::sync::Arc;

use crate::node::Node;

/// Typing datagrams a peer may send per second, on average (all its
/// parties together).
const RATE: f64 = 200.0;

/// Typing datagrams a peer may send at once after a quiet spell.
const BURST: f64 = 400.0;

/// `connection` with `origin` is open: its datagrams are read, and typing
/// toward `origin` may use it, until it closes.
pub(super) fn attach(node: &Arc<Node>, origin: &str, connection: &quinn::Connection) {
    node.federation.linked(origin, connection);
    let (node, origin, connection) = (node.clone(), origin.to_owned(), connection.clone());
    tokio::spawn(async move {
        let mut bucket = (BURST, Instant::now());
        while let Ok(datagram) = connection.read_datagram().await {
            let now = Instant::now();
            bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * RATE).min(BURST);
            bucket.1 = now;
            if bucket.0 < 1.0 {
                continue;
            }
            bucket.0 -= 1.0;
            relay(&node, &origin, datagram).await;
        }
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
