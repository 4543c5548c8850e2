//! One request stream per input, through the real server: a registered
//! account's connection (kept for the whole run) opens a stream, writes the
//! input's bytes, finishes (or resets) it and reads the answer. Checked
//! against PROTOCOL.md §7 and §9.3: one `Response` per `Request` in order
//! with its id and a kind (or error code) its request may get, the server
//! finishes the stream after a clean input and resets it with the right
//! code otherwise, no request fails with `INTERNAL`, and the connection
//! survives every stream.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use kanal_fuzz::requests::{Known, StreamInput};
use kanal_fuzz::server::{PATIENCE, Session, harness, register};
use kanal_fuzz::wire::{self, End};
use kanal_proto::codes::StreamCode;
use kanal_proto::{frame, limits, pb};
use libfuzzer_sys::fuzz_target;

/// Every this many inputs, a well-formed request must still be answered.
const CHECK_EVERY: u64 = 64;

struct Setup {
    session: Session,
    known: Known,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let harness = harness();
        harness.block_on(async {
            harness.add_user("peer").await;
            let session = harness.session(register("fuzz")).await;
            let mut conversations = Vec::new();
            for other in ["support@localhost", "peer@localhost"] {
                let create = pb::request::Kind::CreateConversation(pb::CreateConversation {
                    to: vec![other.into()],
                    subject: String::new(),
                });
                match well_formed(&session.connection, create).await {
                    pb::response::Kind::Conversation(c) => conversations.push(c.id),
                    other => panic!("creating a conversation failed: {other:?}"),
                }
            }
            let parties = ["support@localhost", "peer@localhost", "fuzz@localhost"];
            let known = Known {
                conversations,
                parties: parties.map(String::from).to_vec(),
            };
            Setup { session, known }
        })
    })
}

fuzz_target!(|data: &[u8]| {
    static INPUTS: AtomicU64 = AtomicU64::new(0);
    let setup = setup();
    let connection = &setup.session.connection;
    let input = StreamInput::new(data, &setup.known);
    harness().block_on(async {
        let answer = exchange(connection, &input.bytes, input.reset).await;
        if !input.reset {
            check(&input.bytes, &answer);
        }
        let done = INPUTS.fetch_add(1, Ordering::Relaxed);
        if done.is_multiple_of(CHECK_EVERY) {
            let list = pb::request::Kind::ListConversations(pb::ListConversations::default());
            well_formed(connection, list).await;
        }
    });
    if let Some(reason) = connection.close_reason() {
        panic!("a request stream ended the connection: {reason}");
    }
});

/// How the server ended its side of a request stream.
#[derive(Debug)]
enum Outcome {
    Finished,
    Reset(u64),
}

/// What the server wrote on a stream, and how it ended it.
struct Answer {
    bytes: Vec<u8>,
    outcome: Outcome,
}

/// Writes `bytes` on a new request stream, finishes or resets it, and reads
/// the server's side to its end.
async fn exchange(connection: &quinn::Connection, bytes: &[u8], reset: bool) -> Answer {
    let (mut send, mut recv) = tokio::time::timeout(PATIENCE, connection.open_bi())
        .await
        .expect("the server grants a request stream in time")
        .expect("the connection is open");
    let write = async {
        // The server may stop the stream after a bad frame: the rest is moot.
        let _ = send.write_all(bytes).await;
        if reset {
            let _ = send.reset(0u8.into());
        } else {
            let _ = send.finish();
        }
    };
    let read = async {
        let mut bytes = Vec::new();
        loop {
            match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk.bytes),
                Ok(None) => {
                    return Answer {
                        bytes,
                        outcome: Outcome::Finished,
                    };
                }
                Err(quinn::ReadError::Reset(code)) => {
                    return Answer {
                        bytes,
                        outcome: Outcome::Reset(code.into_inner()),
                    };
                }
                Err(e) => panic!("reading a request stream failed: {e}"),
            }
        }
    };
    let ((), answer) = tokio::time::timeout(PATIENCE, async { tokio::join!(write, read) })
        .await
        .unwrap_or_else(|_| panic!("the server neither answered nor reset within {PATIENCE:?}"));
    answer
}

/// Checks the server's answer to the bytes of a finished stream.
fn check(sent: &[u8], answer: &Answer) {
    let (requests, end) = wire::split::<pb::Request>(sent, limits::MAX_FRAME);
    let responses = wire::server_frames::<pb::Response>(&answer.bytes, limits::MAX_RESPONSE_FRAME);
    assert!(
        responses.len() <= requests.len(),
        "{} responses to {} requests",
        responses.len(),
        requests.len()
    );
    for (request, response) in requests.iter().zip(&responses) {
        assert_eq!(response.id, request.id, "responses out of order");
        check_kind(request, response);
    }
    let expected = match end {
        End::Clean if requests.is_empty() => Some(StreamCode::Truncated),
        End::Clean => None,
        End::Truncated => Some(StreamCode::Truncated),
        End::TooLarge => Some(StreamCode::FrameTooLarge),
        End::BadPrefix | End::Undecodable => Some(StreamCode::MalformedFrame),
    };
    match (expected, &answer.outcome) {
        (None, Outcome::Finished) => {
            assert_eq!(responses.len(), requests.len(), "a request went unanswered");
            let (_, end) = wire::split::<pb::Response>(&answer.bytes, limits::MAX_RESPONSE_FRAME);
            assert_eq!(end, End::Clean, "the server finished inside a frame");
        }
        (Some(code), Outcome::Reset(got)) => assert_eq!(
            StreamCode::from_value(*got),
            Some(code),
            "wrong reset code for {end:?}"
        ),
        (expected, outcome) => {
            panic!("the stream should end with {expected:?} (input {end:?}), it ended {outcome:?}")
        }
    }
}

/// The response kind (or error code) must be one §7.2 allows for the
/// request, and never `INTERNAL`: nothing here should fail the store.
fn check_kind(request: &pb::Request, response: &pb::Response) {
    use pb::ErrorCode as E;
    use pb::request::Kind as Q;
    use pb::response::Kind as R;
    let Some(kind) = &response.kind else {
        panic!("a response without a kind to {request:?}");
    };
    let allowed: &[E] = match (&request.kind, kind) {
        (Some(Q::CreateConversation(_)), R::Conversation(_))
        | (Some(Q::Send(_)), R::Sent(_))
        | (Some(Q::History(_)), R::HistoryPage(_))
        | (Some(Q::ListConversations(_)), R::ConversationList(_))
        | (Some(Q::GetConversation(_)), R::Conversation(_))
        | (Some(Q::MarkReceipt(_)), R::Done(_))
        | (
            Some(
                Q::GetTicket(_)
                | Q::Assign(_)
                | Q::Transfer(_)
                | Q::SetStatus(_)
                | Q::SetPriority(_)
                | Q::SetLabels(_)
                | Q::HandOff(_),
            ),
            R::Ticket(_),
        )
        | (Some(Q::AddNote(_)), R::NoteAdded(_))
        | (Some(Q::ListTickets(_)), R::TicketList(_))
        | (Some(Q::DeskHistory(_)), R::DeskHistoryPage(_))
        | (Some(Q::GetContact(_)), R::Contact(_))
        | (Some(Q::ListCanned(_)), R::CannedList(_))
        | (Some(Q::GetReport(_)), R::Report(_))
        | (Some(Q::SetAvailability(_)), R::Done(_)) => return,
        (_, R::Error(_)) => match &request.kind {
            Some(Q::CreateConversation(_)) => &[
                E::BadRequest,
                E::TooLarge,
                E::InvalidAddress,
                E::RemoteUnreachable,
                E::NotFound,
                E::RateLimited,
            ],
            Some(Q::Send(_)) => &[
                E::BadRequest,
                E::TooLarge,
                E::RateLimited,
                E::NotFound,
                E::InvalidAnswer,
            ],
            Some(Q::History(_) | Q::GetConversation(_) | Q::MarkReceipt(_)) => {
                &[E::BadRequest, E::NotFound]
            }
            Some(Q::ListConversations(_)) => &[],
            // PROTOCOL.md §7.2 and §15.4.
            Some(
                Q::GetTicket(_)
                | Q::Assign(_)
                | Q::Transfer(_)
                | Q::SetStatus(_)
                | Q::SetPriority(_)
                | Q::SetLabels(_)
                | Q::HandOff(_),
            ) => &[
                E::BadRequest,
                E::TooLarge,
                E::InvalidAddress,
                E::NotFound,
                E::NotAnAgent,
                E::InvalidState,
            ],
            Some(Q::AddNote(_)) => &[
                E::BadRequest,
                E::TooLarge,
                E::RateLimited,
                E::NotFound,
                E::NotAnAgent,
                E::InvalidState,
            ],
            Some(Q::ListTickets(_)) => {
                &[E::BadRequest, E::InvalidAddress, E::NotFound, E::NotAnAgent]
            }
            Some(Q::DeskHistory(_)) => &[E::BadRequest, E::NotFound, E::NotAnAgent],
            Some(Q::GetContact(_) | Q::ListCanned(_)) => {
                &[E::InvalidAddress, E::NotFound, E::NotAnAgent]
            }
            Some(Q::GetReport(_)) => &[
                E::BadRequest,
                E::InvalidAddress,
                E::NotFound,
                E::NotAnAgent,
                E::InvalidState,
            ],
            Some(Q::SetAvailability(_)) => &[E::BadRequest, E::NotAnAgent],
            None => &[E::BadRequest],
        },
        _ => panic!("response {kind:?} to {request:?}"),
    };
    let R::Error(error) = kind else {
        unreachable!()
    };
    let code = E::try_from(error.code);
    assert!(
        code.is_ok_and(|code| allowed.contains(&code)),
        "error {error:?} to {request:?}"
    );
}

/// Sends one well-formed request on its own stream; panics unless it is answered.
async fn well_formed(
    connection: &quinn::Connection,
    kind: pb::request::Kind,
) -> pb::response::Kind {
    let request = pb::Request {
        id: 7,
        kind: Some(kind),
    };
    let answer = exchange(connection, &frame::encode_to_bytes(&request), false).await;
    check(&frame::encode_to_bytes(&request), &answer);
    let mut responses =
        wire::server_frames::<pb::Response>(&answer.bytes, limits::MAX_RESPONSE_FRAME);
    match responses.pop().and_then(|r| r.kind) {
        Some(pb::response::Kind::Error(e)) => panic!("a well-formed request failed: {e:?}"),
        Some(kind) => kind,
        None => panic!(
            "a well-formed request went unanswered: {:?}",
            answer.outcome
        ),
    }
}
