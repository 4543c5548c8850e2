//! Parties: everyone and everything that takes part in conversations.

use kanal_proto::address::Address;

/// Row id of a party (the engine assigns it, in order).
pub type PartyId = i64;

/// What kind of party an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PartyKind {
    /// A customer or any other person with an account.
    User,
    /// A person who answers an inbox's conversations.
    Agent,
    /// A program that takes part in conversations.
    Bot,
    /// A service address (`support@domain`) that agents answer for.
    Inbox,
    /// A product that speaks the device profile.
    Device,
}

impl PartyKind {
    /// Stable number stored in the database.
    pub const fn as_i64(self) -> i64 {
        match self {
            PartyKind::User => 1,
            PartyKind::Agent => 2,
            PartyKind::Bot => 3,
            PartyKind::Inbox => 4,
            PartyKind::Device => 5,
        }
    }

    /// The kind for a stored number.
    pub const fn from_i64(value: i64) -> Option<Self> {
        Some(match value {
            1 => PartyKind::User,
            2 => PartyKind::Agent,
            3 => PartyKind::Bot,
            4 => PartyKind::Inbox,
            5 => PartyKind::Device,
            _ => return None,
        })
    }

    /// Whether this kind logs in and receives events itself (inboxes do not:
    /// their agents receive their events).
    pub const fn has_session(self) -> bool {
        !matches!(self, PartyKind::Inbox)
    }
}

impl std::str::FromStr for PartyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "user" => PartyKind::User,
            "agent" => PartyKind::Agent,
            "bot" => PartyKind::Bot,
            "inbox" => PartyKind::Inbox,
            "device" => PartyKind::Device,
            other => return Err(format!("unknown party kind `{other}`")),
        })
    }
}

/// A party known to this server: one of its own, or (once federation
/// exists) a party of another server that takes part in a conversation
/// here, known by its address, whose domain is that server's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Party {
    /// Row id on this server.
    pub id: PartyId,
    /// `local@domain`.
    #[serde(with = "super::text")]
    pub address: Address,
    /// What it is.
    pub kind: PartyKind,
    /// Shown to other parties.
    pub display_name: String,
}

impl Party {
    /// Whether the party's home is the server for `domain` (otherwise it is
    /// a remote party, whose own server hosts its account).
    pub fn is_local(&self, domain: &str) -> bool {
        self.address.domain() == domain
    }
}

/// A party to create.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewParty {
    /// `local@domain`.
    #[serde(with = "super::text")]
    pub address: Address,
    /// What it is.
    pub kind: PartyKind,
    /// Shown to other parties.
    pub display_name: String,
    /// Argon2id PHC string; `None` for parties that cannot log in (inboxes,
    /// remote parties).
    pub password_hash: Option<String>,
}

/// A logged-in session, found by its resume token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Row id.
    pub id: i64,
    /// Who it belongs to.
    pub party: PartyId,
    /// Highest event seq the session acknowledged.
    pub acked_seq: u64,
}
