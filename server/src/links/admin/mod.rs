//! The local admin link: a Unix socket in the data directory
//! ([`SOCKET_FILE`], mode 0600) on which a running server takes operator
//! commands, so that `kanald user|agent|inbox …` changes the directory
//! through the server's writer, in order with every message.
//!
//! The wire format is one JSON object per line each way: an
//! [`AdminRequest`], answered by one [`AdminResponse`].

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::model::{Device, Invite, Party, PartyKind};
use crate::node::{Node, directory};

mod peers;

pub(crate) use peers::{PeerInfo, UndeliveredInfo};

/// The socket's file name in the data directory.
pub(crate) const SOCKET_FILE: &str = "admin.sock";

/// Longest request line accepted, in bytes.
const MAX_LINE: u64 = 64 * 1024;

/// An operator command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum AdminRequest {
    /// Create a user account.
    AddUser {
        /// Local part of the address.
        local: String,
        /// Its password.
        password: String,
        /// Shown to other parties.
        display_name: String,
    },
    /// Make an agent (created if new, with `password`) answer an inbox.
    AddAgent {
        /// Local part of the agent's address.
        local: String,
        /// Local part of the inbox's address.
        inbox: String,
        /// Password of a new agent.
        password: Option<String>,
        /// Shown to other parties.
        display_name: String,
    },
    /// Create an inbox.
    AddInbox {
        /// Local part of the address.
        local: String,
        /// Shown to other parties.
        display_name: String,
    },
    /// Create a bot account (a program, e.g. an inbox's first responder).
    AddBot {
        /// Local part of the address.
        local: String,
        /// Its password.
        password: String,
        /// Shown to other parties.
        display_name: String,
    },
    /// Set up or change an inbox's service desk.
    ConfigureDesk {
        /// Local part of the inbox's address.
        inbox: String,
        /// Routing, hours, SLA targets.
        config: Box<crate::core::desk::DeskConfig>,
        /// Its teams and first responder, by local part.
        #[serde(default)]
        names: directory::DeskNames,
    },
    /// Add, replace or (without text) remove a canned response.
    SetCanned {
        /// Local part of the inbox's address.
        inbox: String,
        /// Its name.
        name: String,
        /// Its text; `None` removes it.
        text: Option<String>,
    },
    /// Set an agent's own capacity at an inbox's desk.
    SetCapacity {
        /// Local part of the inbox's address.
        inbox: String,
        /// Local part of the agent's address.
        agent: String,
        /// Most open or pending conversations; `None`: the inbox's.
        capacity: Option<u32>,
    },
    /// List every party.
    Parties,
    /// Issue an invite code.
    AddInvite {
        /// Registrations it allows.
        uses: u32,
        /// Days it works; forever if absent.
        days: Option<u32>,
        /// Who it is for.
        note: String,
    },
    /// List the invites that still work.
    Invites,
    /// Revoke an invite.
    RevokeInvite {
        /// Its id.
        id: i64,
    },
    /// Register devices (all that are valid; each is reported).
    AddDevices {
        /// The devices.
        devices: Vec<DeviceSpecInfo>,
    },
    /// List the registered devices.
    Devices,
    /// Add or replace a peer server.
    AddPeer {
        /// Its domain.
        domain: String,
        /// Where it listens, `host:port`.
        address: String,
        /// SHA-256 of its certificate, hex.
        fingerprint: String,
    },
    /// Forget a peer server's configuration.
    RemovePeer {
        /// Its domain.
        domain: String,
    },
    /// Every peer, or one, with where delivery to it stands.
    Peers {
        /// Just this one.
        domain: Option<String>,
    },
    /// The transactions toward a peer given up: refused by it, or expired.
    Undelivered {
        /// The peer.
        domain: String,
    },
    /// Queue the transactions toward a peer given up again, in order.
    Replay {
        /// The peer.
        domain: String,
        /// Just this one (its seq).
        seq: Option<u64>,
    },
    /// Revoke a device.
    RevokeDevice {
        /// Its serial.
        serial: String,
    },
    /// Link a device to its owner's account, or unlink it.
    LinkDevice {
        /// Its serial.
        serial: String,
        /// Local part of the owner's account; none: unlink.
        owner: Option<String>,
    },
    /// Write a consistent copy of the database to `to`, an absolute path
    /// that does not exist yet.
    Backup {
        /// Where.
        to: String,
    },
}

/// The answer to an [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum AdminResponse {
    /// The party created or changed.
    Party {
        /// The party.
        party: PartyInfo,
    },
    /// Every party, ordered by address.
    Parties {
        /// The parties.
        parties: Vec<PartyInfo>,
    },
    /// A new invite and its code (shown only now).
    Invite {
        /// The code to hand out.
        code: String,
        /// The invite.
        invite: InviteInfo,
    },
    /// The invites that still work, oldest first.
    Invites {
        /// The invites.
        invites: Vec<InviteInfo>,
    },
    /// The invite is revoked.
    Revoked {
        /// Its id.
        id: i64,
    },
    /// The backup is written.
    BackedUp {
        /// Where.
        to: String,
        /// Its size in bytes.
        bytes: u64,
    },
    /// Devices, as registered now.
    Devices {
        /// The devices.
        devices: Vec<DeviceInfo>,
        /// Why each device that was not registered was refused.
        refused: Vec<String>,
    },
    /// Peers, as configured now, with where delivery to each stands.
    Peers {
        /// The peers.
        peers: Vec<PeerInfo>,
    },
    /// The transactions toward a peer given up, in seq order.
    Undelivered {
        /// The peer.
        peer: String,
        /// The transactions.
        transactions: Vec<UndeliveredInfo>,
    },
    /// The command failed; nothing changed.
    Error {
        /// Why, for the operator.
        message: String,
    },
}

/// An invite as the admin link shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InviteInfo {
    /// Its id, for revoking.
    pub id: i64,
    /// Registrations it still allows.
    pub uses_left: u32,
    /// When it stops working (ms since the Unix epoch), if ever.
    pub expires_at_ms: Option<i64>,
    /// Who it is for.
    pub note: String,
}

impl From<&Invite> for InviteInfo {
    fn from(invite: &Invite) -> Self {
        Self {
            id: invite.id,
            uses_left: invite.uses_left,
            expires_at_ms: invite.expires_at_ms,
            note: invite.note.clone(),
        }
    }
}

/// A device to register, as the admin link carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceSpecInfo {
    /// The maker's serial number.
    pub serial: String,
    /// The model name.
    pub model: String,
    /// Its static public key, 64 hex digits.
    pub key: String,
    /// Local part of the inbox its conversations land in.
    pub inbox: String,
    /// Local part of its owner's account.
    pub owner: Option<String>,
}

/// A registered device as the admin link shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceInfo {
    /// The maker's serial number.
    pub serial: String,
    /// The model name.
    pub model: String,
    /// Its static public key, hex.
    pub key: String,
    /// Its address.
    pub address: String,
    /// Its inbox's address.
    pub inbox: String,
    /// Its owner's address, if linked.
    pub owner: Option<String>,
    /// Whether it is revoked.
    pub revoked: bool,
}

/// A party as the admin link shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartyInfo {
    /// `local@domain`.
    pub address: String,
    /// `user`, `agent`, `bot`, `inbox` or `device`.
    pub kind: String,
    /// Shown to other parties.
    pub display_name: String,
}

impl From<&Party> for PartyInfo {
    fn from(party: &Party) -> Self {
        Self {
            address: party.address.to_string(),
            kind: kind_name(party.kind).to_owned(),
            display_name: party.display_name.clone(),
        }
    }
}

/// A party kind's name.
pub(crate) fn kind_name(kind: PartyKind) -> &'static str {
    match kind {
        PartyKind::User => "user",
        PartyKind::Agent => "agent",
        PartyKind::Bot => "bot",
        PartyKind::Inbox => "inbox",
        PartyKind::Device => "device",
    }
}

/// Binds the admin socket in `data_dir`, replacing a stale one (the caller
/// holds the data directory's lock, so no other server owns it).
pub(crate) fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = data_dir.join(SOCKET_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// Serves operator connections until the listener fails.
pub(crate) async fn serve(listener: UnixListener, node: Arc<Node>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, node.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the admin socket failed");
                return;
            }
        }
    }
}

/// Answers one operator connection's requests, one line each.
async fn serve_connection(stream: UnixStream, node: Arc<Node>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_LINE));
    loop {
        lines.get_mut().set_limit(MAX_LINE);
        let mut line = String::new();
        let (response, last) = match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            // Cut off by the limit (or by the end of the stream).
            Ok(_) if !line.ends_with('\n') => {
                let message = format!("a request is one line of at most {MAX_LINE} bytes");
                (AdminResponse::Error { message }, true)
            }
            Ok(_) => match serde_json::from_str::<AdminRequest>(&line) {
                Ok(request) => (handle(&node, request).await, false),
                Err(e) => {
                    let message = format!("malformed request: {e}");
                    (AdminResponse::Error { message }, false)
                }
            },
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() || last {
            return;
        }
    }
}

/// Carries out one operator command.
pub(crate) async fn handle(node: &Node, request: AdminRequest) -> AdminResponse {
    let result = match request {
        AdminRequest::AddUser {
            local,
            password,
            display_name,
        } => directory::add_account(node, &local, PartyKind::User, &password, &display_name).await,
        AdminRequest::AddAgent {
            local,
            inbox,
            password,
            display_name,
        } => directory::add_agent(node, &local, &inbox, password.as_deref(), &display_name).await,
        AdminRequest::AddInbox {
            local,
            display_name,
        } => directory::add_inbox(node, &local, &display_name).await,
        AdminRequest::SetCanned { inbox, name, text } => {
            directory::set_canned(node, &inbox, &name, text).await
        }
        AdminRequest::SetCapacity {
            inbox,
            agent,
            capacity,
        } => directory::set_capacity(node, &inbox, &agent, capacity).await,
        AdminRequest::AddBot {
            local,
            password,
            display_name,
        } => directory::add_account(node, &local, PartyKind::Bot, &password, &display_name).await,
        AdminRequest::ConfigureDesk {
            inbox,
            config,
            names,
        } => directory::configure_desk(node, &inbox, config, &names).await,
        AdminRequest::Backup { to } => {
            let path = std::path::PathBuf::from(&to);
            if !path.is_absolute() {
                return AdminResponse::Error {
                    message: format!("`{to}`: the backup path must be absolute"),
                };
            }
            return match node.store.backup(&path).await {
                Ok(()) => AdminResponse::BackedUp {
                    bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                    to,
                },
                Err(e) => AdminResponse::Error {
                    message: format!("backup to {to}: {e}"),
                },
            };
        }
        AdminRequest::AddInvite { uses, days, note } => {
            let valid_for = days.map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400));
            return match directory::issue_invite(node, uses, valid_for, &note).await {
                Ok((code, invite)) => AdminResponse::Invite {
                    code,
                    invite: InviteInfo::from(&invite),
                },
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            };
        }
        AdminRequest::Invites => {
            return match node.store.invites(crate::node::writer::now_ms()).await {
                Ok(invites) => AdminResponse::Invites {
                    invites: invites.iter().map(InviteInfo::from).collect(),
                },
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            };
        }
        AdminRequest::RevokeInvite { id } => {
            return match node.store.revoke_invite(id).await {
                Ok(true) => AdminResponse::Revoked { id },
                Ok(false) => AdminResponse::Error {
                    message: format!("no invite {id}"),
                },
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            };
        }
        AdminRequest::AddDevices { devices } => {
            let mut added = Vec::new();
            let mut refused = Vec::new();
            for spec in devices {
                let serial = spec.serial.clone();
                let result = match parse_key(&spec.key) {
                    Ok(key) => {
                        let spec = directory::DeviceSpec {
                            serial: spec.serial,
                            model: spec.model,
                            key,
                            inbox: spec.inbox,
                            owner: spec.owner,
                        };
                        directory::add_device(node, spec)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(device) => added.push(device),
                    Err(e) => refused.push(format!("{serial}: {e}")),
                }
            }
            return devices_response(node, &added, refused).await;
        }
        AdminRequest::AddPeer {
            domain,
            address,
            fingerprint,
        } => return peers::add(node, domain, address, fingerprint).await,
        AdminRequest::RemovePeer { domain } => return peers::remove(node, &domain).await,
        AdminRequest::Peers { domain } => return peers::respond(node, domain.as_deref()).await,
        AdminRequest::Undelivered { domain } => return peers::undelivered(node, &domain).await,
        AdminRequest::Replay { domain, seq } => return peers::replay(node, &domain, seq).await,
        AdminRequest::Devices => {
            return match node.store.devices().await {
                Ok(devices) => devices_response(node, &devices, Vec::new()).await,
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            };
        }
        AdminRequest::RevokeDevice { serial } => {
            return match directory::revoke_device(node, &serial).await {
                Ok(device) => devices_response(node, &[device], Vec::new()).await,
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            };
        }
        AdminRequest::LinkDevice { serial, owner } => {
            return match directory::link_device(node, &serial, owner.as_deref()).await {
                Ok(device) => devices_response(node, &[device], Vec::new()).await,
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            };
        }
        AdminRequest::Parties => {
            return match node.store.parties().await {
                Ok(parties) => AdminResponse::Parties {
                    parties: parties.iter().map(PartyInfo::from).collect(),
                },
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            };
        }
    };
    match result {
        Ok(party) => AdminResponse::Party {
            party: PartyInfo::from(&party),
        },
        Err(e) => AdminResponse::Error {
            message: e.to_string(),
        },
    }
}

/// A device public key from 64 hex digits.
fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| format!("the key `{text}` is not 64 hex digits"))?;
    Ok(key)
}

/// `devices` shown with their parties' addresses.
async fn devices_response(node: &Node, devices: &[Device], refused: Vec<String>) -> AdminResponse {
    let mut shown = Vec::with_capacity(devices.len());
    for device in devices {
        let address = |id| async move {
            match node.store.party_by_id(id).await {
                Ok(Some(party)) => party.address.to_string(),
                _ => format!("party {id}"),
            }
        };
        shown.push(DeviceInfo {
            serial: device.serial.clone(),
            model: device.model.clone(),
            key: hex::encode(device.key),
            address: address(device.party).await,
            inbox: address(device.inbox).await,
            owner: match device.owner {
                Some(owner) => Some(address(owner).await),
                None => None,
            },
            revoked: device.revoked_at_ms.is_some(),
        });
    }
    AdminResponse::Devices {
        devices: shown,
        refused,
    }
}

/// Sends `request` to the server serving `data_dir`; `Ok(None)` when no
/// server listens there.
pub(crate) async fn call(
    data_dir: &Path,
    request: &AdminRequest,
) -> std::io::Result<Option<AdminResponse>> {
    let mut stream = match UnixStream::connect(data_dir.join(SOCKET_FILE)).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut text = serde_json::to_string(request).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(std::io::Error::other)
}
