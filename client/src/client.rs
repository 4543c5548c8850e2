//! The client handle applications hold: requests, acks, typing, the event
//! subscription, and the session state shared with the reconnect task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kanal_proto::codes::CloseCode;
use kanal_proto::pb;
use kanal_proto::pb::{request, response};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{ClientConfig, Credentials};
use crate::connection::{Dialer, Link};
use crate::error::ClientError;
use crate::events::{self, ClientEvent, EVENT_BUFFER, Events, TypingSink};
use crate::pipeline::Pipeline;
use crate::reconnect;

/// Longest wait for the first connection and its Welcome.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest time a request or ack waits for a lost connection to come back.
const WAIT_FOR_LINK: Duration = Duration::from_secs(30);

/// Longest wait for a response once a request is sent.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to a Kanal server, kept open (and reopened) in the background.
///
/// Cheap to clone; all clones share one session. When the connection is lost
/// the client resumes the session with its resume token, with exponential
/// backoff, and resynchronises the event stream; requests issued meanwhile
/// wait for it (up to 30 s).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

/// State shared by the handles and the reconnect task.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dialer: Dialer,
    /// The latest Welcome (its resume token opens the next connection).
    pub(crate) welcome: Mutex<pb::Welcome>,
    /// The current connection, or why there is none.
    pub(crate) link: watch::Sender<LinkState>,
    /// The event subscription; its lock also orders every change of `link`.
    pub(crate) subscription: tokio::sync::Mutex<Option<Subscription>>,
    pub(crate) typing_sink: TypingSink,
    /// The seq of the last event handed to the application.
    pub(crate) last_delivered: Arc<AtomicU64>,
    next_request_id: AtomicU64,
    /// Set by `close`: the reconnect task must stop.
    pub(crate) closing: AtomicBool,
}

/// Whether the session has a connection right now.
#[derive(Debug, Clone)]
pub(crate) enum LinkState {
    /// Connected; requests go here.
    Up(Arc<Link>),
    /// Lost; the reconnect task is working on it.
    Reconnecting {
        /// When the connection was lost.
        since: Instant,
        /// Why the connection (or the last attempt) failed.
        last_error: String,
    },
    /// Over for good: closed by us, or the server refused to resume.
    Ended(Arc<ClientError>),
}

/// An active `subscribe`.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) tx: mpsc::Sender<ClientEvent>,
    /// Reads the current connection's event stream.
    pub(crate) reader: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects, authenticates with `credentials`, and starts watching the
    /// connection. Fails with [`ClientError::Refused`] if the server refuses
    /// the Hello.
    pub async fn connect(
        config: ClientConfig,
        credentials: Credentials,
    ) -> Result<Client, ClientError> {
        let dialer = Dialer::new(config).await?;
        let (link, mut welcome) =
            tokio::time::timeout(CONNECT_TIMEOUT, dialer.open(&credentials, 1))
                .await
                .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT, "the Welcome"))??;
        if let (Credentials::Resume { token }, true) =
            (&credentials, welcome.resume_token.is_empty())
        {
            welcome.resume_token = token.clone();
        }
        let link = Arc::new(link);
        let typing_sink = TypingSink::default();
        tokio::spawn(events::read_datagrams(
            link.conn.clone(),
            typing_sink.clone(),
        ));
        let inner = Arc::new(Inner {
            dialer,
            welcome: Mutex::new(welcome),
            link: watch::Sender::new(LinkState::Up(link.clone())),
            subscription: tokio::sync::Mutex::new(None),
            typing_sink,
            last_delivered: Arc::new(AtomicU64::new(0)),
            next_request_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
        });
        tokio::spawn(reconnect::supervise(Arc::downgrade(&inner), link));
        Ok(Client { inner })
    }

    /// The authenticated party.
    pub fn party(&self) -> pb::Party {
        self.welcome().party.unwrap_or_default()
    }

    /// The token that resumes this session ([`Credentials::Resume`]); store it
    /// like a password. It may change after a reconnection.
    pub fn resume_token(&self) -> String {
        self.inner.welcome().resume_token.clone()
    }

    /// The server's domain, e.g. `acme.example`.
    pub fn server_domain(&self) -> String {
        self.inner.welcome().server_domain.clone()
    }

    /// The Welcome of the current (latest) connection.
    pub fn welcome(&self) -> pb::Welcome {
        self.inner.welcome().clone()
    }

    /// Why the session ended for good, if it did (the client was closed, or
    /// the server refused to resume it).
    pub fn session_error(&self) -> Option<ClientError> {
        match &*self.inner.link.borrow() {
            LinkState::Ended(error) => Some(error.duplicate()),
            _ => None,
        }
    }

    /// Starts a conversation with the parties `to` (addresses).
    pub async fn create_conversation(
        &self,
        to: &[&str],
        subject: &str,
    ) -> Result<pb::Conversation, ClientError> {
        let kind = request::Kind::CreateConversation(pb::CreateConversation {
            to: to.iter().map(|a| (*a).to_owned()).collect(),
            subject: subject.to_owned(),
        });
        match self.request(kind).await? {
            response::Kind::Conversation(conversation) => Ok(conversation),
            other => Err(unexpected("Conversation", &other)),
        }
    }

    /// Sends a text message with a fresh random `client_msg_id`.
    pub async fn send_text(&self, conversation: &str, text: &str) -> Result<pb::Sent, ClientError> {
        let body = pb::Body {
            kind: Some(pb::body::Kind::Text(text.to_owned())),
        };
        self.send(conversation, &new_client_msg_id(), body).await
    }

    /// Sends a message. Sending the same `client_msg_id` again returns the
    /// first message's `Sent` (with `duplicate` set) and stores nothing.
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

    /// Up to `limit` messages older than `before_seq` (0: the newest), oldest first.
    pub async fn history(
        &self,
        conversation: &str,
        before_seq: u64,
        limit: u32,
    ) -> Result<pb::HistoryPage, ClientError> {
        let kind = request::Kind::History(pb::History {
            conversation: conversation.to_owned(),
            before_seq,
            limit,
        });
        match self.request(kind).await? {
            response::Kind::HistoryPage(page) => Ok(page),
            other => Err(unexpected("HistoryPage", &other)),
        }
    }

    /// The caller's conversations, most recently active first.
    pub async fn conversations(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<pb::ConversationList, ClientError> {
        let kind = request::Kind::ListConversations(pb::ListConversations { limit, offset });
        match self.request(kind).await? {
            response::Kind::ConversationList(list) => Ok(list),
            other => Err(unexpected("ConversationList", &other)),
        }
    }

    /// One conversation.
    pub async fn conversation(&self, id: &str) -> Result<pb::Conversation, ClientError> {
        let kind = request::Kind::GetConversation(pb::GetConversation {
            conversation: id.to_owned(),
        });
        match self.request(kind).await? {
            response::Kind::Conversation(conversation) => Ok(conversation),
            other => Err(unexpected("Conversation", &other)),
        }
    }

    /// Moves the caller's delivered or read watermark up to `up_to_seq`.
    pub async fn mark(
        &self,
        conversation: &str,
        kind: pb::ReceiptKind,
        up_to_seq: u64,
    ) -> Result<(), ClientError> {
        let kind = request::Kind::MarkReceipt(pb::MarkReceipt {
            conversation: conversation.to_owned(),
            kind: kind as i32,
            up_to_seq,
        });
        match self.request(kind).await? {
            response::Kind::Done(_) => Ok(()),
            other => Err(unexpected("Done", &other)),
        }
    }

    /// Tells the other parties that the caller is (or stopped) typing. Best
    /// effort: a datagram, sent only while connected.
    pub fn typing(&self, conversation: &str, active: bool) -> Result<(), ClientError> {
        let datagram = pb::Datagram {
            kind: Some(pb::datagram::Kind::Typing(pb::Typing {
                conversation: conversation.to_owned(),
                active,
                from: String::new(),
            })),
        };
        let state = self.inner.link.borrow().clone();
        match state {
            LinkState::Up(link) => link.send_datagram(&datagram),
            LinkState::Reconnecting { since, last_error } => Err(ClientError::NotConnected {
                waited: since.elapsed(),
                last_error,
            }),
            LinkState::Ended(error) => Err(error.duplicate()),
        }
    }

    /// Starts the event stream with every event after `since`, then live
    /// events; after a reconnection it continues from the last event handed
    /// out. Once per client.
    pub async fn subscribe(&self, since: u64) -> Result<Events, ClientError> {
        let mut subscription = self.inner.subscription.lock().await;
        if subscription.is_some() {
            return Err(ClientError::AlreadySubscribed);
        }
        let state = self.inner.link.borrow().clone();
        if let LinkState::Ended(error) = &state {
            return Err(error.duplicate());
        }
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        self.inner.last_delivered.store(since, Ordering::Release);
        let mut active = Subscription {
            tx: tx.clone(),
            reader: None,
        };
        // While reconnecting, the reconnect task sends the Sync once it is back.
        if let LinkState::Up(link) = state {
            match start_sync(&link, since, &tx, false).await {
                Ok(reader) => active.reader = Some(reader),
                Err(error) if error.is_connection_lost() => {}
                Err(error) => return Err(error),
            }
        }
        *self
            .inner
            .typing_sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        *subscription = Some(active);
        Ok(Events::new(rx, self.inner.last_delivered.clone()))
    }

    /// Tells the server every event up to `seq` is processed; a resumed
    /// session reports it in `Welcome.acked_seq`.
    pub async fn ack(&self, seq: u64) -> Result<(), ClientError> {
        let mut after = 0;
        let mut retried = false;
        loop {
            let link = self.inner.wait_link(after).await?;
            match link
                .send_control(pb::client_control::Kind::Ack(pb::Ack { seq }))
                .await
            {
                Err(error) if error.is_connection_lost() && !retried => {
                    retried = true;
                    after = link.generation;
                }
                result => return result,
            }
        }
    }

    /// A request stream for many requests in flight at once (see
    /// [`Pipeline`]); it opens on first use and again after a reconnect.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.clone())
    }

    /// A fresh request id.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.inner.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The current link, once it is newer than generation `after`.
    pub(crate) async fn link_after(&self, after: u64) -> Result<Arc<Link>, ClientError> {
        self.inner.wait_link(after).await
    }

    /// Sends one request and returns the response's kind. An `Error` response
    /// becomes [`ClientError::Refused`]. Requests that are safe to repeat (all
    /// but `CreateConversation`) are retried once if the connection is lost
    /// while they are in flight.
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, ClientError> {
        let retry = !matches!(kind, request::Kind::CreateConversation(_));
        let request = pb::Request {
            id: self.next_request_id(),
            kind: Some(kind),
        };
        let mut after = 0;
        let mut retried = false;
        loop {
            let link = self.inner.wait_link(after).await?;
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, link.round_trip(&request))
                .await
                .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT, "a response"))
                .and_then(|result| result);
            match outcome {
                Ok(response) => {
                    return match response.kind {
                        Some(response::Kind::Error(error)) => Err(ClientError::refused(error)),
                        Some(kind) => Ok(kind),
                        None => Err(ClientError::Protocol("response without a kind".into())),
                    };
                }
                Err(error) if error.is_connection_lost() && retry && !retried => {
                    tracing::debug!(%error, id = request.id, "request lost with its connection; retrying");
                    retried = true;
                    after = link.generation;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Closes the session: no more reconnecting, pending acks are flushed,
    /// the event stream ends and later calls fail with [`ClientError::Closed`].
    pub async fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        let previous = {
            let mut subscription = self.inner.subscription.lock().await;
            if let Some(Subscription {
                reader: Some(reader),
                ..
            }) = subscription.take()
            {
                reader.abort();
            }
            *self
                .inner
                .typing_sink
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            self.inner
                .link
                .send_replace(LinkState::Ended(Arc::new(ClientError::Closed)))
        };
        if let LinkState::Up(link) = previous {
            link.flush_control(Duration::from_secs(2)).await;
            link.close(CloseCode::Normal, "bye");
        }
        // Let the close frame reach the server before the socket goes away.
        // A shared endpoint stays open (and serves other clients), so its
        // driver sends the close frame anyway; waiting for it to be idle
        // would wait for every other client on it.
        if !self.inner.dialer.shares_endpoint() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.inner.dialer.endpoint().wait_idle(),
            )
            .await;
        }
    }
}

impl Inner {
    pub(crate) fn welcome(&self) -> std::sync::MutexGuard<'_, pb::Welcome> {
        self.welcome.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current link, once it is newer than generation `after` (the one a
    /// caller saw fail), waiting up to [`WAIT_FOR_LINK`] for a reconnection.
    pub(crate) async fn wait_link(&self, after: u64) -> Result<Arc<Link>, ClientError> {
        let mut rx = self.link.subscribe();
        let wait = async {
            loop {
                match &*rx.borrow_and_update() {
                    LinkState::Up(link) if link.generation > after => return Ok(link.clone()),
                    LinkState::Ended(error) => return Err(error.duplicate()),
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        };
        match tokio::time::timeout(WAIT_FOR_LINK, wait).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::NotConnected {
                waited: WAIT_FOR_LINK,
                last_error: match &*self.link.borrow() {
                    LinkState::Reconnecting { last_error, .. } => last_error.clone(),
                    _ => "connection lost".into(),
                },
            }),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The per-connection tasks hold the connection; close it so they end.
        if let LinkState::Up(link) = &*self.link.borrow() {
            link.close(CloseCode::Normal, "client dropped");
        }
        if let Some(Subscription {
            reader: Some(reader),
            ..
        }) = self.subscription.get_mut().take()
        {
            reader.abort();
        }
    }
}

/// Sends `Sync{since}` on `link` and starts reading its event stream into `tx`.
pub(crate) async fn start_sync(
    link: &Link,
    since: u64,
    tx: &mpsc::Sender<ClientEvent>,
    announce_reconnect: bool,
) -> Result<JoinHandle<()>, ClientError> {
    link.send_control(pb::client_control::Kind::Sync(pb::Sync { since }))
        .await?;
    Ok(tokio::spawn(events::read_events(
        link.conn.clone(),
        tx.clone(),
        announce_reconnect,
    )))
}

/// A random `client_msg_id`: 128 bits as 32 hex characters.
fn new_client_msg_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

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

/// The `Sent` of a response to a `Send` request.
pub(crate) fn sent(kind: response::Kind) -> Result<pb::Sent, ClientError> {
    match kind {
        response::Kind::Sent(sent) => Ok(sent),
        other => Err(unexpected("Sent", &other)),
    }
}

fn unexpected(wanted: &str, got: &response::Kind) -> ClientError {
    let got = match got {
        response::Kind::Error(_) => "Error",
        response::Kind::Conversation(_) => "Conversation",
        response::Kind::Sent(_) => "Sent",
        response::Kind::HistoryPage(_) => "HistoryPage",
        response::Kind::ConversationList(_) => "ConversationList",
        response::Kind::Done(_) => "Done",
    };
    ClientError::Protocol(format!("expected a {wanted} response, got {got}"))
}
