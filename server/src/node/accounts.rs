//! Accounts, the same for every link: registering, logging in with a
//! password, and resuming a session by its token. A new account is created
//! by the writer, in order with every other change.

use std::net::IpAddr;

use kanal_proto::address::Address;
use kanal_proto::limits as wire;

use super::Node;
use super::{auth, limits};
use crate::core::engine::{Command, Reply};
use crate::model::{NewParty, Party, PartyId, PartyKind, Refusal, RefusalCode};
use crate::store::StoreError;

/// What a client proves itself with.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// Create an account `local@DOMAIN`.
    Register {
        /// The local part of the new address.
        local: String,
        /// Its password.
        password: String,
        /// Shown to other parties.
        display_name: String,
        /// The operator's invite code (needed when registration is by
        /// invitation; may be empty otherwise).
        invite: String,
    },
    /// Log in with a password.
    Password {
        /// `local@domain`, as the client typed it.
        address: String,
        /// The password.
        password: String,
    },
    /// Resume an earlier session.
    Resume {
        /// The resume token a Welcome gave.
        token: String,
    },
}

/// An authenticated session.
#[derive(Debug)]
pub(crate) struct Authenticated {
    /// Who.
    pub party: Party,
    /// The session's row id.
    pub session: i64,
    /// The resume token (new for a login, the same for a resume).
    pub token: String,
    /// Highest event seq the session acknowledged.
    pub acked_seq: u64,
    /// The connection's place among the account's connections, taken
    /// before any session row is written and held while this lives.
    pub _seat: limits::Seat<PartyId>,
}

/// Checks `credentials` and opens (or resumes) a session; `client` names
/// the client software, for the operator.
pub(crate) async fn authenticate(
    node: &Node,
    credentials: Credentials,
    client: &str,
    source: IpAddr,
) -> Result<Authenticated, Refusal> {
    match credentials {
        Credentials::Register {
            local,
            password,
            display_name,
            invite,
        } => {
            let new = NewAccount {
                local,
                password,
                display_name,
                invite,
            };
            register(node, new, client, source).await
        }
        Credentials::Password { address, password } => {
            password_login(node, &address, password, client, source).await
        }
        Credentials::Resume { token } => resume(node, &token).await,
    }
}

/// The refusal of a password that breaks the length rules.
pub(crate) fn check_password(password: &str) -> Result<(), Refusal> {
    if password.chars().count() < wire::MIN_PASSWORD {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            format!(
                "the password needs at least {} characters",
                wire::MIN_PASSWORD
            ),
        ));
    }
    if password.len() > wire::MAX_PASSWORD {
        return Err(Refusal::new(RefusalCode::TooLarge, "password too long"));
    }
    Ok(())
}

/// Creates a party through the writer, in order with every other change.
pub(crate) async fn create_party(node: &Node, party: NewParty) -> Result<Party, Refusal> {
    match node.writer.submit(Command::AddParty(party)).await {
        Reply::Party(party) => Ok(party),
        Reply::Refused(refusal) => Err(refusal),
        other => Err(Refusal::internal(format!("unexpected reply {other:?}"))),
    }
}

/// What a Register asks for.
struct NewAccount {
    local: String,
    password: String,
    display_name: String,
    invite: String,
}

/// Creates an account for a client. Checked cheapest first: the policy,
/// the fields, the source's and everyone's registration budget, the invite
/// (taken only now, and given back if the account cannot be created), and
/// only then the password hash.
async fn register(
    node: &Node,
    new: NewAccount,
    client: &str,
    source: IpAddr,
) -> Result<Authenticated, Refusal> {
    if node.policy.registration == limits::Registration::Closed {
        return Err(Refusal::new(
            RefusalCode::RegistrationClosed,
            "this server does not allow registration",
        ));
    }
    let address = Address::new(&new.local, &node.domain)
        .map_err(|e| Refusal::new(RefusalCode::InvalidAddress, e.to_string()))?;
    check_password(&new.password)?;
    if new.display_name.len() > wire::MAX_DISPLAY_NAME {
        return Err(Refusal::new(RefusalCode::TooLarge, "display name too long"));
    }
    node.limits.register(source)?;
    let invite = match node.policy.registration {
        limits::Registration::Invite => Some(take_invite(node, &new.invite).await?),
        _ => None,
    };
    let created = async {
        let hash = auth::hash_password(new.password)
            .await
            .map_err(|e| Refusal::internal(e.to_string()))?;
        create_party(
            node,
            NewParty {
                address,
                kind: PartyKind::User,
                display_name: new.display_name,
                password_hash: Some(hash),
            },
        )
        .await
    }
    .await;
    let party = match created {
        Ok(party) => party,
        Err(refusal) => {
            if let Some(code_hash) = invite
                && let Err(e) = node.store.return_invite(code_hash).await
            {
                tracing::warn!(error = %e, "giving back an invite's use failed");
            }
            return Err(refusal);
        }
    };
    open_session(node, party, client).await
}

/// Takes one use of the invite `code`; its hash, to give the use back.
async fn take_invite(node: &Node, code: &str) -> Result<[u8; 32], Refusal> {
    let invalid = || {
        Refusal::new(
            RefusalCode::InvalidInvite,
            "this server registers by invitation: the invite code is unknown, used up or expired",
        )
    };
    if code.is_empty() || code.len() > wire::MAX_INVITE {
        return Err(invalid());
    }
    let code_hash = auth::token_hash(code);
    match node
        .store
        .take_invite(code_hash, super::writer::now_ms())
        .await
    {
        Ok(true) => Ok(code_hash),
        Ok(false) => Err(invalid()),
        Err(e) => Err(internal(e)),
    }
}

async fn password_login(
    node: &Node,
    address: &str,
    password: String,
    client: &str,
    source: IpAddr,
) -> Result<Authenticated, Refusal> {
    let wrong = || Refusal::new(RefusalCode::Unauthenticated, "wrong address or password");
    let address: Address = address
        .parse()
        .map_err(|e: kanal_proto::address::NameError| {
            Refusal::new(RefusalCode::InvalidAddress, e.to_string())
        })?;
    if password.len() > wire::MAX_PASSWORD {
        return Err(wrong());
    }
    // Refused cheaply, before any hashing, once a source or an account has
    // failed too often.
    let source = limits::source_key(source);
    let account = address.to_string();
    let limited = node
        .limits
        .failed_by_source
        .check(&source)
        .and(node.limits.failed_by_account.check(&account));
    if let Err(wait) = limited {
        return Err(Refusal::rate_limited("too many failed logins", wait));
    }
    let party = if address.domain() == node.domain {
        node.store
            .party_by_address(&address)
            .await
            .map_err(internal)?
    } else {
        None
    };
    let hash = match &party {
        Some(p) => node.store.password_hash(p.id).await.map_err(internal)?,
        None => None,
    };
    // Verified even without a hash, so an unknown address costs as long as
    // a wrong password.
    if !auth::verify_password(password, hash).await {
        node.limits.failed_by_source.take(&source);
        node.limits.failed_by_account.take(&account);
        return Err(wrong());
    }
    let party = party.ok_or_else(wrong)?;
    open_session(node, party, client).await
}

async fn resume(node: &Node, token: &str) -> Result<Authenticated, Refusal> {
    let unknown = || Refusal::new(RefusalCode::Unauthenticated, "unknown resume token");
    let session = node
        .store
        .session_by_token_hash(auth::token_hash(token))
        .await
        .map_err(internal)?
        .ok_or_else(unknown)?;
    let party = node
        .store
        .party_by_id(session.party)
        .await
        .map_err(internal)?
        .ok_or_else(unknown)?;
    let seat = node.limits.connect_as(party.id)?;
    Ok(Authenticated {
        party,
        session: session.id,
        token: token.to_string(),
        acked_seq: session.acked_seq,
        _seat: seat,
    })
}

async fn open_session(node: &Node, party: Party, client: &str) -> Result<Authenticated, Refusal> {
    if !party.kind.has_session() {
        return Err(Refusal::new(
            RefusalCode::Unauthenticated,
            "this address cannot log in",
        ));
    }
    let seat = node.limits.connect_as(party.id)?;
    let (token, hash) = auth::new_resume_token();
    let session = node
        .store
        .create_session(party.id, hash, client)
        .await
        .map_err(internal)?;
    Ok(Authenticated {
        party,
        session: session.id,
        token,
        acked_seq: 0,
        _seat: seat,
    })
}

fn internal(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "store failed during authentication");
    Refusal::internal("the server failed; retry later")
}
