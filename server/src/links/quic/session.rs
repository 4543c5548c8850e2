//! One client connection: the Hello handshake on the control stream, then
//! the session loop that serves requests, acks, datagrams and the event stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kanal_proto::codes::CloseCode;
use kanal_proto::frame::{self, FrameError};
use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use prost::Message as _;
use quinn::{Connection, RecvStream, SendStream};

use crate::links::quic::requests;
use crate::model::{NewParty, Party, PartyKind};
use crate::node::auth;
use crate::node::hub::{Hub, Subscription, push_event_header};
use crate::node::writer::WriterHandle;
use crate::ops::config::{Config, Registration};
use crate::store::{Store, StoreError};

/// Events read from the store per query while replaying.
const REPLAY_PAGE: u32 = 512;

/// How long the server waits for a refused client to receive its Error frame.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// What every connection of a server shares.
pub struct Shared {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// The single writer.
    pub writer: WriterHandle,
    /// Live fan-out.
    pub hub: Arc<Hub>,
    /// The configuration in force.
    pub config: Config,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("domain", &self.config.domain)
            .finish_non_exhaustive()
    }
}

/// An authenticated session.
#[derive(Debug, Clone)]
struct Authenticated {
    party: Party,
    session: i64,
    token: String,
    acked_seq: u64,
}

/// A refused Hello.
struct Refusal(pb::ErrorCode, String);

/// Serves one connection until it closes. Never panics on peer input.
pub async fn serve(shared: Arc<Shared>, connection: Connection) {
    let Some((control_send, control_recv, auth)) = handshake(&shared, &connection).await else {
        return;
    };
    tracing::debug!(party = %auth.party.address, remote = %connection.remote_address(), "session open");
    run(shared, &connection, control_send, control_recv, auth).await;
    // Whatever ended the loop ends the session: the event stream must not
    // outlive the control stream.
    close(&connection, CloseCode::Normal, "session ended");
}

/// Reads the Hello and answers it. Closes the connection itself on failure.
async fn handshake(
    shared: &Shared,
    connection: &Connection,
) -> Option<(SendStream, FrameReader<RecvStream>, Authenticated)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limits::HELLO_TIMEOUT_SECS);
    let (mut send, recv) = match tokio::time::timeout_at(deadline, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return None,
        Err(_) => {
            close(connection, CloseCode::HelloTimeout, "no Hello in time");
            return None;
        }
    };
    let mut control = FrameReader::new(recv, limits::MAX_FRAME);
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
    match authenticate(shared, hello).await {
        Ok(auth) => {
            let Ok(event_head) = shared.store.event_head(auth.party.id).await else {
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
                    party: Some(auth.party.to_pb()),
                    resume_token: auth.token.clone(),
                    event_head,
                    acked_seq: auth.acked_seq,
                    server_domain: shared.config.domain.clone(),
                })),
            };
            if write_frame(&mut send, &welcome).await.is_err() {
                return None;
            }
            Some((send, control, auth))
        }
        Err(Refusal(code, message)) => {
            let error = pb::ServerControl {
                kind: Some(pb::server_control::Kind::Error(pb::Error {
                    code: code as i32,
                    message: message.clone(),
                })),
            };
            // Let the Error frame reach the client before the close discards it.
            if write_frame(&mut send, &error).await.is_ok() && send.finish().is_ok() {
                let _ = tokio::time::timeout(REFUSAL_LINGER, send.stopped()).await;
            }
            close(connection, CloseCode::HelloRefused, &message);
            None
        }
    }
}

async fn authenticate(shared: &Shared, hello: pb::Hello) -> Result<Authenticated, Refusal> {
    use pb::hello::Auth;
    if hello.version != kanal_proto::PROTOCOL_VERSION {
        return Err(Refusal(
            pb::ErrorCode::UnsupportedVersion,
            format!(
                "this server speaks version {}, not {}",
                kanal_proto::PROTOCOL_VERSION,
                hello.version
            ),
        ));
    }
    let client = truncate(&hello.client, 128);
    match hello.auth {
        Some(Auth::Register(register)) => register_account(shared, register, client).await,
        Some(Auth::Password(login)) => password_login(shared, login, client).await,
        Some(Auth::Resume(resume)) => resume_session(shared, &resume.token).await,
        None => Err(Refusal(
            pb::ErrorCode::BadRequest,
            "Hello carries no auth".into(),
        )),
    }
}

async fn register_account(
    shared: &Shared,
    register: pb::Register,
    client: &str,
) -> Result<Authenticated, Refusal> {
    if shared.config.registration == Registration::Closed {
        return Err(Refusal(
            pb::ErrorCode::RegistrationClosed,
            "this server does not allow registration".into(),
        ));
    }
    let address = kanal_proto::address::Address::new(&register.local, &shared.config.domain)
        .map_err(|e| Refusal(pb::ErrorCode::InvalidAddress, e.to_string()))?;
    check_password(&register.password)?;
    if register.display_name.len() > limits::MAX_DISPLAY_NAME {
        return Err(Refusal(
            pb::ErrorCode::TooLarge,
            "display name too long".into(),
        ));
    }
    let hash = auth::hash_password(register.password)
        .await
        .map_err(|e| Refusal(pb::ErrorCode::Internal, e.to_string()))?;
    let party = shared
        .store
        .create_party(NewParty {
            address,
            kind: PartyKind::User,
            display_name: register.display_name,
            password_hash: Some(hash),
        })
        .await
        .map_err(|e| match e {
            StoreError::AddressTaken(a) => {
                Refusal(pb::ErrorCode::AddressTaken, format!("{a} is taken"))
            }
            other => internal(other),
        })?;
    open_session(shared, party, client).await
}

async fn password_login(
    shared: &Shared,
    login: pb::PasswordLogin,
    client: &str,
) -> Result<Authenticated, Refusal> {
    let wrong = || {
        Refusal(
            pb::ErrorCode::Unauthenticated,
            "wrong address or password".into(),
        )
    };
    let address: kanal_proto::address::Address =
        login
            .address
            .parse()
            .map_err(|e: kanal_proto::address::NameError| {
                Refusal(pb::ErrorCode::InvalidAddress, e.to_string())
            })?;
    if login.password.len() > limits::MAX_PASSWORD {
        return Err(wrong());
    }
    let party = if address.domain() == shared.config.domain {
        shared
            .store
            .party_by_address(&address)
            .await
            .map_err(internal)?
    } else {
        None
    };
    let hash = match &party {
        Some(p) => shared.store.password_hash(p.id).await.map_err(internal)?,
        None => None,
    };
    if !auth::verify_password(login.password, hash).await {
        return Err(wrong());
    }
    let party = party.ok_or_else(wrong)?;
    open_session(shared, party, client).await
}

async fn resume_session(shared: &Shared, token: &str) -> Result<Authenticated, Refusal> {
    let unknown = || {
        Refusal(
            pb::ErrorCode::Unauthenticated,
            "unknown resume token".into(),
        )
    };
    let session = shared
        .store
        .session_by_token_hash(auth::token_hash(token))
        .await
        .map_err(internal)?
        .ok_or_else(unknown)?;
    let party = shared
        .store
        .party_by_id(session.party)
        .await
        .map_err(internal)?
        .ok_or_else(unknown)?;
    Ok(Authenticated {
        party,
        session: session.id,
        token: token.to_string(),
        acked_seq: session.acked_seq,
    })
}

async fn open_session(
    shared: &Shared,
    party: Party,
    client: &str,
) -> Result<Authenticated, Refusal> {
    if !party.kind.has_session() {
        return Err(Refusal(
            pb::ErrorCode::Unauthenticated,
            "this address cannot log in".into(),
        ));
    }
    let (token, hash) = auth::new_resume_token();
    let session = shared
        .store
        .create_session(party.id, hash, client)
        .await
        .map_err(internal)?;
    Ok(Authenticated {
        party,
        session: session.id,
        token,
        acked_seq: 0,
    })
}

fn check_password(password: &str) -> Result<(), Refusal> {
    if password.chars().count() < limits::MIN_PASSWORD {
        return Err(Refusal(
            pb::ErrorCode::BadRequest,
            format!(
                "the password needs at least {} characters",
                limits::MIN_PASSWORD
            ),
        ));
    }
    if password.len() > limits::MAX_PASSWORD {
        return Err(Refusal(pb::ErrorCode::TooLarge, "password too long".into()));
    }
    Ok(())
}

/// The session loop after Welcome.
async fn run(
    shared: Arc<Shared>,
    connection: &Connection,
    _control_send: SendStream,
    mut control: FrameReader<RecvStream>,
    auth: Authenticated,
) {
    let party = Arc::new(auth.party.clone());
    let mut syncing = false;
    loop {
        tokio::select! {
            frame = control.next::<pb::ClientControl>() => {
                use pb::client_control::Kind;
                match frame {
                    Ok(Some(pb::ClientControl { kind: Some(Kind::Sync(sync)) })) if !syncing => {
                        syncing = true;
                        let subscription = shared.hub.subscribe(party.id, connection.clone());
                        tokio::spawn(pump_events(shared.clone(), connection.clone(), party.id, sync.since, subscription));
                    }
                    Ok(Some(pb::ClientControl { kind: Some(Kind::Ack(ack)) })) => {
                        // An ack beyond the log's head acknowledges the head.
                        let stored = match shared.store.event_head(party.id).await {
                            Ok(head) => shared.store.ack_session(auth.session, ack.seq.min(head)).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = stored {
                            tracing::warn!(error = %e, "storing an ack failed");
                        }
                    }
                    Ok(Some(_)) => {
                        close(connection, CloseCode::ProtocolViolation, "unexpected control frame");
                        return;
                    }
                    Ok(None) => {
                        close(connection, CloseCode::Normal, "control stream finished");
                        return;
                    }
                    Err(e) => {
                        close_for_frame_error(connection, &e);
                        return;
                    }
                }
            }
            streams = connection.accept_bi() => match streams {
                Ok((send, recv)) => {
                    tokio::spawn(requests::serve(shared.clone(), party.clone(), send, recv));
                }
                Err(_) => return,
            },
            datagram = connection.read_datagram() => match datagram {
                Ok(datagram) => {
                    tokio::spawn(relay_typing(shared.clone(), connection.clone(), party.clone(), datagram));
                }
                Err(_) => return,
            },
        }
    }
}

/// Writes the event stream: replay from the store after `since`, a
/// SyncComplete, then live events; replays again whenever live delivery lagged.
async fn pump_events(
    shared: Arc<Shared>,
    connection: Connection,
    party: i64,
    since: u64,
    mut subscription: Subscription,
) {
    let result: Result<(), PumpError> = async {
        let mut send = connection.open_uni().await?;
        let head = shared.store.event_head(party).await?;
        let mut last = replay(&shared, &mut send, party, since.min(head)).await?;
        let complete = pb::Push {
            kind: Some(pb::push::Kind::SyncComplete(pb::SyncComplete {
                head: last,
            })),
        };
        write_frame(&mut send, &complete).await?;
        loop {
            if subscription
                .lagged
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                while subscription.events.try_recv().is_ok() {}
                last = replay(&shared, &mut send, party, last).await?;
                continue;
            }
            let event = tokio::select! {
                event = subscription.events.recv() => event,
                _ = connection.closed() => None,
            };
            let Some(event) = event else {
                return Ok(());
            };
            if event.seq <= last {
                continue;
            }
            if event.seq > last + 1 {
                // A gap: events were dropped for us. The store has them all.
                last = replay(&shared, &mut send, party, last).await?;
                if event.seq <= last {
                    continue;
                }
            }
            let header = push_event_header(event.seq, event.kind.len());
            send.write_all_chunks(&mut [header, event.kind]).await?;
            last = event.seq;
        }
    }
    .await;
    match result {
        Ok(()) => {}
        Err(PumpError::Store(e)) => {
            // Sync happens once per connection, so a client must reconnect to
            // get its events back: tell it so.
            tracing::error!(error = %e, "the event stream failed reading the store");
            close(
                &connection,
                CloseCode::Internal,
                "the server failed; reconnect",
            );
        }
        Err(e) => tracing::debug!(error = %e, "event stream ended"),
    }
}

/// Writes every stored event after `since`; returns the last seq written.
async fn replay(
    shared: &Shared,
    send: &mut SendStream,
    party: i64,
    mut since: u64,
) -> Result<u64, PumpError> {
    loop {
        let events = shared.store.events_since(party, since, REPLAY_PAGE).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(since);
        };
        let mut buf = bytes::BytesMut::new();
        for event in events {
            frame::encode(
                &pb::Push {
                    kind: Some(pb::push::Kind::Event(event)),
                },
                &mut buf,
            );
        }
        send.write_all(&buf).await?;
        since = last;
    }
}

#[derive(Debug, thiserror::Error)]
enum PumpError {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Relays a Typing datagram to the other parties of its conversation.
async fn relay_typing(
    shared: Arc<Shared>,
    connection: Connection,
    party: Arc<Party>,
    datagram: Bytes,
) {
    let Ok(pb::Datagram {
        kind: Some(pb::datagram::Kind::Typing(typing)),
    }) = pb::Datagram::decode(datagram)
    else {
        return; // Unknown or malformed datagrams are ignored: they are ephemeral.
    };
    let Ok(id) = typing.conversation.parse() else {
        return;
    };
    let recipients = match requests::visible_recipients(&shared, &id, party.id).await {
        Ok(Some(recipients)) => recipients,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "resolving typing recipients failed");
            return;
        }
    };
    let others: Vec<i64> = recipients.into_iter().filter(|p| *p != party.id).collect();
    let relayed = pb::Datagram {
        kind: Some(pb::datagram::Kind::Typing(pb::Typing {
            conversation: id.to_string(),
            active: typing.active,
            from: party.address.to_string(),
        })),
    };
    shared
        .hub
        .relay_datagram(&others, &connection, relayed.encode_to_vec().into());
}

fn close_for_frame_error(connection: &Connection, error: &FrameError) {
    match error {
        FrameError::TooLarge { .. } => {
            close(connection, CloseCode::FrameTooLarge, &error.to_string())
        }
        FrameError::Io(_) => {} // The peer went away; nothing to tell it.
        _ => close(connection, CloseCode::ProtocolViolation, &error.to_string()),
    }
}

/// Closes the connection with a Kanal close code and a short reason.
pub fn close(connection: &Connection, code: CloseCode, reason: &str) {
    connection.close(code.value().into(), truncate(reason, 200).as_bytes());
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn internal(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "store failed during Hello");
    Refusal(
        pb::ErrorCode::Internal,
        "the server failed; retry later".into(),
    )
}
