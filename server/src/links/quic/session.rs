//! One client connection: the handshake on the control stream, then the
//! session loop that serves acks, request streams, typing datagrams, and
//! (after Sync) the event stream.

use std::sync::Arc;

use kanal_proto::codes::CloseCode;
use kanal_proto::frame::FrameError;
use kanal_proto::pb;
use quinn::Connection;
use tokio::sync::Semaphore;

use super::budget::{self, Budget};

use super::handshake::{Admitted, handshake};
use super::typing::TypingRelay;
use super::{desk, events, requests};
use crate::model::{Availability, Party, PartyKind};
use crate::node::Node;

/// Serves one connection until it closes. Never panics on peer input.
/// `total_responses` is the server's response budget, shared by every
/// connection (`budget.rs`).
pub(crate) async fn serve(
    node: Arc<Node>,
    connection: Connection,
    total_responses: Arc<Semaphore>,
) {
    // Boxed: the handshake's state (Hello, authentication) lives on the
    // heap while it runs and is gone after, so the connection task that
    // then waits for the session's whole life stays small.
    let Some(admitted) = Box::pin(handshake(&node, &connection)).await else {
        return;
    };
    tracing::debug!(party = %admitted.auth.party.address, remote = %connection.remote_address(), "session open");
    let party = admitted.auth.party.clone();
    let agent = party.kind == PartyKind::Agent;
    // Before the connection's first request: a client that reconnects as
    // away is never online in between.
    let first = agent && node.presence.arrive(party.id);
    match (agent, admitted.availability) {
        (true, Some(availability)) => Box::pin(available(&node, &party, availability)).await,
        (true, None) if first => Box::pin(available(&node, &party, Availability::Online)).await,
        _ => {}
    }
    run(node.clone(), &connection, admitted, &total_responses).await;
    if agent && node.presence.leave(party.id) {
        Box::pin(available(&node, &party, Availability::Offline)).await;
    }
    // Whatever ended the loop ends the session: the event stream must not
    // outlive the control stream.
    close(&connection, CloseCode::Normal, "session ended");
}

/// Sets `agent`'s availability at every inbox it answers for.
async fn available(node: &Node, agent: &Party, availability: Availability) {
    let inboxes = match node.store.agent_inboxes(agent.id).await {
        Ok(inboxes) => inboxes,
        Err(e) => {
            tracing::warn!(error = %e, agent = %agent.address, "reading an agent's inboxes failed");
            return;
        }
    };
    if let Err(refusal) = desk::set_availability_at(node, agent, &inboxes, availability).await {
        tracing::warn!(%refusal, agent = %agent.address, ?availability, "setting an agent's availability failed");
    }
}

/// The session loop after Welcome.
async fn run(
    node: Arc<Node>,
    connection: &Connection,
    admitted: Admitted,
    total_responses: &Arc<Semaphore>,
) {
    let auth = &admitted.auth;
    let mut control = admitted.control;
    let party = Arc::new(auth.party.clone());
    let mut syncing = false;
    let mut typing = TypingRelay::new();
    let responses = Budget::for_connection(budget::PER_CONNECTION, total_responses);
    loop {
        tokio::select! {
            frame = control.next::<pb::ClientControl>() => {
                use pb::client_control::Kind;
                match frame {
                    Ok(Some(pb::ClientControl { kind: Some(Kind::Sync(sync)) })) if !syncing => {
                        syncing = true;
                        let datagrams = connection.clone();
                        let subscription = node.hub.subscribe(
                            party.id,
                            connection.stable_id() as u64,
                            // Dropped when the peer's datagram buffer is full: typing is ephemeral.
                            Box::new(move |datagram| { let _ = datagrams.send_datagram(datagram); }),
                        );
                        tokio::spawn(events::pump(node.clone(), connection.clone(), party.id, sync.since, subscription));
                    }
                    Ok(Some(pb::ClientControl { kind: Some(Kind::Ack(ack)) })) => {
                        // An ack beyond the log's head acknowledges the head.
                        let stored = match node.store.event_head(party.id).await {
                            Ok(head) => node.store.ack_session(auth.session, ack.seq.min(head)).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = stored {
                            tracing::warn!(error = %e, "storing an ack failed");
                        }
                    }
                    Ok(Some(_)) => {
                        close(connection, CloseCode::ProtocolViolation, "unexpected control frame");
                        break;
                    }
                    Ok(None) => {
                        close(connection, CloseCode::Normal, "control stream finished");
                        break;
                    }
                    Err(e) => {
                        close_for_frame_error(connection, &e);
                        break;
                    }
                }
            }
            streams = connection.accept_bi() => match streams {
                Ok((send, recv)) => {
                    tokio::spawn(requests::serve(node.clone(), party.clone(), responses.clone(), send, recv));
                }
                Err(_) => break,
            },
            datagram = connection.read_datagram() => match datagram {
                Ok(datagram) => {
                    // Inline, no task: the relay is rate-limited and cached.
                    typing.relay(&node, &party, connection.stable_id() as u64, datagram).await;
                }
                Err(_) => break,
            },
        }
    }
    if typing.dropped > 0 {
        tracing::debug!(party = %party.address, dropped = typing.dropped, "typing datagrams dropped");
    }
}

pub(super) fn close_for_frame_error(connection: &Connection, error: &FrameError) {
    match error {
        FrameError::TooLarge { .. } => {
            close(connection, CloseCode::FrameTooLarge, &error.to_string())
        }
        FrameError::Io(_) => {} // The peer went away; nothing to tell it.
        _ => close(connection, CloseCode::ProtocolViolation, &error.to_string()),
    }
}

/// Closes the connection with a Kanal close code and a short reason.
pub(crate) fn close(connection: &Connection, code: CloseCode, reason: &str) {
    connection.close(code.value().into(), truncate(reason, 200).as_bytes());
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
