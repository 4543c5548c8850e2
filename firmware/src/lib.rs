//! Kanal for devices: `#![no_std]`, no allocator.
//!
//! A product opens a service conversation by itself ("filter clogged,
//! E42", diagnostics attached), receives the agent's answer and shows it.
//! The core is the sans-IO [`DeviceSession`]: feed it received datagrams
//! and the time, take datagrams to send and the next deadline. It speaks
//! the device profile of `kanal-proto` (`proto/DEVICES.md`): postcard
//! frames in a Noise `IK_25519_ChaChaPoly_BLAKE2s` session (clatter) inside
//! a WireGuard-style datagram wrapper.
//!
//! Adapters, each behind a feature: `nal` drives a session over an
//! embedded-nal UDP stack; `hal` waits with an embedded-hal `DelayNs` and
//! wires a service button and a notification LED; `std` drives it over a
//! `std::net::UdpSocket` on a host with an operating system (and is what
//! the fleet simulator and the tests run). Logging goes through
//! `defmt` or `log` (feature of that name), or nowhere.
#![no_std]

mod fmt;

pub mod adapters;
mod config;
mod crypto;
mod event;
mod outbox;
pub mod session;
pub mod snapshot;
pub mod time;

pub use kanal_proto::device::{self as profile, Choice, Diagnostic, Message};
pub use kanal_proto::limits;
pub use kanal_proto::{ALPN_CLIENT, PROTOCOL_VERSION};
pub use session::{DatagramError, DeviceConfig, DeviceSession, Event, SendError, TransmitError};
pub use snapshot::SnapshotError;
pub use time::Instant;
