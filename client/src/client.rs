//! The client handle applications hold: requests, acks, typing and the
//! event subscription.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use kanal_proto::codes::CloseCode;
use kanal_proto::pb;
use kanal_proto::pb::{request, response};
use tokio::sync::mpsc;

use crate::config::{ClientConfig, Credentials};
use crate::connection::Dialer;
use crate::error::ClientError;
use crate::events::{self, EVENT_BUFFER, Events, TypingSink};
use crate::pipeline::Pipeline;
use crate::reconnect;
use crate::request::{REQUEST_TIMEOUT, kind_of, safe_to_repeat, send_request, sent, unexpected};
use crate::session::{CONNECT_TIMEOUT, LinkState, Session, Subscription, start_sync};

/// A connection to a Kanal server, kept open (and reopened) in the background.
///
/// Cheap to clone; all clones share one session. When the connection is lost
/// the client resumes the session with its resume token, with exponential
/// backoff, and resynchronises the event stream; requests issued meanwhile
/// wait for it (up to 30 s).
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Session>,
}

impl Client {
    /// Connects, authenticates with `credentials`, and starts watching the
    /// connection. Fails with [`ClientError::Refused`] if the server refuses
    /// the Hello.
    pub async fn connect(
        config: ClientConfig,
        credentials: Credentials,
    ) -> Result<Client, ClientError> {
        let availability = config.availability;
        let dialer = Dialer::new(config).await?;
        let (link, mut welcome) =
            tokio::time::timeout(CONNECT_TIMEOUT, dialer.open(&credentials, 1, availability))
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
        let inner = Arc::new(Session::new(dialer, welcome, link.clone(), typing_sink));
        *inner
            .availability
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = availability;
        tokio::spawn(reconnect::supervise(Arc::downgrade(&inner), link));
        Ok(Client { inner })
    }

    /// The session all clones share.
    pub(crate) fn session(&self) -> &Session {
        &self.inner
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
        Pipeline::new(self.inner.clone())
    }

    /// Sends one request and returns the response's kind. An `Error` response
    /// becomes [`ClientError::Refused`]. Requests that are safe to repeat (all
    /// but `CreateConversation`, `Transfer` and an `Assign` back to the
    /// queue) are retried once if the connection is lost while they are in
    /// flight.
    pub async fn request(&self, kind: request::Kind) -> Result<response::Kind, ClientError> {
        let retry = safe_to_repeat(&kind);
        let request = pb::Request {
            id: self.inner.next_request_id(),
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
                Ok(response) => return kind_of(response),
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

/// A random `client_msg_id`: 128 bits as 32 hex characters.
pub(crate) fn new_client_msg_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}
