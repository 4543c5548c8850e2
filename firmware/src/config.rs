//! What a device is configured with: its keys and its patience.

/// What a device needs to talk to its server, and how patiently.
#[derive(Clone)]
pub struct DeviceConfig {
    /// The device's static X25519 private key (generated at manufacture).
    pub device_secret: [u8; 32],
    /// The server's static X25519 public key.
    pub server_public: [u8; 32],
    /// Wait before the first retransmission of a request or a handshake, in
    /// milliseconds. Default 1,000.
    pub retransmit_initial_ms: u32,
    /// Longest wait between retransmissions (the backoff doubles up to it),
    /// in milliseconds. Default 64,000.
    pub retransmit_max_ms: u32,
    /// Start a new handshake once this many datagrams were sent in the
    /// session. Default 2²⁰.
    pub rekey_after_messages: u64,
    /// Start a new handshake once the session is this old, in milliseconds.
    /// Default 900,000 (15 minutes).
    pub rekey_after_ms: u64,
    /// Retransmissions without any authenticated answer after which the
    /// session is presumed lost (the server restarted) and a new handshake
    /// starts. Default 3.
    pub silent_retransmits: u16,
}

impl DeviceConfig {
    /// A configuration with the default timings.
    pub const fn new(device_secret: [u8; 32], server_public: [u8; 32]) -> Self {
        Self {
            device_secret,
            server_public,
            retransmit_initial_ms: 1_000,
            retransmit_max_ms: 64_000,
            rekey_after_messages: 1 << 20,
            rekey_after_ms: 900_000,
            silent_retransmits: 3,
        }
    }
}
