//! Devices: products that speak the device profile (`proto/DEVICES.md`).
//! Each is registered by its maker with its static public key, and is a
//! party of kind [`PartyKind::Device`](super::PartyKind::Device) whose
//! conversations land in one inbox.

use super::party::PartyId;

/// A registered device, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its static X25519 public key: how the gateway knows it.
    pub key: [u8; 32],
    /// Its party (its address is `serial@domain`).
    pub party: PartyId,
    /// The maker's serial number.
    pub serial: String,
    /// The maker's model name.
    pub model: String,
    /// The inbox its conversations land in.
    pub inbox: PartyId,
    /// The account of its owner, who sees its conversations, if linked.
    pub owner: Option<PartyId>,
    /// When it was revoked (ms since the Unix epoch): its handshakes are
    /// refused from then on.
    pub revoked_at_ms: Option<i64>,
    /// The highest handshake initiation counter accepted from it (a
    /// replayed initiation is not above it).
    pub last_initiation: u32,
    /// When it was registered, ms since the Unix epoch.
    pub added_at_ms: i64,
}

/// A device to register (its party exists already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// Its static X25519 public key.
    pub key: [u8; 32],
    /// Its party.
    pub party: PartyId,
    /// The maker's serial number.
    pub serial: String,
    /// The maker's model name.
    pub model: String,
    /// The inbox its conversations land in.
    pub inbox: PartyId,
    /// Its owner's account, if any.
    pub owner: Option<PartyId>,
}
