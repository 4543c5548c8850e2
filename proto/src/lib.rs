//! The Kanal protocol.
//!
//! This crate is the contract between every Kanal implementation: the protobuf
//! schemas (`schemas/kanal.proto`, compiled into [`pb`]), the length-prefixed
//! [`frame`] codec, the protocol [`limits`], ALPN ids, the QUIC close and reset
//! codes in [`codes`], the [`address`] grammar, and (feature `device`) the
//! device profile in `device`. Without the `std` feature only the
//! allocation-free parts remain (limits, codes, ALPN ids, the device
//! profile), for firmware. `PROTOCOL.md` beside this
//! crate explains how the pieces fit together on the wire.
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "std")]
pub mod address;
#[cfg(feature = "std")]
mod body;
pub mod codes;
#[cfg(feature = "device")]
pub mod device;
#[cfg(feature = "std")]
pub mod frame;
#[cfg(feature = "tokio")]
pub mod io;
pub mod limits;
#[cfg(feature = "std")]
pub mod question;

/// Protobuf messages of protocol version 1, generated from `schemas/kanal.proto`.
#[cfg(feature = "std")]
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/kanal.v1.rs"));
}

/// Protobuf messages of the server-to-server protocol, version 1
/// (`schemas/federation.proto`, FEDERATION.md).
#[cfg(feature = "std")]
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod fed {
    include!(concat!(env!("OUT_DIR"), "/kanal.fed.v1.rs"));
}

/// The federation protocol version this crate describes, sent in `Open.version`.
pub const FEDERATION_VERSION: u32 = 1;

/// The protocol version this crate describes, sent in `Hello.version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// ALPN id of client-to-server connections.
pub const ALPN_CLIENT: &[u8] = b"kanal/1";

/// ALPN id of server-to-server (federation) connections.
pub const ALPN_FEDERATION: &[u8] = b"kanal-fed/1";

/// The UDP port a server listens on when none is configured.
pub const DEFAULT_PORT: u16 = 7447;

/// The UDP port a server's device gateway (`DEVICES.md`) listens on when
/// none is configured.
pub const DEFAULT_DEVICE_PORT: u16 = 7448;

/// Default UDP port of the federation endpoint (`kanal-fed/1`).
pub const DEFAULT_FEDERATION_PORT: u16 = 7449;
