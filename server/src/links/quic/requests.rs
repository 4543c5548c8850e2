//! Request streams: each carries one or more `Request` frames, and gets one
//! `Response` per request back, in the order the requests were sent.
//!
//! A stream's requests are handled concurrently, up to
//! [`limits::MAX_PIPELINED_REQUESTS`] at once: a client that pipelines sends
//! on one stream has them batched into the same commits, without a stream
//! per message. Malformed input closes only its own stream, with a
//! `StreamCode`; the connection and every other stream carry on.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use kanal_proto::address::{Address, ConversationId};
use kanal_proto::codes::StreamCode;
use kanal_proto::frame::FrameError;
use kanal_proto::io::{FrameReader, write_frame};
use kanal_proto::{limits, pb};
use prost::Message as _;
use quinn::{RecvStream, SendStream};

use super::budget::{self, Budget, Room};
use super::desk;
use super::render;
use super::structured;
use crate::core::engine::{Command, DeskRequest, Reply};
use crate::model::{ConversationKey, Party, PartyId, ReceiptKind, Refusal, RefusalCode};
use crate::node::Node;
use crate::node::auth::random_opaque;
use crate::store::StoreError;

pub(super) type Answer = Result<pb::response::Kind, Refusal>;

/// What a send or receipt keeps reserved until its response: a `Sent`,
/// `Done` or `Error` is far smaller.
const RESERVED_PER_WRITE: usize = 1024;

/// Serves one request stream until the client finishes it and every
/// request has its response. Each request takes room in `budget` (see
/// `budget.rs`) once it is read, so an idle stream holds none.
pub(crate) async fn serve(
    node: Arc<Node>,
    party: Arc<Party>,
    budget: Budget,
    mut send: SendStream,
    recv: RecvStream,
) {
    let stall = Duration::from_secs(limits::FRAME_STALL_SECS);
    let mut reader = FrameReader::new(recv, limits::MAX_FRAME).stall_after(stall);
    let mut pending = FuturesOrdered::new();
    let mut requests = 0_u64;
    let mut reading = true;
    // A request read and waiting for room in the budget.
    let mut waiting: Option<pb::Request> = None;
    loop {
        tokio::select! {
            // Answer before reading more: responses free room in the pipeline.
            biased;
            Some((response, held)) = pending.next(), if !pending.is_empty() => {
                match tokio::time::timeout(stall, write_frame(&mut send, &response)).await {
                    Ok(Ok(())) => drop(held),
                    Ok(Err(_)) => return, // The client reset or stopped the stream.
                    // A client that does not take its responses loses the
                    // stream, and the memory they hold is freed.
                    Err(_) => return refuse_stream(&mut send, reader.get_mut(), StreamCode::Stalled),
                }
                // Reading waited for the write: a frame under way is not late
                // for that.
                reader.restart_stall_clock();
            }
            room = budget.reserve(budget::PER_REQUEST), if waiting.is_some() => {
                let (Some(room), Some(request)) = (room, waiting.take()) else { break };
                let response = start(&node, &party, request, room).await;
                pending.push_back(response);
                // Reading waited for room: a frame under way is not late for that.
                reader.restart_stall_clock();
            }
            frame = reader.next_frame(),
                if reading && waiting.is_none() && pending.len() < limits::MAX_PIPELINED_REQUESTS =>
            {
                let code = match frame {
                    Ok(Some(frame)) => match pb::Request::decode(frame) {
                        Ok(request) => {
                            requests += 1;
                            waiting = Some(request);
                            continue;
                        }
                        Err(_) => StreamCode::MalformedFrame,
                    },
                    Ok(None) if requests > 0 => {
                        reading = false;
                        continue;
                    }
                    Ok(None) | Err(FrameError::Truncated) => StreamCode::Truncated,
                    Err(FrameError::TooLarge { .. }) => StreamCode::FrameTooLarge,
                    Err(FrameError::Stalled { .. }) => StreamCode::Stalled,
                    Err(FrameError::Io(_)) => return, // The client reset the stream.
                    Err(_) => StreamCode::MalformedFrame,
                };
                // Responses still pending on this stream are lost with it;
                // their requests may have taken effect (PROTOCOL.md §9.3).
                return refuse_stream(&mut send, reader.get_mut(), code);
            }
            else => break,
        }
    }
    let _ = send.finish();
}

/// A request's response once it is ready, with the room it holds in its
/// connection's response budget until it is written.
type Pending = std::pin::Pin<Box<dyn Future<Output = (pb::Response, Option<Room>)> + Send>>;

/// Starts handling one request, which holds `room` of the response budget.
/// Sends and receipts are queued for the writer before this returns, so
/// those of one stream take effect in the order they were sent
/// (PROTOCOL.md §7.1). Reads and conversation creation run as tasks of their
/// own: each finishes into memory and releases its database connection
/// whether or not the client ever reads the response.
async fn start(
    node: &Arc<Node>,
    party: &Arc<Party>,
    request: pb::Request,
    mut room: Room,
) -> Pending {
    use pb::request::Kind;
    let id = request.id;
    let command = match request.kind {
        Some(Kind::Send(send)) => send_command(node, party, send).await,
        Some(Kind::MarkReceipt(mark)) => receipt_command(party, mark),
        kind => {
            let (node, party) = (node.clone(), party.clone());
            let task = tokio::spawn(async move {
                let response = response(id, handle(&node, &party, pb::Request { id, kind }).await);
                room.keep(response.encoded_len());
                (response, Some(room))
            });
            return Box::pin(async move {
                task.await.unwrap_or_else(|e| {
                    // The task's room was given back when it ended.
                    tracing::error!(error = %e, "a request task failed");
                    let refusal = Refusal::internal("the server failed; retry later");
                    (response(id, Err(refusal)), None)
                })
            });
        }
    };
    room.keep(RESERVED_PER_WRITE);
    match command {
        Ok(command) => {
            let reply = node.writer.enqueue(command).await;
            Box::pin(async move { (response(id, answer(reply.await)), Some(room)) })
        }
        Err(refusal) => Box::pin(std::future::ready((response(id, Err(refusal)), Some(room)))),
    }
}

/// The `Response` to request `id`.
fn response(id: u64, answer: Answer) -> pb::Response {
    let kind = match answer {
        Ok(kind) => kind,
        Err(refusal) => pb::response::Kind::Error(render::error(&refusal)),
    };
    pb::Response {
        id,
        kind: Some(kind),
    }
}

fn refuse_stream(send: &mut SendStream, recv: &mut RecvStream, code: StreamCode) {
    let code = quinn::VarInt::from_u32(code.value());
    let _ = recv.stop(code);
    let _ = send.reset(code);
}

async fn handle(node: &Node, party: &Party, request: pb::Request) -> Answer {
    use pb::request::Kind;
    match request.kind {
        Some(Kind::CreateConversation(create)) => create_conversation(node, party, create).await,
        Some(Kind::Send(send)) => submit(node, send_command(node, party, send).await?).await,
        Some(Kind::History(history)) => read_history(node, party, history).await,
        Some(Kind::ListConversations(list)) => {
            let (views, mut has_more) = node
                .store
                .conversations_of(party.id, page(list.limit), list.offset)
                .await
                .map_err(internal)?;
            let mut conversations: Vec<_> = views.iter().map(render::conversation).collect();
            // Keep the most recent ones; the rest come with the next offset.
            let keep = fitting(conversations.iter(), RESPONSE_BUDGET);
            if keep < conversations.len() {
                conversations.truncate(keep);
                has_more = true;
            }
            Ok(pb::response::Kind::ConversationList(pb::ConversationList {
                conversations,
                has_more,
            }))
        }
        Some(Kind::GetConversation(get)) => {
            let id = parse_conversation(&get.conversation)?;
            let key = visible_key(node, &id, party.id).await?;
            let view = node
                .store
                .conversation_view(key, party.id)
                .await
                .map_err(internal)?
                .ok_or_else(|| not_found(&id))?;
            Ok(pb::response::Kind::Conversation(render::conversation(
                &view,
            )))
        }
        Some(Kind::MarkReceipt(mark)) => submit(node, receipt_command(party, mark)?).await,
        Some(Kind::GetTicket(get)) => {
            desk::change(node, party, &get.conversation, DeskRequest::Get).await
        }
        Some(Kind::ListTickets(list)) => desk::list(node, party, list).await,
        Some(Kind::Assign(assign)) => desk::assign(node, party, assign).await,
        Some(Kind::Transfer(transfer)) => desk::transfer(node, party, transfer).await,
        Some(Kind::SetStatus(set)) => desk::set_status(node, party, set).await,
        Some(Kind::SetPriority(set)) => desk::set_priority(node, party, set).await,
        Some(Kind::SetLabels(set)) => desk::set_labels(node, party, set).await,
        Some(Kind::AddNote(note)) => desk::add_note(node, party, note).await,
        Some(Kind::DeskHistory(history)) => desk::history(node, party, history).await,
        Some(Kind::SetAvailability(set)) => desk::set_availability(node, party, set).await,
        Some(Kind::HandOff(hand_off)) => {
            desk::change(node, party, &hand_off.conversation, DeskRequest::HandOff).await
        }
        Some(Kind::GetContact(get)) => super::contact::contact(node, party, get).await,
        Some(Kind::ListCanned(list)) => super::canned::list(node, party, list).await,
        Some(Kind::GetReport(get)) => super::report::report(node, party, get).await,
        None => Err(Refusal::new(RefusalCode::BadRequest, "request has no kind")),
    }
}

async fn create_conversation(node: &Node, party: &Party, create: pb::CreateConversation) -> Answer {
    if create.to.is_empty() || create.to.len() > limits::MAX_RECIPIENTS {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            format!("name 1 to {} parties in `to`", limits::MAX_RECIPIENTS),
        ));
    }
    if create.subject.len() > limits::MAX_SUBJECT {
        return Err(Refusal::new(RefusalCode::TooLarge, "subject too long"));
    }
    let mut addresses = Vec::with_capacity(create.to.len());
    for text in &create.to {
        let address: Address = text.parse().map_err(|e: kanal_proto::address::NameError| {
            Refusal::new(RefusalCode::InvalidAddress, e.to_string())
        })?;
        addresses.push(address);
    }
    // Before any lookup: naming remote parties records them, and that is
    // bounded by the send rate.
    node.limits.send(party.id)?;
    let mut to = Vec::with_capacity(addresses.len());
    for address in &addresses {
        let other = if address.domain() == node.domain {
            node.store
                .party_by_address(address)
                .await
                .map_err(internal)?
                .ok_or_else(|| Refusal::new(RefusalCode::NotFound, format!("no party {address}")))?
        } else {
            crate::links::federation::remote_party(node, address).await?
        };
        to.push(other);
    }
    submit(
        node,
        Command::CreateConversation {
            by: party.clone(),
            to,
            subject: create.subject,
            opaque: random_opaque(),
        },
    )
    .await
}

/// The writer command of a valid Send; an answer gets its text from the
/// question it answers.
async fn send_command(node: &Node, party: &Party, send: pb::Send) -> Result<Command, Refusal> {
    let id = parse_conversation(&send.conversation)?;
    if send.client_msg_id.is_empty() || send.client_msg_id.len() > limits::MAX_CLIENT_MSG_ID {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            format!(
                "client_msg_id must be 1 to {} bytes",
                limits::MAX_CLIENT_MSG_ID
            ),
        ));
    }
    let Some(body) = send.body.and_then(render::parse_body) else {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            "the message has no body",
        ));
    };
    check_body(party, &body)?;
    node.limits.send(party.id)?;
    let body = match body {
        crate::model::Body::Answer(answer) => {
            crate::model::Body::Answer(structured::answered(node, party, &id, answer).await?)
        }
        body => body,
    };
    Ok(Command::Send {
        by: party.clone(),
        conversation: id,
        client_msg_id: send.client_msg_id,
        body,
    })
}

/// Refuses a body that breaks its kind's limits, or that its sender may not
/// send (a device report from anything but a device).
pub(crate) fn check_body(party: &Party, body: &crate::model::Body) -> Result<(), Refusal> {
    body.check_limits()?;
    if let crate::model::Body::DeviceReport { .. } = body {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            format!("{}: only devices send device reports", party.address),
        ));
    }
    Ok(())
}

/// The writer command of a valid MarkReceipt.
fn receipt_command(party: &Party, mark: pb::MarkReceipt) -> Result<Command, Refusal> {
    let id = parse_conversation(&mark.conversation)?;
    let kind = match pb::ReceiptKind::try_from(mark.kind) {
        Ok(pb::ReceiptKind::Delivered) => ReceiptKind::Delivered,
        Ok(pb::ReceiptKind::Read) => ReceiptKind::Read,
        _ => {
            return Err(Refusal::new(
                RefusalCode::BadRequest,
                "receipt kind must be DELIVERED or READ",
            ));
        }
    };
    Ok(Command::MarkReceipt {
        by: party.clone(),
        conversation: id,
        kind,
        up_to: mark.up_to_seq,
    })
}

async fn read_history(node: &Node, party: &Party, history: pb::History) -> Answer {
    let id = parse_conversation(&history.conversation)?;
    if history.before_seq > limits::MAX_SEQ {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            format!("before_seq must be at most {}", limits::MAX_SEQ),
        ));
    }
    let key = visible_key(node, &id, party.id).await?;
    let (stored, mut has_more) = node
        .store
        .history(key, history.before_seq, page(history.limit))
        .await
        .map_err(internal)?;
    let mut messages: Vec<_> = stored.iter().map(render::message).collect();
    // Keep the newest messages; the client pages on from the oldest it got.
    let keep = fitting(messages.iter().rev(), RESPONSE_BUDGET);
    if keep < messages.len() {
        messages.drain(..messages.len() - keep);
        has_more = true;
    }
    Ok(pb::response::Kind::HistoryPage(pb::HistoryPage {
        messages,
        has_more,
    }))
}

pub(super) async fn visible_key(
    node: &Node,
    id: &ConversationId,
    party: PartyId,
) -> Result<ConversationKey, Refusal> {
    let key = node
        .store
        .conversation_key(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(id))?;
    if !node.store.can_see(key, party).await.map_err(internal)? {
        return Err(not_found(id));
    }
    Ok(key)
}

pub(super) async fn submit(node: &Node, command: Command) -> Answer {
    answer(node.writer.submit(command).await)
}

/// A writer reply as a response kind.
pub(super) fn answer(reply: Reply) -> Answer {
    match reply {
        Reply::Conversation(view) => Ok(pb::response::Kind::Conversation(render::conversation(
            &view,
        ))),
        Reply::Sent(sent) => Ok(pb::response::Kind::Sent(render::sent(&sent))),
        Reply::Done | Reply::Party(_) => Ok(pb::response::Kind::Done(pb::Done {})),
        Reply::Ticket(ticket) => Ok(pb::response::Kind::Ticket(render::ticket(&ticket))),
        Reply::NoteAdded {
            conversation,
            dseq,
            at_ms,
            duplicate,
        } => Ok(pb::response::Kind::NoteAdded(pb::NoteAdded {
            conversation: conversation.to_string(),
            dseq,
            at_ms,
            duplicate,
        })),
        Reply::Refused(refusal) => Err(refusal),
    }
}

pub(super) fn parse_conversation(text: &str) -> Result<ConversationId, Refusal> {
    text.parse().map_err(|e: kanal_proto::address::NameError| {
        Refusal::new(RefusalCode::BadRequest, e.to_string())
    })
}

/// Conversations hosted elsewhere do not exist here until federation does.
pub(super) fn local_host(node: &Node, id: &ConversationId) -> Result<(), Refusal> {
    if id.host() == node.domain {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

/// Bytes of repeated entries a Response may carry, leaving room for its envelope.
pub(super) const RESPONSE_BUDGET: usize = limits::MAX_RESPONSE_FRAME - 1024;

/// How many of `items`, taken in order, fit in `budget` bytes (at least one:
/// a single entry is always smaller than the budget by the request limits).
pub(super) fn fitting<'a, M: prost::Message + 'a>(
    items: impl Iterator<Item = &'a M>,
    budget: usize,
) -> usize {
    let mut used = 0;
    let mut count = 0;
    for item in items {
        let len = item.encoded_len();
        used += 1 + prost::length_delimiter_len(len) + len;
        if used > budget && count > 0 {
            break;
        }
        count += 1;
    }
    count
}

pub(super) fn page(limit: u32) -> u32 {
    match limit {
        0 => limits::DEFAULT_PAGE,
        n => n.min(limits::MAX_PAGE),
    }
}

pub(super) fn not_found(id: &ConversationId) -> Refusal {
    Refusal::new(RefusalCode::NotFound, format!("no conversation {id}"))
}

pub(super) fn internal(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "store failed during a request");
    Refusal::internal("the server failed; retry later")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> pb::Message {
        pb::Message {
            body: Some(pb::Body {
                kind: Some(pb::body::Kind::Text("x".repeat(len))),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pages_are_cut_to_the_response_budget() {
        let messages: Vec<pb::Message> = (0..10).map(|_| message(1000)).collect();
        assert_eq!(fitting(messages.iter(), 1_000_000), 10);
        let one = message(1000).encoded_len() + 3;
        assert_eq!(fitting(messages.iter(), 3 * one), 3);
        assert_eq!(fitting(messages.iter(), 10), 1, "one entry always fits");
        // A full page of maximal texts stays inside the frame limit.
        let big: Vec<pb::Message> = (0..500).map(|_| message(limits::MAX_TEXT)).collect();
        let keep = fitting(big.iter(), RESPONSE_BUDGET);
        let page = pb::Response {
            id: u64::MAX,
            kind: Some(pb::response::Kind::HistoryPage(pb::HistoryPage {
                messages: big[..keep].to_vec(),
                has_more: true,
            })),
        };
        assert!(page.encoded_len() <= limits::MAX_RESPONSE_FRAME);
    }
}
