//! What every way of sending a request shares, whether it gets a stream of
//! its own ([`crate::Client::request`]) or shares one ([`crate::Pipeline`]):
//! how long to wait for the response, how a `Send` is built, and how a
//! response is read.

use std::time::Duration;

use kanal_proto::pb;
use kanal_proto::pb::{request, response};

use crate::error::ClientError;

/// Longest wait for a response once a request is sent.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A `Send` request.
pub(crate) fn send_request(
    conversation: &str,
    client_msg_id: &str,
    body: pb::Body,
) -> request::Kind {
    request::Kind::Send(pb::Send {
        conversation: conversation.to_owned(),
        client_msg_id: client_msg_id.to_owned(),
        body: Some(body),
    })
}

/// Whether a request may be sent again when its connection was lost while
/// it was in flight: every kind but `CreateConversation`, which has no id
/// the server could recognise a repeat by, and the desk's `Transfer` and
/// `Assign` back to the queue, which a repeat would do again after the
/// desk had already given the ticket to someone.
pub(crate) fn safe_to_repeat(kind: &request::Kind) -> bool {
    match kind {
        request::Kind::CreateConversation(_) | request::Kind::Transfer(_) => false,
        request::Kind::Assign(assign) => !assign.agent.is_empty(),
        _ => true,
    }
}

/// The kind of a response; an `Error` response becomes
/// [`ClientError::Refused`].
pub(crate) fn kind_of(response: pb::Response) -> Result<response::Kind, ClientError> {
    match response.kind {
        Some(response::Kind::Error(error)) => Err(ClientError::refused(error)),
        Some(kind) => Ok(kind),
        None => Err(ClientError::Protocol("response without a kind".into())),
    }
}

/// The `Sent` of a response to a `Send` request.
pub(crate) fn sent(kind: response::Kind) -> Result<pb::Sent, ClientError> {
    match kind {
        response::Kind::Sent(sent) => Ok(sent),
        other => Err(unexpected("Sent", &other)),
    }
}

/// The error for a response of the wrong kind: `wanted` was expected.
pub(crate) fn unexpected(wanted: &str, got: &response::Kind) -> ClientError {
    let got = match got {
        response::Kind::Error(_) => "Error",
        response::Kind::Conversation(_) => "Conversation",
        response::Kind::Sent(_) => "Sent",
        response::Kind::HistoryPage(_) => "HistoryPage",
        response::Kind::ConversationList(_) => "ConversationList",
        response::Kind::Done(_) => "Done",
        response::Kind::Ticket(_) => "Ticket",
        response::Kind::TicketList(_) => "TicketList",
        response::Kind::NoteAdded(_) => "NoteAdded",
        response::Kind::DeskHistoryPage(_) => "DeskHistoryPage",
        response::Kind::Contact(_) => "Contact",
        response::Kind::CannedList(_) => "CannedList",
        response::Kind::Report(_) => "Report",
    };
    ClientError::Protocol(format!("expected a {wanted} response, got {got}"))
}
