//! The directory as operators change it (`kanald user|agent|inbox …`):
//! each change goes through the node's writer, ordered with every message.
//! A running server takes them over its admin socket (`links::admin`); with
//! none running, the command starts a node of its own on the data directory.

use kanal_proto::address::Address;

use super::accounts::{check_password, create_party};
use super::{Node, auth};
use crate::core::engine::{Command, Reply};
use crate::model::{Device, Invite, NewDevice, NewInvite, NewParty, Party, PartyKind, Refusal};
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

/// Sets up (or changes) an inbox's service desk, from the moment this
/// returns: its conversations get tickets and are routed to its agents.
pub(crate) async fn configure_desk(
    node: &Node,
    inbox_local: &str,
    mut config: Box<crate::core::desk::DeskConfig>,
    names: &DeskNames,
) -> Result<Party, AdminError> {
    let inbox_address = Address::new(inbox_local, &node.domain)?;
    let inbox = match node.store.party_by_address(&inbox_address).await? {
        Some(p) if p.kind == PartyKind::Inbox => p,
        _ => return Err(AdminError::NotAnInbox(inbox_address)),
    };
    // Canned responses are changed on their own (`kanald inbox canned`):
    // setting the desk up again keeps them, and its teams unless it names
    // teams of its own.
    if let Some(current) = desk_config(node, inbox.id).await? {
        config.canned = current.canned;
        if names.teams.is_empty() {
            config.teams = current.teams;
        }
    }
    let agents = node.store.inbox_agents(inbox.id).await?;
    for (team, members) in &names.teams {
        if team.is_empty() || team.len() > kanal_proto::limits::MAX_LABEL {
            return Err(AdminError::Invalid(format!(
                "--team {team:?}: a team's name is 1 to {} bytes",
                kanal_proto::limits::MAX_LABEL
            )));
        }
        let mut ids = Vec::with_capacity(members.len());
        for local in members {
            let address = Address::new(local, &node.domain)?;
            match node.store.party_by_address(&address).await? {
                Some(p) if agents.contains(&p.id) => ids.push(p.id),
                _ => {
                    return Err(AdminError::Invalid(format!(
                        "--team {team}: {address} is not an agent of {inbox_address}"
                    )));
                }
            }
        }
        config.teams.insert(team.clone(), ids);
    }
    if let Some(to) = &config.sla.escalation.to_team
        && !config.teams.contains_key(to)
    {
        return Err(AdminError::Invalid(format!(
            "--escalate-to-team {to}: {inbox_address} has no team {to} (--team {to}=agent,…)"
        )));
    }
    if let Some(local) = &names.first_responder {
        let address = Address::new(local, &node.domain)?;
        match node.store.party_by_address(&address).await? {
            Some(p) if p.kind == PartyKind::Bot => config.settings.first_responder = Some(p.id),
            _ => {
                return Err(AdminError::Invalid(format!(
                    "--first-responder: {address} is not a bot (kanald bot add)"
                )));
            }
        }
    }
    let named = named_by(node, &config).await?;
    let command = Command::ConfigureDesk {
        inbox: inbox.clone(),
        config,
        named,
    };
    match node.writer.submit(command).await {
        Reply::Refused(refusal) => Err(refusal.into()),
        _ => Ok(inbox),
    }
}

/// Sets up an inbox's service desk with `routing` and otherwise the
/// defaults (always open, no SLA targets): `kanald inbox desk LOCAL
/// --routing …` without its other options.
pub async fn set_up_desk(
    node: &Node,
    inbox_local: &str,
    routing: crate::model::Routing,
) -> Result<Party, AdminError> {
    let mut config = crate::core::desk::DeskConfig::default();
    config.settings.routing = routing;
    configure_desk(node, inbox_local, Box::new(config), &DeskNames::default()).await
}

/// The parties a desk configuration names (its first responder), which
/// the engine renders its entries with.
async fn named_by(
    node: &Node,
    config: &crate::core::desk::DeskConfig,
) -> Result<Vec<Party>, AdminError> {
    let mut named = Vec::new();
    if let Some(bot) = config.settings.first_responder
        && let Some(party) = node.store.party_by_id(bot).await?
    {
        named.push(party);
    }
    Ok(named)
}

/// The configuration of `inbox`'s desk as stored; `None` if it has none.
async fn desk_config(
    node: &Node,
    inbox: crate::model::PartyId,
) -> Result<Option<crate::core::desk::DeskConfig>, AdminError> {
    let stored = node.store.desk(inbox).await?;
    stored
        .settings
        .map(|json| crate::core::desk::DeskConfig::from_json(&json))
        .transpose()
        .map_err(|e| AdminError::Store(StoreError::Corrupt(e)))
}

/// Adds, replaces or (with `text` `None`) removes canned response `name`
/// of `inbox_local`'s desk.
pub(crate) async fn set_canned(
    node: &Node,
    inbox_local: &str,
    name: &str,
    text: Option<String>,
) -> Result<Party, AdminError> {
    use kanal_proto::limits::{MAX_LABEL, MAX_TEXT};
    if name.is_empty() || name.len() > MAX_LABEL || name.chars().any(char::is_whitespace) {
        return Err(AdminError::Invalid(format!(
            "canned response name {name:?}: 1 to {MAX_LABEL} bytes, no spaces"
        )));
    }
    if let Some(text) = &text
        && (text.trim().is_empty() || text.len() > MAX_TEXT)
    {
        return Err(AdminError::Invalid(format!(
            "canned response {name}: its text is 1 to {MAX_TEXT} bytes"
        )));
    }
    let inbox_address = Address::new(inbox_local, &node.domain)?;
    let inbox = match node.store.party_by_address(&inbox_address).await? {
        Some(p) if p.kind == PartyKind::Inbox => p,
        _ => return Err(AdminError::NotAnInbox(inbox_address)),
    };
    let Some(mut config) = desk_config(node, inbox.id).await? else {
        return Err(AdminError::Invalid(format!(
            "{inbox_address} has no desk: set it up first (kanald inbox desk {inbox_local})"
        )));
    };
    match text {
        Some(text) => {
            config.canned.insert(name.to_owned(), text);
        }
        None => {
            if config.canned.remove(name).is_none() {
                return Err(AdminError::Invalid(format!(
                    "{inbox_address} has no canned response {name}"
                )));
            }
        }
    }
    let named = named_by(node, &config).await?;
    let command = Command::ConfigureDesk {
        inbox: inbox.clone(),
        config: Box::new(config),
        named,
    };
    match node.writer.submit(command).await {
        Reply::Refused(refusal) => Err(refusal.into()),
        _ => Ok(inbox),
    }
}

/// Sets how many open or pending conversations agent `agent_local` holds
/// at once at `inbox_local`'s desk (`None`: the inbox's `--capacity`);
/// routing runs again at once, so a raised capacity takes from the queue.
/// Returns the agent.
pub async fn set_capacity(
    node: &Node,
    inbox_local: &str,
    agent_local: &str,
    capacity: Option<u32>,
) -> Result<Party, AdminError> {
    let inbox_address = Address::new(inbox_local, &node.domain)?;
    let inbox = match node.store.party_by_address(&inbox_address).await? {
        Some(p) if p.kind == PartyKind::Inbox => p,
        _ => return Err(AdminError::NotAnInbox(inbox_address)),
    };
    if desk_config(node, inbox.id).await?.is_none() {
        return Err(AdminError::Invalid(format!(
            "{inbox_address} has no desk: set it up first (kanald inbox desk {inbox_local})"
        )));
    }
    let address = Address::new(agent_local, &node.domain)?;
    let agent = match node.store.party_by_address(&address).await? {
        Some(p) if node.store.inbox_agents(inbox.id).await?.contains(&p.id) => p,
        _ => {
            return Err(AdminError::Invalid(format!(
                "{address} does not answer for {inbox_address} (kanald agent add {agent_local} --inbox {inbox_local})"
            )));
        }
    };
    let command = Command::SetCapacity {
        agent: agent.clone(),
        inbox,
        capacity,
    };
    match node.writer.submit(command).await {
        Reply::Refused(refusal) => Err(refusal.into()),
        _ => Ok(agent),
    }
}

/// A desk's parties by local part, as the operator names them: resolved
/// to ids when the desk is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeskNames {
    /// Teams by name, with their members (agents of the inbox).
    pub teams: std::collections::BTreeMap<String, Vec<String>>,
    /// The bot that owns every new conversation first.
    pub first_responder: Option<String>,
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

/// A device to register, as an operator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The maker's serial number; the device's address is its lowercase
    /// form `@domain`.
    pub serial: String,
    /// The maker's model name.
    pub model: String,
    /// Its static X25519 public key.
    pub key: [u8; 32],
    /// Local part of the inbox its conversations land in.
    pub inbox: String,
    /// Local part of its owner's account, if linked.
    pub owner: Option<String>,
}

/// Longest model name, in bytes.
pub const MAX_MODEL: usize = 64;

/// Registers a device: creates its party (`serial@domain`, kind device)
/// and its registry row; from then its handshakes are accepted.
pub async fn add_device(node: &Node, spec: DeviceSpec) -> Result<Device, AdminError> {
    if spec.model.is_empty() || spec.model.len() > MAX_MODEL {
        return Err(AdminError::Invalid(format!(
            "device {}: a model name is 1 to {MAX_MODEL} bytes",
            spec.serial
        )));
    }
    let address = Address::new(&spec.serial.to_ascii_lowercase(), &node.domain)?;
    let inbox = inbox_named(node, &spec.inbox).await?;
    let owner = match &spec.owner {
        Some(local) => Some(account_named(node, local).await?.id),
        None => None,
    };
    if node.devices.get(&spec.key).is_some() {
        return Err(StoreError::DeviceTaken(format!(
            "device {}: its key is registered already",
            spec.serial
        ))
        .into());
    }
    let party = match node.store.party_by_address(&address).await? {
        // A party left by a registration that failed half-way.
        Some(p) if p.kind == PartyKind::Device && node.devices.get_by_party(p.id).is_none() => p,
        Some(p) => {
            return Err(StoreError::DeviceTaken(format!(
                "device {}: {} exists already as a {}",
                spec.serial,
                p.address,
                crate::links::admin::kind_name(p.kind)
            ))
            .into());
        }
        None => {
            let party = NewParty {
                address,
                kind: PartyKind::Device,
                display_name: format!("{} {}", spec.model, spec.serial),
                password_hash: None,
            };
            create_party(node, party).await?
        }
    };
    let device = NewDevice {
        key: spec.key,
        party: party.id,
        serial: spec.serial,
        model: spec.model,
        inbox: inbox.id,
        owner,
    };
    let stored = node
        .store
        .add_device(device, super::writer::now_ms())
        .await?;
    node.devices.put(stored.clone());
    Ok(stored)
}

/// Revokes the device with `serial`: its handshakes and sessions are
/// refused from now on (its conversations stay).
pub async fn revoke_device(node: &Node, serial: &str) -> Result<Device, AdminError> {
    if !node
        .store
        .revoke_device(serial, super::writer::now_ms())
        .await?
    {
        return Err(AdminError::Invalid(format!(
            "no device {serial}, or it is revoked already"
        )));
    }
    reread_device(node, serial).await
}

/// Trusts the server for `domain`, listening at `address` (`host:port`;
/// empty: found by DNS SRV), whose certificate has the SHA-256
/// `fingerprint` (hex, colons allowed; empty: trusted by WebPKI): added,
/// or replaced if it was a peer already.
pub async fn add_peer(
    node: &Node,
    domain: &str,
    address: &str,
    fingerprint: &str,
) -> Result<crate::model::PeerRecord, AdminError> {
    kanal_proto::address::validate_domain(domain)?;
    if domain == node.domain {
        return Err(AdminError::Invalid(format!(
            "{domain} is this server's own domain"
        )));
    }
    // Empty: found by DNS SRV (FEDERATION.md §2).
    if !address.is_empty()
        && !address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
    {
        return Err(AdminError::Invalid(format!(
            "address `{address}`: give it as HOST:PORT, or none to find it by DNS SRV"
        )));
    }
    // Empty: trusted by WebPKI.
    let fingerprint = fingerprint.replace(':', "").to_ascii_lowercase();
    if !fingerprint.is_empty()
        && (fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(AdminError::Invalid(format!(
            "fingerprint `{fingerprint}`: give the peer's SHA-256 as 64 hex digits \
             (`kanald fingerprint` on the peer)"
        )));
    }
    if address.is_empty() && fingerprint.is_empty() {
        return Err(AdminError::Invalid(format!(
            "give {domain} an address, a fingerprint or both: with neither, it is found by DNS \
             SRV and trusted by WebPKI (`federation_webpki = true`) without being added"
        )));
    }
    let peer = crate::model::PeerRecord {
        domain: domain.to_owned(),
        address: address.to_owned(),
        fingerprint,
        added_at_ms: super::writer::now_ms(),
    };
    node.store.put_peer(&peer).await?;
    node.federation.peers.reload(node.store.as_ref()).await?;
    Ok(peer)
}

/// Links the device with `serial` to the account `owner` (`None`:
/// unlinks it): the conversations it opens from now on include its owner.
pub async fn link_device(
    node: &Node,
    serial: &str,
    owner: Option<&str>,
) -> Result<Device, AdminError> {
    let owner = match owner {
        Some(local) => Some(account_named(node, local).await?.id),
        None => None,
    };
    if !node.store.link_device(serial, owner).await? {
        return Err(AdminError::Invalid(format!("no device {serial}")));
    }
    reread_device(node, serial).await
}

/// The device with `serial` as the store holds it, recorded in the
/// registry.
async fn reread_device(node: &Node, serial: &str) -> Result<Device, AdminError> {
    let device = node
        .store
        .devices()
        .await?
        .into_iter()
        .find(|d| d.serial == serial)
        .ok_or_else(|| AdminError::Invalid(format!("no device {serial}")))?;
    node.devices.put(device.clone());
    Ok(device)
}

/// The inbox `local@domain`.
async fn inbox_named(node: &Node, local: &str) -> Result<Party, AdminError> {
    let address = Address::new(local, &node.domain)?;
    match node.store.party_by_address(&address).await? {
        Some(p) if p.kind == PartyKind::Inbox => Ok(p),
        _ => Err(AdminError::NotAnInbox(address)),
    }
}

/// The user account `local@domain` (a device's owner).
async fn account_named(node: &Node, local: &str) -> Result<Party, AdminError> {
    let address = Address::new(local, &node.domain)?;
    match node.store.party_by_address(&address).await? {
        Some(p) if p.kind == PartyKind::User => Ok(p),
        Some(p) => Err(AdminError::WrongKind {
            address,
            kind: p.kind,
        }),
        None => Err(AdminError::Invalid(format!("no account {address}"))),
    }
}
