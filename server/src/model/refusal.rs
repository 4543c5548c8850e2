//! Why the server refuses a command: a typed code every link can render,
//! and a message for people.

/// What kind of refusal; each link maps it to its own wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RefusalCode {
    /// A field is missing or invalid.
    BadRequest,
    /// An address is malformed.
    InvalidAddress,
    /// The client speaks a protocol version this server does not.
    UnsupportedVersion,
    /// Wrong address, password or resume token.
    Unauthenticated,
    /// This server does not allow self-registration.
    RegistrationClosed,
    /// The address exists already.
    AddressTaken,
    /// The conversation or party does not exist, or the caller may not see it.
    NotFound,
    /// A field exceeds its size limit.
    TooLarge,
    /// The party is on a server this one cannot reach.
    RemoteUnreachable,
    /// Too many attempts; `Refusal::retry_after` says when to try again.
    RateLimited,
    /// Registration by invitation without a valid invite code.
    InvalidInvite,
    /// The server failed; retrying later may succeed.
    Internal,
    /// A service-desk request by a party that does not answer for the
    /// conversation's inbox.
    NotAnAgent,
    /// A service-desk change that does not apply now.
    InvalidState,
    /// An answer that fits no question of its conversation.
    InvalidAnswer,
    /// Another server's transaction speaks for a party, or orders a
    /// conversation, that is not its own (FEDERATION.md §6).
    ForgedOrigin,
    /// A replicated message whose seq is not the conversation's next.
    OutOfOrder,
}

/// A refused command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{code:?}: {message}")]
pub struct Refusal {
    /// What kind.
    pub code: RefusalCode,
    /// For people.
    pub message: String,
    /// With [`RefusalCode::RateLimited`]: how long until the same attempt
    /// can succeed.
    pub retry_after: Option<std::time::Duration>,
}

impl Refusal {
    /// A refusal of `code` saying `message`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Too many attempts at `what`; the same one succeeds after `wait`.
    pub fn rate_limited(what: &str, wait: std::time::Duration) -> Self {
        // Whole seconds for people, rounded up; exact for programs.
        let secs = wait.as_millis().div_ceil(1000).max(1);
        Self {
            code: RefusalCode::RateLimited,
            message: format!("{what}; retry in {secs} s"),
            retry_after: Some(wait),
        }
    }

    /// The server failed; the caller may retry.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::Internal, message)
    }
}
