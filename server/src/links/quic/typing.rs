//! Typing signals: QUIC datagrams relayed to the conversation's other
//! recipients, with no task and (mostly) no database read per datagram.
//!
//! A connection may send [`RATE`] typing datagrams a second, in bursts of
//! up to [`BURST`]; the excess is dropped and counted, never logged one line
//! each. Who a conversation's typing reaches is looked up once and kept for
//! [`AUDIENCE_TTL`] (at most [`CACHED_AUDIENCES`] conversations per
//! connection), so an agent added to an inbox sees typing within that time.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kanal_proto::address::ConversationId;
use kanal_proto::pb;
use prost::Message as _;
use tokio::time::Instant;

use crate::model::{Party, PartyId};
use crate::node::Node;

/// Typing datagrams a connection may send per second, on average.
pub(crate) const RATE: f64 = 4.0;

/// Typing datagrams a connection may send at once after a quiet spell.
pub(crate) const BURST: f64 = 8.0;

/// How long a conversation's recipients are reused for typing.
const AUDIENCE_TTL: Duration = Duration::from_secs(5);

/// Conversations whose recipients a connection keeps at once.
const CACHED_AUDIENCES: usize = 16;

/// Who a conversation's typing reaches: its other local recipients, and
/// the servers of its remote members.
#[derive(Debug, Clone)]
struct Reach {
    others: Vec<PartyId>,
    servers: Vec<String>,
}

/// The typing relay of one connection.
#[derive(Debug)]
pub(super) struct TypingRelay {
    /// Tokens left, refilled at [`RATE`] up to [`BURST`].
    tokens: f64,
    refilled: Instant,
    /// Other recipients and the servers of remote members, by
    /// conversation, and when they were looked up.
    audiences: HashMap<ConversationId, (Reach, Instant)>,
    /// Datagrams dropped: over the rate, malformed, or for a conversation
    /// the sender does not see.
    pub(super) dropped: u64,
}

impl TypingRelay {
    pub(super) fn new() -> Self {
        Self {
            tokens: BURST,
            refilled: Instant::now(),
            audiences: HashMap::new(),
            dropped: 0,
        }
    }

    /// Relays `datagram` from `party` on `connection`, or drops it.
    pub(super) async fn relay(
        &mut self,
        node: &Node,
        party: &Party,
        connection: u64,
        datagram: Bytes,
    ) {
        if !self.take_token() {
            self.dropped += 1;
            return;
        }
        let Ok(pb::Datagram {
            kind: Some(pb::datagram::Kind::Typing(typing)),
        }) = pb::Datagram::decode(datagram)
        else {
            self.dropped += 1; // Unknown or malformed: datagrams are ephemeral.
            return;
        };
        let Ok(id) = typing.conversation.parse::<ConversationId>() else {
            self.dropped += 1;
            return;
        };
        let Some(reach) = self.reach(node, party, &id).await else {
            self.dropped += 1;
            return;
        };
        for server in &reach.servers {
            let datagram =
                crate::links::federation::typing::datagram(&id, &party.address, typing.active);
            node.federation.send_datagram(server, datagram);
        }
        let relayed = pb::Datagram {
            kind: Some(pb::datagram::Kind::Typing(pb::Typing {
                conversation: id.to_string(),
                active: typing.active,
                from: party.address.to_string(),
            })),
        };
        node.hub
            .relay_datagram(&reach.others, connection, relayed.encode_to_vec().into());
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * RATE;
        self.tokens = (self.tokens + earned).min(BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Who typing in the conversation reaches, if `party` sees it: from
    /// the cache, or looked up once.
    async fn reach(&mut self, node: &Node, party: &Party, id: &ConversationId) -> Option<Reach> {
        let now = Instant::now();
        if let Some((reach, at)) = self.audiences.get(id)
            && now.duration_since(*at) < AUDIENCE_TTL
        {
            return Some(reach.clone());
        }
        let audience = match node.audience(id).await {
            Ok(Some((_, audience))) if audience.sees(party.id) => audience,
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "resolving typing recipients failed");
                return None;
            }
        };
        let reach = Reach {
            others: audience
                .recipients()
                .iter()
                .copied()
                .filter(|p| *p != party.id)
                .collect(),
            servers: audience.servers().to_vec(),
        };
        if self.audiences.len() >= CACHED_AUDIENCES {
            self.audiences
                .retain(|_, (_, at)| now.duration_since(*at) < AUDIENCE_TTL);
            if self.audiences.len() >= CACHED_AUDIENCES {
                self.audiences.clear();
            }
        }
        self.audiences.insert(id.clone(), (reach.clone(), now));
        Some(reach)
    }
}
