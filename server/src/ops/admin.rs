//! Operator actions behind `kanald user|agent|inbox ...`, usable while the
//! server runs (SQLite allows a second process; the writer notices directory
//! changes at its next batch).

use kanal_proto::address::Address;

use crate::model::{NewParty, Party, PartyKind};
use crate::node::auth;
use crate::store::{Store, StoreError};

/// Why an operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A name is malformed.
    #[error(transparent)]
    Name(#[from] kanal_proto::address::NameError),
    /// The password is too short.
    #[error(
        "the password needs at least {} characters",
        kanal_proto::limits::MIN_PASSWORD
    )]
    WeakPassword,
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
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] auth::HashError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a party that can log in (user, agent or bot) with a password.
pub async fn add_account(
    store: &dyn Store,
    domain: &str,
    local: &str,
    kind: PartyKind,
    password: &str,
    display_name: &str,
) -> Result<Party, AdminError> {
    let address = Address::new(local, domain)?;
    if password.chars().count() < kanal_proto::limits::MIN_PASSWORD {
        return Err(AdminError::WeakPassword);
    }
    let hash = auth::hash_password(password.to_string()).await?;
    Ok(store
        .create_party(NewParty {
            address,
            kind,
            display_name: display_name.to_string(),
            password_hash: Some(hash),
        })
        .await?)
}

/// Creates an inbox (a service address agents answer for).
pub async fn add_inbox(
    store: &dyn Store,
    domain: &str,
    local: &str,
    display_name: &str,
) -> Result<Party, AdminError> {
    let address = Address::new(local, domain)?;
    Ok(store
        .create_party(NewParty {
            address,
            kind: PartyKind::Inbox,
            display_name: display_name.to_string(),
            password_hash: None,
        })
        .await?)
}

/// Makes an existing agent answer for an inbox; creates the agent first when
/// `password` is given and it does not exist yet.
pub async fn add_agent(
    store: &dyn Store,
    domain: &str,
    local: &str,
    inbox_local: &str,
    password: Option<&str>,
    display_name: &str,
) -> Result<Party, AdminError> {
    let inbox_address = Address::new(inbox_local, domain)?;
    let inbox = match store.party_by_address(&inbox_address).await? {
        Some(p) if p.kind == PartyKind::Inbox => p,
        _ => return Err(AdminError::NotAnInbox(inbox_address)),
    };
    let address = Address::new(local, domain)?;
    let agent = match store.party_by_address(&address).await? {
        Some(p) if p.kind == PartyKind::Agent => p,
        Some(p) => {
            return Err(AdminError::WrongKind {
                address,
                kind: p.kind,
            });
        }
        None => match password {
            Some(password) => {
                add_account(
                    store,
                    domain,
                    local,
                    PartyKind::Agent,
                    password,
                    display_name,
                )
                .await?
            }
            None => return Err(AdminError::WeakPassword),
        },
    };
    store.add_inbox_agent(inbox.id, agent.id).await?;
    Ok(agent)
}
