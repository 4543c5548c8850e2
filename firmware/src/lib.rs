//! Kanal for devices: `#![no_std]`, no allocator.
//!
//! Today this crate only pins the protocol constants a device build needs;
//! the device session (Noise IK over UDP) arrives with the device issue.
#![no_std]

pub use kanal_proto::limits;
pub use kanal_proto::{ALPN_CLIENT, PROTOCOL_VERSION};
