//! What the session reports: events for the application, and why a call
//! or a datagram failed.

use heapless::Vec;
use kanal_proto::device::limits::{MAX_ACK_IDS, MAX_DATAGRAM};
use kanal_proto::device::{FrameError, Message, ReplayError, WireError};

/// What a received datagram meant to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A [`crate::DeviceSession::open`] was accepted: the conversation exists.
    Opened {
        /// The open's device message id.
        id: u32,
        /// The conversation, for [`crate::DeviceSession::append`].
        conversation: u64,
    },
    /// Requests were accepted (an append stored, a poll answered).
    Accepted {
        /// Their device message ids.
        ids: Vec<u32, MAX_ACK_IDS>,
    },
    /// A new mailbox message (an agent's reply), delivered once and in order.
    Message(Message<'a>),
    /// The server had seen a request's id on a different request (this
    /// device's saved state went back in time); the request was sent again
    /// under a new id, which its answer will name.
    Renumbered {
        /// The id it had.
        old: u32,
        /// The id it has now.
        new: u32,
    },
    /// A request was refused for good; it left the outbox.
    Refused {
        /// Its device message id.
        id: u32,
        /// The [`ErrorCode`](kanal_proto::device::ErrorCode) value.
        code: u16,
        /// The code-specific detail.
        detail: u32,
    },
}

/// Why a request could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The outbox holds its capacity of unanswered requests; wait for
    /// answers (or a larger `N`).
    #[error("the outbox is full ({capacity} unanswered requests)")]
    OutboxFull {
        /// The outbox capacity.
        capacity: usize,
    },
    /// The request does not fit the profile's limits.
    #[error("the request exceeds a limit: {0}")]
    Frame(#[from] FrameError),
    /// More diagnostics than an open carries.
    #[error("{len} diagnostics, at most {max}")]
    TooManyDiagnostics {
        /// How many were given.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a received datagram was dropped. Dropping is always safe: nothing
/// changed, and the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Its wrapper is invalid.
    #[error("invalid wrapper: {0}")]
    Wire(#[from] WireError),
    /// It names no session or handshake of this device.
    #[error("no session with index {index}")]
    UnknownIndex {
        /// The receiver index it named.
        index: u32,
    },
    /// Its counter was refused by the replay window.
    #[error("replay window: {0}")]
    Replay(#[from] ReplayError),
    /// It did not authenticate.
    #[error("datagram did not authenticate")]
    Authentication,
    /// It authenticated but its frame could not be decoded.
    #[error("undecodable frame: {0}")]
    Frame(#[from] FrameError),
    /// A type a device never receives (an initiation).
    #[error("unexpected message type")]
    Unexpected,
}

/// Why no datagram could be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransmitError {
    /// The buffer is smaller than [`MAX_DATAGRAM`].
    #[error("transmit buffer of {len} bytes, {MAX_DATAGRAM} needed")]
    BufferTooSmall {
        /// Its length.
        len: usize,
    },
    /// The handshake could not be written (a broken static key).
    #[error("the handshake could not be written")]
    Handshake,
}
