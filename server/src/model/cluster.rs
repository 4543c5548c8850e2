//! Several nodes on one database, as each says of itself.

/// One node, as it last reported itself (every few seconds while it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// A random id, new each time the node starts.
    pub id: i64,
    /// The host it runs on.
    pub host: String,
    /// The UDP address its clients connect to.
    pub listen: String,
    /// When it started, ms since the Unix epoch.
    pub started_at_ms: i64,
    /// When it last reported, ms since the Unix epoch.
    pub seen_at_ms: i64,
    /// Whether it was connected to NATS then.
    pub nats_connected: bool,
    /// Client sessions it served then.
    pub sessions: u64,
    /// Batches it has committed since it started.
    pub batches: u64,
    /// Batches it had to apply again because another node wrote first.
    pub conflicts: u64,
}

/// Slots conversations fall into; nodes hold leases on slots.
pub const SLOTS: u32 = 64;

/// Who holds a slot's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLease {
    /// The slot, `0..SLOTS`.
    pub slot: u32,
    /// The node holding it ([`NodeStatus::id`]), if its lease runs.
    pub owner: Option<i64>,
}
