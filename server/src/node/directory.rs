//! The directory as operators change it (`kanald user|agent|inbox …`):
//! each change goes through the node's writer, ordered with every message.
//! A running server takes them over its admin socket (`links::admin`); with
//! none running, the command starts a node of its own on the data directory.

use kanal_proto::address::Address;

use super::accounts::{check_password, create_party};
use super::{Node, auth};
use crate::core::engine::{Command, Reply};
use crate::model::{Invite, NewInvite, NewParty, Party, PartyKind, Refusal};
use crate::store::StoreError;

/// Why an operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A name is malformed.
    #[error(transparent)]
    Name(#[from] kanal_proto::address::NameError),
    /// The server refused the change (the address is taken, the password
    /// too short, …).
    #[error("{}", .0.message)]
    Refused(#[from] Refusal),
    /// A new agent needs a password.
    #[error("{0} does not exist yet: give it a --password")]
    PasswordNeeded(Address),
    /// The named inbox does not exist or is not an inbox.
    #[error("{0} is not an inbox")]
    NotAnInbox(Address),
    /// The party exists with another kind.
    #[error("{address} exists already as a {kind:?}")]
    WrongKind {
        /// The address.
        address: Address,
        /// What it is.
        kind: PartyKind,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] auth::HashError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a party that can log in (user, agent or bot) with a password.
pub async fn add_account(
    node: &Node,
    local: &str,
    kind: PartyKind,
    password: &str,
    display_name: &str,
) -> Result<Party, AdminError> {
    let address = Address::new(local, &node.domain)?;
    check_password(password)?;
    let hash = auth::hash_password(password.to_string()).await?;
    let party = NewParty {
        address,
        kind,
        display_name: display_name.to_string(),
        password_hash: Some(hash),
    };
    Ok(create_party(node, party).await?)
}

/// Most registrations one invite may allow.
pub const MAX_INVITE_USES: u32 = 100_000;

/// Issues an invite code allowing `uses` registrations, for `valid_for`
/// (forever if `None`). Returns the code (shown once; only its hash is
/// kept) and the stored invite.
pub async fn issue_invite(
    node: &Node,
    uses: u32,
    valid_for: Option<std::time::Duration>,
    note: &str,
) -> Result<(String, Invite), AdminError> {
    if !(1..=MAX_INVITE_USES).contains(&uses) {
        return Err(AdminError::Invalid(format!(
            "an invite allows 1 to {MAX_INVITE_USES} registrations, not {uses}"
        )));
    }
    let now = super::writer::now_ms();
    let expires_at_ms =
        valid_for.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    let (code, code_hash) = auth::new_invite_code();
    let invite = NewInvite {
        code_hash,
        uses,
        expires_at_ms,
        note: note.to_string(),
    };
    let stored = node.store.create_invite(invite, now).await?;
    Ok((code, stored))
}

/// Creates an inbox (a service address agents answer for).
pub async fn add_inbox(node: &Node, local: &str, display_name: &str) -> Result<Party, AdminError> {
    let party = NewParty {
        address: Address::new(local, &node.domain)?,
        kind: PartyKind::Inbox,
        display_name: display_name.to_string(),
        password_hash: None,
    };
    Ok(create_party(node, party).await?)
}

/// Makes an agent answer for an inbox, from the moment this returns;
/// creates the agent first when it does not exist yet (it then needs a
/// `password`).
pub async fn add_agent(
    node: &Node,
    local: &str,
    inbox_local: &str,
    password: Option<&str>,
    display_name: &str,
) -> Result<Party, AdminError> {
    let inbox_address = Address::new(inbox_local, &node.domain)?;
    let inbox = match node.store.party_by_address(&inbox_address).await? {
        Some(p) if p.kind == PartyKind::Inbox => p,
        _ => return Err(AdminError::NotAnInbox(inbox_address)),
    };
    let address = Address::new(local, &node.domain)?;
    let agent = match node.store.party_by_address(&address).await? {
        Some(p) if p.kind == PartyKind::Agent => p,
        Some(p) => {
            return Err(AdminError::WrongKind {
                address,
                kind: p.kind,
            });
        }
        None => match password {
            Some(password) => {
                add_account(node, local, PartyKind::Agent, password, display_name).await?
            }
            None => return Err(AdminError::PasswordNeeded(address)),
        },
    };
    let command = Command::AddInboxAgent {
        inbox,
        agent: agent.clone(),
    };
    match node.writer.submit(command).await {
        Reply::Refused(refusal) => Err(refusal.into()),
        _ => Ok(agent),
    }
}
