//! The event stream of a session: after `Sync{since}`, every stored event
//! after `since`, a `SyncComplete`, then live events as they commit;
//! replayed again from the store whenever live delivery lagged.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kanal_proto::codes::CloseCode;
use kanal_proto::frame;
use kanal_proto::io::write_frame;
use kanal_proto::pb;
use quinn::{Connection, SendStream};

use super::render;
use super::session::close;
use crate::model::PartyId;
use crate::node::Node;
use crate::node::hub::Subscription;
use crate::store::StoreError;

/// Events read from the store per query while replaying.
const REPLAY_PAGE: u32 = 512;

/// Bytes of message bodies per replay query (past its first event): what a
/// connection that stops reading can make the server hold is one such page
/// and its encoding, not [`REPLAY_PAGE`] messages of the largest size.
const REPLAY_BYTES: usize = 128 * 1024;

/// Writes `party`'s event stream on a new uni stream until the connection
/// ends.
pub(super) async fn pump(
    node: Arc<Node>,
    connection: Connection,
    party: PartyId,
    since: u64,
    mut subscription: Subscription,
) {
    let result: Result<(), PumpError> = async {
        let mut send = connection.open_uni().await?;
        let head = node.store.event_head(party).await?;
        let mut last = replay(&node, &mut send, party, since.min(head)).await?;
        let complete = pb::Push {
            kind: Some(pb::push::Kind::SyncComplete(pb::SyncComplete {
                head: last,
            })),
        };
        write_frame(&mut send, &complete).await?;
        loop {
            if subscription.lagged.swap(false, Ordering::AcqRel) {
                while subscription.events.try_recv().is_ok() {}
                last = replay(&node, &mut send, party, last).await?;
                continue;
            }
            let live = tokio::select! {
                event = subscription.events.recv() => event,
                _ = connection.closed() => None,
            };
            let Some(live) = live else {
                return Ok(());
            };
            if live.seq <= last {
                continue;
            }
            let event = match live.event {
                Some(event) if live.seq == last + 1 => event,
                // A gap (events were dropped for us), or news of events
                // another node committed: the store has them all.
                _ => {
                    last = replay(&node, &mut send, party, last).await?;
                    continue;
                }
            };
            // Rendered once for every session that receives this event.
            let kind = event.rendered(render::encoded_event_kind).clone();
            let header = render::push_event_header(live.seq, kind.len());
            send.write_all_chunks(&mut [header, kind]).await?;
            last = live.seq;
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
    node: &Node,
    send: &mut SendStream,
    party: PartyId,
    mut since: u64,
) -> Result<u64, PumpError> {
    loop {
        let events = node
            .store
            .events_since(party, since, REPLAY_PAGE, REPLAY_BYTES)
            .await?;
        let Some(last) = events.last().map(|(seq, _)| *seq) else {
            return Ok(since);
        };
        let mut buf = bytes::BytesMut::new();
        for (seq, event) in &events {
            let push = pb::Push {
                kind: Some(pb::push::Kind::Event(pb::Event {
                    seq: *seq,
                    kind: Some(render::event_kind(event)),
                })),
            };
            frame::encode(&push, &mut buf);
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
