//! The device profile: how a product talks to its Kanal server over UDP.
//!
//! A device speaks in small postcard-encoded [`frame`]s (open a conversation,
//! append, poll the mailbox, ack; the server answers opened, message, ack,
//! error). Frames travel encrypted in a Noise `IK_25519_ChaChaPoly_BLAKE2s`
//! session inside a WireGuard-style datagram [`wire`] wrapper (session
//! indices, explicit counters checked by a [`replay`] window). Everything
//! here is `no_std` and allocation-free, shared by the firmware and the
//! server's gateway. `DEVICES.md` beside this crate specifies it for a
//! stranger.

pub mod frame;
pub mod replay;
pub mod wire;

pub use frame::{
    Append, Choice, DeviceAck, DeviceFrame, Diagnostic, ErrorCode, ErrorFrame, FrameError, Message,
    Open, Opened, Poll, ServerAck, ServerFrame,
};
pub use replay::{ReplayError, ReplayWindow};
pub use wire::{Datagram, MessageType, WireError};

/// Version of the device profile, sent in every handshake initiation and
/// mixed into the Noise prologue. Frames have no version byte of their own:
/// a session speaks the version its handshake named.
pub const DEVICE_PROFILE_VERSION: u8 = 1;

/// The Noise protocol name of device sessions.
pub const NOISE_PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// Sizes and counts of the device profile, version 1.
pub mod limits {
    /// Largest UDP payload either side sends or accepts, in bytes. Larger
    /// datagrams are dropped unread.
    pub const MAX_DATAGRAM: usize = 512;
    /// Largest encoded frame (postcard bytes, before encryption), in bytes.
    /// It is the binding limit: a frame within every field limit below can
    /// still be refused for its total size.
    pub const MAX_FRAME: usize = 368;
    /// Longest conversation topic, in bytes of UTF-8.
    pub const MAX_TOPIC: usize = 64;
    /// Longest text of an open, append or message, in bytes of UTF-8.
    pub const MAX_TEXT: usize = 256;
    /// Most diagnostics in one open.
    pub const MAX_DIAGNOSTICS: usize = 8;
    /// Longest diagnostic key, in bytes of UTF-8.
    pub const MAX_DIAGNOSTIC_KEY: usize = 32;
    /// Longest diagnostic value, in bytes of UTF-8.
    pub const MAX_DIAGNOSTIC_VALUE: usize = 64;
    /// Most quick replies offered by one message.
    pub const MAX_QUICK_REPLIES: usize = 4;
    /// Longest quick-reply label, in bytes of UTF-8.
    pub const MAX_QUICK_REPLY: usize = 32;
    /// Most device message ids in one server ack.
    pub const MAX_ACK_IDS: usize = 8;
}
