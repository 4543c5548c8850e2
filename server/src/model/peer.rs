//! Peer servers: the other Kanal servers this one federates with, as the
//! operator configured them.

/// A peer server as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerRecord {
    /// The peer's domain: the part after `@` of its parties' addresses.
    pub domain: String,
    /// Where it is reached, `host:port`.
    pub address: String,
    /// SHA-256 of the certificate it must present, in lowercase hex.
    pub fingerprint: String,
    /// When the operator added it, ms since the Unix epoch.
    pub added_at_ms: i64,
}
