//! The account's event stream as the application sees it: one ordered
//! sequence across reconnections, with replays after a resync filtered out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kanal_proto::io::FrameReader;
use kanal_proto::{limits, pb};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::error::{ClientError, from_frame_error};

/// Events buffered between the network and the application.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// Something the server told the client, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// An event of the account's log. Each seq is handed out exactly once,
    /// in increasing order, across reconnections.
    Event(pb::Event),
    /// Every stored event up to `head` has been delivered; what follows is
    /// live. Comes once per connection, so again after [`ClientEvent::Reconnected`].
    SyncComplete {
        /// The account's event head when the replay ended.
        head: u64,
    },
    /// A party started or stopped typing (ephemeral, may be lost).
    Typing(pb::Typing),
    /// The connection was lost and is back; missed events follow.
    Reconnected,
}

/// The stream of [`ClientEvent`]s from [`crate::Client::subscribe`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<ClientEvent>,
    last: Arc<AtomicU64>,
}

impl Events {
    pub(crate) fn new(rx: mpsc::Receiver<ClientEvent>, last: Arc<AtomicU64>) -> Self {
        Self { rx, last }
    }

    /// The next event; `None` once the client is closed or its session ended
    /// for good (see [`crate::Client::session_error`]).
    pub async fn next(&mut self) -> Option<ClientEvent> {
        loop {
            let item = self.rx.recv().await?;
            if let ClientEvent::Event(event) = &item {
                let last = self.last.load(Ordering::Acquire);
                if event.seq <= last {
                    // Replayed by a resync after a reconnection: already handed out.
                    continue;
                }
                if event.seq != last + 1 {
                    tracing::warn!(last, seq = event.seq, "gap in the event stream");
                }
                self.last.store(event.seq, Ordering::Release);
            }
            return Some(item);
        }
    }

    /// The seq of the last event handed to the application (or the `since`
    /// of the subscription when none was).
    pub fn last_seq(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
}

/// Where typing datagrams go once the application subscribed.
pub(crate) type TypingSink = Arc<Mutex<Option<mpsc::Sender<ClientEvent>>>>;

/// Reads the connection's event stream into `tx` until the connection or the
/// receiver goes away. A reader on a reconnected link first announces it.
pub(crate) async fn read_events(
    conn: quinn::Connection,
    tx: mpsc::Sender<ClientEvent>,
    announce_reconnect: bool,
) {
    if announce_reconnect && tx.send(ClientEvent::Reconnected).await.is_err() {
        return;
    }
    let recv = match conn.accept_uni().await {
        Ok(recv) => recv,
        Err(error) => {
            tracing::debug!(%error, "no event stream");
            return;
        }
    };
    let mut reader = FrameReader::new(recv, limits::MAX_PUSH_FRAME);
    loop {
        let event = match reader.next::<pb::Push>().await.map_err(from_frame_error) {
            Ok(Some(pb::Push {
                kind: Some(pb::push::Kind::Event(event)),
            })) => ClientEvent::Event(event),
            Ok(Some(pb::Push {
                kind: Some(pb::push::Kind::SyncComplete(done)),
            })) => ClientEvent::SyncComplete { head: done.head },
            // A push of a kind from a newer protocol revision.
            Ok(Some(pb::Push { kind: None })) => continue,
            Ok(None) => {
                // Without its event stream the session is useless: start over.
                tracing::warn!("server ended the event stream; reconnecting");
                conn.close(
                    kanal_proto::codes::CloseCode::ProtocolViolation
                        .value()
                        .into(),
                    b"event stream ended",
                );
                return;
            }
            Err(ClientError::ConnectionLost { .. } | ClientError::Closed) => return,
            Err(error) => {
                tracing::warn!(%error, "bad event stream; reconnecting");
                conn.close(
                    kanal_proto::codes::CloseCode::ProtocolViolation
                        .value()
                        .into(),
                    b"bad event stream",
                );
                return;
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Forwards the connection's typing datagrams to the subscriber, if any,
/// dropping them when it lags (they are ephemeral).
pub(crate) async fn read_datagrams(conn: quinn::Connection, sink: TypingSink) {
    while let Ok(bytes) = conn.read_datagram().await {
        let typing = match pb::Datagram::decode(bytes) {
            Ok(pb::Datagram {
                kind: Some(pb::datagram::Kind::Typing(typing)),
            }) => typing,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "undecodable datagram");
                continue;
            }
        };
        let sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = sink.as_ref() {
            let _ = tx.try_send(ClientEvent::Typing(typing));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> ClientEvent {
        ClientEvent::Event(pb::Event { seq, kind: None })
    }

    #[tokio::test]
    async fn replays_are_dropped_and_order_is_kept() {
        let (tx, rx) = mpsc::channel(16);
        let last = Arc::new(AtomicU64::new(2));
        let mut events = Events::new(rx, last.clone());
        for item in [
            event(1),
            event(3),
            event(4),
            ClientEvent::Reconnected,
            event(3),
            event(4),
            event(5),
            ClientEvent::SyncComplete { head: 5 },
        ] {
            tx.send(item).await.expect("send");
        }
        drop(tx);
        let mut seen = Vec::new();
        while let Some(item) = events.next().await {
            seen.push(item);
        }
        assert_eq!(
            seen,
            vec![
                event(3),
                event(4),
                ClientEvent::Reconnected,
                event(5),
                ClientEvent::SyncComplete { head: 5 }
            ]
        );
        assert_eq!(events.last_seq(), 5);
        assert_eq!(last.load(Ordering::Acquire), 5);
    }
}
