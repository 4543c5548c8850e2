//! The control stream's first exchange: `Hello` → `Welcome` (or `Error`
//! and a close). The account rules themselves are the node's
//! (`node::accounts`); this file only speaks the wire.

use std::net::IpAddr;
use std::time::Duration;

use kanal_proto::codes::CloseCode;
use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use quinn::{Connection, RecvStream, SendStream};

use super::render;
use super::session::{close, close_for_frame_error, truncate};
use crate::model::{Availability, Refusal, RefusalCode};
use crate::node::Node;
use crate::node::accounts::{self, Authenticated, Credentials};
use crate::node::limits::Seat;

/// How long a connection past its source address's limit has to send the
/// Hello that is refused with `RATE_LIMITED`.
const OVER_LIMIT_HELLO_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the server waits for a refused client to receive its Error frame.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// A connection whose Hello was welcomed.
pub(super) struct Admitted {
    /// The control stream's sending half, open while this lives.
    _control_send: SendStream,
    /// The control stream's frames after the Hello.
    pub(super) control: FrameReader<RecvStream>,
    /// Who, and the session.
    pub(super) auth: Authenticated,
    /// The desk availability the Hello asked to start with (agents only);
    /// `None`: unspecified.
    pub(super) availability: Option<Availability>,
    /// The connection's place among its source address's connections
    /// (its place among the account's is in `auth`), held while this lives.
    _from: Seat<IpAddr>,
}

/// Reads the Hello and answers it. Closes the connection itself on failure.
pub(super) async fn handshake(node: &Node, connection: &Connection) -> Option<Admitted> {
    // The connection counts against its source address from the moment its
    // handshake completed, Hello or not. One past the source's limit gets
    // only a short while to send the Hello that is then refused.
    let from = node.limits.connect_from(connection.remote_address().ip());
    let patience = match from {
        Ok(_) => Duration::from_secs(limits::HELLO_TIMEOUT_SECS),
        Err(_) => OVER_LIMIT_HELLO_TIMEOUT,
    };
    let deadline = tokio::time::Instant::now() + patience;
    let (mut send, recv) = match tokio::time::timeout_at(deadline, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return None,
        Err(_) => {
            close(connection, CloseCode::HelloTimeout, "no Hello in time");
            return None;
        }
    };
    let mut control = FrameReader::new(recv, limits::MAX_FRAME)
        .stall_after(Duration::from_secs(limits::FRAME_STALL_SECS));
    let hello = match tokio::time::timeout_at(deadline, control.next::<pb::ClientControl>()).await {
        Err(_) => {
            close(connection, CloseCode::HelloTimeout, "no Hello in time");
            return None;
        }
        Ok(Err(e)) => {
            close_for_frame_error(connection, &e);
            return None;
        }
        Ok(Ok(Some(pb::ClientControl {
            kind: Some(pb::client_control::Kind::Hello(hello)),
        }))) => hello,
        Ok(Ok(_)) => {
            close(
                connection,
                CloseCode::ProtocolViolation,
                "the first control frame must be Hello",
            );
            return None;
        }
    };
    let availability = match pb::Availability::try_from(hello.availability) {
        Ok(pb::Availability::Online) => Some(Availability::Online),
        Ok(pb::Availability::Away) => Some(Availability::Away),
        Ok(pb::Availability::Offline) => Some(Availability::Offline),
        _ => None,
    };
    let admitted = async {
        let (credentials, client) = credentials(hello)?;
        let source = connection.remote_address().ip();
        let from = from?;
        let auth = accounts::authenticate(node, credentials, &client, source).await?;
        Ok::<_, Refusal>((auth, from))
    }
    .await;
    match admitted {
        Ok((auth, from)) => {
            let Ok(event_head) = node.store.event_head(auth.party.id).await else {
                close(
                    connection,
                    CloseCode::Internal,
                    "the server failed; retry later",
                );
                return None;
            };
            let welcome = pb::ServerControl {
                kind: Some(pb::server_control::Kind::Welcome(pb::Welcome {
                    version: kanal_proto::PROTOCOL_VERSION,
                    party: Some(render::party(&auth.party)),
                    resume_token: auth.token.clone(),
                    event_head,
                    acked_seq: auth.acked_seq,
                    server_domain: node.domain.clone(),
                })),
            };
            if write_frame(&mut send, &welcome).await.is_err() {
                return None;
            }
            Some(Admitted {
                _control_send: send,
                control,
                auth,
                availability,
                _from: from,
            })
        }
        Err(refusal) => {
            let error = pb::ServerControl {
                kind: Some(pb::server_control::Kind::Error(render::error(&refusal))),
            };
            // Let the Error frame reach the client before the close discards it.
            if write_frame(&mut send, &error).await.is_ok() && send.finish().is_ok() {
                let _ = tokio::time::timeout(REFUSAL_LINGER, send.stopped()).await;
            }
            close(connection, CloseCode::HelloRefused, &refusal.message);
            None
        }
    }
}

/// The Hello's credentials and client name, if it speaks our version.
fn credentials(hello: pb::Hello) -> Result<(Credentials, String), Refusal> {
    use pb::hello::Auth;
    if hello.version != kanal_proto::PROTOCOL_VERSION {
        return Err(Refusal::new(
            RefusalCode::UnsupportedVersion,
            format!(
                "this server speaks version {}, not {}",
                kanal_proto::PROTOCOL_VERSION,
                hello.version
            ),
        ));
    }
    let client = truncate(&hello.client, 128).to_owned();
    let credentials = match hello.auth {
        Some(Auth::Register(register)) => Credentials::Register {
            local: register.local,
            password: register.password,
            display_name: register.display_name,
            invite: register.invite,
        },
        Some(Auth::Password(login)) => Credentials::Password {
            address: login.address,
            password: login.password,
        },
        Some(Auth::Resume(resume)) => Credentials::Resume {
            token: resume.token,
        },
        None => {
            return Err(Refusal::new(
                RefusalCode::BadRequest,
                "Hello carries no auth",
            ));
        }
    };
    Ok((credentials, client))
}
