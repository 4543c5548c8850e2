//! The session that all clones of a [`crate::Client`], their pipelines and
//! the reconnect task share: the current connection (or why there is none),
//! the latest Welcome, and the event subscription.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kanal_proto::codes::CloseCode;
use kanal_proto::pb;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::connection::{Dialer, Link};
use crate::error::ClientError;
use crate::events::{self, ClientEvent, TypingSink};

/// Longest wait for a connection and its Welcome.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest time a request or ack waits for a lost connection to come back.
const WAIT_FOR_LINK: Duration = Duration::from_secs(30);

/// State shared by the handles and the reconnect task.
#[derive(Debug)]
pub(crate) struct Session {
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
    /// The desk availability the application last set; said again on each
    /// new connection.
    pub(crate) availability: Mutex<Option<pb::Availability>>,
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

impl Session {
    /// A session that has just received `welcome` on `link`.
    pub(crate) fn new(
        dialer: Dialer,
        welcome: pb::Welcome,
        link: Arc<Link>,
        typing_sink: TypingSink,
    ) -> Self {
        Self {
            dialer,
            welcome: Mutex::new(welcome),
            link: watch::Sender::new(LinkState::Up(link)),
            subscription: tokio::sync::Mutex::new(None),
            typing_sink,
            last_delivered: Arc::new(AtomicU64::new(0)),
            next_request_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            availability: Mutex::new(None),
        }
    }

    /// The Welcome of the current (latest) connection.
    pub(crate) fn welcome(&self) -> std::sync::MutexGuard<'_, pb::Welcome> {
        self.welcome.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh request id.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
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

impl Drop for Session {
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
