//! Invite codes: how an operator lets chosen people register on a server
//! that registers by invitation. Only a code's SHA-256 hash is stored.

/// An invite as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Row id, by which the operator revokes it.
    pub id: i64,
    /// Registrations it still allows.
    pub uses_left: u32,
    /// When it stops working, ms since the Unix epoch; `None`: never.
    pub expires_at_ms: Option<i64>,
    /// When it was issued.
    pub created_at_ms: i64,
    /// The operator's note (who it is for).
    pub note: String,
}

/// An invite to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    /// SHA-256 of the code.
    pub code_hash: [u8; 32],
    /// Registrations it allows (at least 1).
    pub uses: u32,
    /// When it stops working; `None`: never.
    pub expires_at_ms: Option<i64>,
    /// The operator's note.
    pub note: String,
}
