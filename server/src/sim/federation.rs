//! What travels between two nodes' federation endpoints, and the path
//! between them. A packet is one frame of a connection (FEDERATION.md §3),
//! lost, doubled or reordered on its own: harsher than QUIC, whose streams
//! are reliable, so the delivery logic is shown to need nothing from the
//! transport but a connection's identity and its end.

use bytes::Bytes;
use kanal_proto::fed;

use super::link::Conditions;

/// One frame between two nodes, on connection `session` (the dialler
/// numbers its connections and never reuses a number).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FedPacket {
    /// Dialler → receiver: the connection's `Open` (its origin is the
    /// node it comes from).
    Open {
        /// The connection.
        session: u64,
    },
    /// Dialler → receiver: a transaction frame, as the outbox stored it
    /// (or a tombstone).
    Transaction {
        /// The connection.
        session: u64,
        /// The encoded `kanal.fed.v1.Transaction`.
        frame: Bytes,
    },
    /// Receiver → dialler: the receipts written at one instant, in the
    /// order written (a refusal and the acknowledgement that covers it
    /// travel together, as they do on one stream).
    Receipts {
        /// The connection.
        session: u64,
        /// Ready, Ack, Refuse.
        receipts: Vec<fed::Receipt>,
    },
    /// Receiver → dialler: the receiver knows no such connection (it
    /// restarted since, and resets it, as QUIC's stateless reset does), or
    /// closed it.
    Reset {
        /// The connection.
        session: u64,
    },
}

/// The path between two nodes, both directions, and what it did.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// How the path misbehaves.
    pub conditions: Conditions,
    /// Nothing gets through, either way (a peer down or cut off).
    pub down: bool,
    /// Packets sent over it (once each, however often they arrived).
    pub sent: u64,
    /// Packets it lost.
    pub lost: u64,
    /// Packets it delivered twice.
    pub doubled: u64,
    /// Packets dropped while it was down (sent then, or arriving then).
    pub unreachable: u64,
}

impl Route {
    /// A path in `conditions`, up.
    pub(crate) fn new(conditions: Conditions) -> Self {
        Self {
            conditions,
            down: false,
            sent: 0,
            lost: 0,
            doubled: 0,
            unreachable: 0,
        }
    }
}
