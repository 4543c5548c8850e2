//! A pipelined request stream: many requests in flight on one QUIC stream,
//! answered in order (PROTOCOL.md §7.1).
//!
//! [`Client::request`](crate::Client::request) opens a stream per request,
//! which is simplest and lets unrelated requests overtake each other. A
//! [`Pipeline`] is for high-rate senders: its requests share one stream, so
//! a burst of sends costs the server no stream setup per message and
//! reaches its commits together. Any number of tasks may use one `Pipeline`
//! at once.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use kanal_proto::io::FrameReader;
use kanal_proto::pb::{request, response};
use kanal_proto::{frame, limits, pb};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::connection::Link;
use crate::error::{ClientError, from_frame_error};
use crate::request::{REQUEST_TIMEOUT, kind_of, safe_to_repeat, send_request, sent};
use crate::session::Session;

/// A request frame waiting to be written, and where its response goes.
type Job = (Bytes, oneshot::Sender<Result<pb::Response, ClientError>>);

/// Requests queued for a stream before callers wait for room.
const QUEUE: usize = limits::MAX_PIPELINED_REQUESTS;

/// One request stream shared by any number of callers; see the module docs.
/// Cheap to clone: clones share the stream.
#[derive(Clone, Debug)]
pub struct Pipeline {
    session: Arc<Session>,
    stream: Arc<Mutex<Option<Stream>>>,
}

/// The stream currently open, and the link it is on.
#[derive(Debug)]
struct Stream {
    link: Arc<Link>,
    jobs: mpsc::Sender<Job>,
}

impl Pipeline {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        Self {
            session,
            stream: Arc::new(Mutex::new(None)),
        }
    }

    /// Sends a message with the caller's `client_msg_id`, as
    /// [`Client::send`](crate::Client::send) does, on the shared stream.
    pub async fn send(
        &self,
        conversation: &str,
        client_msg_id: &str,
        body: pb::Body,
    ) -> Result<pb::Sent, ClientError> {
        sent(
            self.request(send_request(conversation, client_msg_id, body))
                .await?,
        )
    }

    /// Sends one request on the shared stream and returns the response's
    /// kind, with the retry rules of
    /// [`Client::request`](crate::Client::request): an `Error` response
    /// becomes [`ClientError::Refused`], and requests safe to repeat are
    /// retried once, on the next connection, if the connection is lost. A
    /// stream that fails on a live connection fails its requests.
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, ClientError> {
        let retry = safe_to_repeat(&kind);
        let id = self.session.next_request_id();
        // Encoded once; a retry writes the same bytes.
        let frame = frame::encode_to_bytes(&pb::Request {
            id,
            kind: Some(kind),
        });
        let mut after = 0;
        let mut retried = false;
        loop {
            let (link, jobs) = self.stream_after(after).await?;
            let (tx, rx) = oneshot::channel();
            if jobs.send((frame.clone(), tx)).await.is_err() {
                // The stream ended before taking the request: nothing was
                // sent, so trying a new stream is always safe.
                continue;
            }
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, rx)
                .await
                .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT, "a response"))
                .and_then(|answer| answer.unwrap_or_else(|_| Err(stream_gone())))
                .and_then(|response| check_id(response, id));
            match outcome {
                Ok(response) => return kind_of(response),
                // Only a lost connection is worth a retry: a stream that
                // failed on a live connection would fail again.
                Err(error)
                    if error.is_connection_lost()
                        && link.conn.close_reason().is_some()
                        && retry
                        && !retried =>
                {
                    tracing::debug!(%error, id, "pipelined request lost; retrying");
                    retried = true;
                    after = link.generation;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The open stream, or a new one on a link newer than generation `after`
    /// if the stream is gone or belongs to an older link.
    async fn stream_after(
        &self,
        after: u64,
    ) -> Result<(Arc<Link>, mpsc::Sender<Job>), ClientError> {
        let mut stream = self.stream.lock().await;
        if let Some(open) = stream.as_ref()
            && open.link.generation > after
            && !open.jobs.is_closed()
        {
            return Ok((open.link.clone(), open.jobs.clone()));
        }
        let link = self.session.wait_link(after).await?;
        let (send, recv) = link.conn.open_bi().await?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(drive(link.clone(), send, recv, queue));
        *stream = Some(Stream {
            link: link.clone(),
            jobs: jobs.clone(),
        });
        Ok((link, jobs))
    }
}

/// Writes queued requests and hands each response to its waiter, in order,
/// until the queue's senders are gone and every response has arrived, or
/// the stream fails (then every waiter gets the error).
async fn drive(
    link: Arc<Link>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut reader = FrameReader::new(recv, limits::MAX_RESPONSE_FRAME);
    let mut waiting: VecDeque<oneshot::Sender<Result<pb::Response, ClientError>>> = VecDeque::new();
    let mut open = true;
    let failure = loop {
        tokio::select! {
            biased;
            frame = reader.next_frame(), if !waiting.is_empty() => {
                let response = match frame {
                    Ok(Some(body)) => match frame::decode_body::<pb::Response>(body) {
                        Ok(response) => response,
                        Err(e) => break from_frame_error(e),
                    },
                    Ok(None) => break ClientError::Protocol(
                        "request stream ended with requests unanswered".into(),
                    ),
                    Err(e) => break from_frame_error(e),
                };
                if let Some(waiter) = waiting.pop_front() {
                    let _ = waiter.send(Ok(response));
                }
            }
            job = queue.recv(), if open && waiting.len() < limits::MAX_PIPELINED_REQUESTS => {
                match job {
                    Some((frame, waiter)) => {
                        if let Err(e) = send.write_all(&frame).await {
                            let error = ClientError::from(e);
                            let _ = waiter.send(Err(error.duplicate()));
                            break error;
                        }
                        waiting.push_back(waiter);
                    }
                    None => {
                        open = false;
                        let _ = send.finish();
                    }
                }
            }
            else => return,
        }
    };
    tracing::debug!(error = %failure, generation = link.generation, "request stream failed");
    for waiter in waiting {
        let _ = waiter.send(Err(failure.duplicate()));
    }
}

fn check_id(response: pb::Response, id: u64) -> Result<pb::Response, ClientError> {
    if response.id == id {
        Ok(response)
    } else {
        Err(ClientError::Protocol(format!(
            "response id {} where request {id} was next on the stream",
            response.id
        )))
    }
}

/// The stream's task ended before answering: its connection went away.
fn stream_gone() -> ClientError {
    ClientError::ConnectionLost {
        code: None,
        detail: "the request stream ended".into(),
    }
}
