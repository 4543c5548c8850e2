//! The receiving side: peers connect, prove who they are, and send their
//! transactions; each is applied once, in the peer's sequence order,
//! through the writer, and acknowledged once it is committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use kanal_proto::fed;
use kanal_proto::io::{FrameReader, write_frame};

use super::{HANDSHAKE_TIMEOUT, MAX_TRANSACTION_FRAME, Shared, tls, trust};
use crate::core::engine::Reply;
use crate::core::federation::inbox::{Offered, PeerInbox};
use crate::core::federation::receive::{self, Answer, Received};
use crate::core::federation::wire::Malformed;

/// How far ahead of the last applied transaction a peer may send.
const WINDOW: u64 = 1024;

/// Most transactions applied before an acknowledgement goes out.
const ACK_EVERY: usize = 64;

/// Longest an acknowledgement waits, once nothing more is being applied,
/// for more commits to cover: at a low rate one goes out for a few
/// transactions rather than one each (FEDERATION.md §5.2).
const ACK_DELAY: Duration = Duration::from_millis(20);

/// The receiving state from each peer, shared by its connections.
#[derive(Debug, Default)]
pub(super) struct Inboxes {
    by_peer: Mutex<HashMap<String, Arc<Mutex<PeerInbox<Received>>>>>,
}

impl Inboxes {
    /// The state from `peer`, made from what the store says it committed.
    async fn of(&self, shared: &Shared, peer: &str) -> Option<Arc<Mutex<PeerInbox<Received>>>> {
        if let Some(inbox) = self.lock().get(peer) {
            return Some(inbox.clone());
        }
        let committed = match shared.node.store.peer_committed(peer).await {
            Ok(committed) => committed,
            Err(e) => {
                tracing::error!(%peer, error = %e, "federation: the peer's cursor could not be read");
                return None;
            }
        };
        Some(
            self.lock()
                .entry(peer.to_owned())
                .or_insert_with(|| Arc::new(Mutex::new(PeerInbox::new(committed, WINDOW))))
                .clone(),
        )
    }

    /// A session from `peer` ended with nothing of it still being applied:
    /// once no other session holds the state, it is dropped (the store's
    /// cursor says where a later one starts), so a peer that is gone costs
    /// nothing.
    fn release(&self, peer: &str, inbox: Arc<Mutex<PeerInbox<Received>>>) {
        let mut by_peer = self.lock();
        // This session's and the map's: no one else's.
        if Arc::strong_count(&inbox) == 2 {
            by_peer.remove(peer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<PeerInbox<Received>>>>> {
        self.by_peer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts peers until the endpoint closes.
pub(super) async fn serve(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let Ok(permit) = shared.sessions.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let remote = incoming.remote_address();
            if let Err(why) = session(&shared, incoming).await {
                tracing::warn!(%remote, "federation: {why}");
            }
        });
    }
}

/// Why a peer's connection ended before its time.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("refused: {0}")]
    Refused(String),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream: {0}")]
    Frame(#[from] kanal_proto::frame::FrameError),
    #[error("write: {0}")]
    Write(#[from] std::io::Error),
    #[error("timed out")]
    Timeout(#[from] tokio::time::error::Elapsed),
}

/// Close codes of federation connections (FEDERATION.md §6).
const CLOSE_REFUSED: u32 = 0x3;
const CLOSE_PROTOCOL: u32 = 0x1;

async fn session(shared: &Shared, incoming: quinn::Incoming) -> Result<(), Ended> {
    let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await??;
    let remote = connection.remote_address();
    let (mut send, recv) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, connection.accept_bi()).await??;
    let mut frames = FrameReader::new(recv, MAX_TRANSACTION_FRAME);
    let open: fed::Open = tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next())
        .await??
        .ok_or_else(|| Ended::Refused("the stream ended before Open".into()))?;
    let origin = match opened(shared, &connection, &open) {
        Ok(origin) => origin,
        Err((code, why)) => {
            let why = format!("{remote} {why}");
            return Err(refuse_open(&connection, &mut send, code, why).await);
        }
    };
    shared.sign_of_life(&origin);
    super::typing::attach(&shared.node, &shared.typing, &origin, &connection);
    let Some(inbox) = shared.inboxes.of(shared, &origin).await else {
        connection.close(quinn::VarInt::from_u32(CLOSE_REFUSED), b"try later");
        return Err(Ended::Refused("the store could not be read".into()));
    };
    let committed = lock(&inbox).ack();
    write_frame(
        &mut send,
        &receipt(fed::receipt::Kind::Ready(fed::Ready { committed })),
    )
    .await?;
    tracing::debug!(%origin, %remote, committed, "federation: peer connected");
    let mut applying = Applying::new();
    let ended = receive(
        shared,
        &connection,
        &origin,
        &inbox,
        send,
        frames,
        &mut applying,
    )
    .await;
    // What is still being applied is waited for: the cursor then says what
    // it committed, before another connection, or a new state read from the
    // store, takes over.
    while let Some((seq, malformed, reply)) = applying.next().await {
        let mut inbox = lock(&inbox);
        match receive::answer(seq, malformed, &reply) {
            Answer::NotStored(_) => inbox.abandon(),
            Answer::Consumed(_) => inbox.committed(seq),
        }
    }
    shared.inboxes.release(&origin, inbox);
    ended
}

/// The transactions of a session being applied, in the order they came.
type Applying = FuturesOrdered<BoxFuture<'static, (u64, Option<Malformed>, Reply)>>;

/// Reads `origin`'s transactions, has each applied in order, and tells it
/// what is committed, until the stream or the connection ends.
async fn receive(
    shared: &Shared,
    connection: &quinn::Connection,
    origin: &String,
    inbox: &Mutex<PeerInbox<Received>>,
    mut send: quinn::SendStream,
    mut frames: FrameReader<quinn::RecvStream>,
    applying: &mut Applying,
) -> Result<(), Ended> {
    // Applied since the last acknowledgement: one goes out at least every
    // ACK_EVERY, and ACK_DELAY after nothing more is being applied.
    let mut unacked = 0;
    let mut ack_due: Option<tokio::time::Instant> = None;
    let mut logs = LogBudget::new(origin);
    loop {
        tokio::select! {
            frame = frames.next_frame() => {
                let Some(bytes) = frame? else {
                    return Ok(());
                };
                // Past the peer's rate, its transaction waits for a token,
                // and the stream is not read meanwhile: the peer waits.
                if let Some(buckets) = &shared.inbound {
                    while let Err(wait) = buckets.try_take(origin) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let (seq, received) = match receive::frame(bytes) {
                    Ok(frame) => frame,
                    Err(why) => {
                        connection.close(quinn::VarInt::from_u32(CLOSE_PROTOCOL), b"undecodable transaction");
                        return Err(Ended::Refused(format!("{origin} sent an undecodable frame: {why}")));
                    }
                };
                shared.sign_of_life(origin);
                let offered = lock(inbox).offer(seq, received);
                match offered {
                    Offered::Duplicate => {
                        let up_to = lock(inbox).ack();
                        write_frame(&mut send, &receipt(fed::receipt::Kind::Ack(fed::Ack { up_to }))).await?;
                    }
                    Offered::Held => {}
                    Offered::OutOfWindow => {
                        connection.close(quinn::VarInt::from_u32(CLOSE_PROTOCOL), b"beyond the window");
                        return Err(Ended::Refused(format!(
                            "{origin} sent transaction {seq}, beyond the window of {WINDOW}"
                        )));
                    }
                    Offered::Apply(run) => {
                        for (seq, received) in run {
                            // A malformed one is consumed as a tombstone: the peer is told why.
                            let (command, malformed) = receive::command(origin, seq, received);
                            let reply = shared.node.writer.enqueue(command).await;
                            applying.push_back(Box::pin(async move { (seq, malformed, reply.await) }));
                        }
                    }
                }
            }
            Some((seq, malformed, reply)) = applying.next(), if !applying.is_empty() => {
                match receive::answer(seq, malformed, &reply) {
                    Answer::NotStored(why) => {
                        // Not committed: the peer sends it again.
                        lock(inbox).abandon();
                        tracing::warn!(%origin, seq, "federation: a transaction could not be stored: {why}");
                        connection.close(quinn::VarInt::from_u32(CLOSE_REFUSED), b"try later");
                        return Err(Ended::Refused("a transaction could not be stored".into()));
                    }
                    Answer::Consumed(Some(refused)) => {
                        if logs.take() {
                            tracing::warn!(%origin, seq, code = refused.code, "federation: refused a transaction: {}", refused.reason);
                        }
                        write_frame(&mut send, &receipt(fed::receipt::Kind::Refuse(refused))).await?;
                    }
                    Answer::Consumed(None) => {}
                }
                let up_to = {
                    let mut inbox = lock(inbox);
                    inbox.committed(seq);
                    inbox.ack()
                };
                unacked += 1;
                if unacked >= ACK_EVERY {
                    unacked = 0;
                    ack_due = None;
                    write_frame(&mut send, &receipt(fed::receipt::Kind::Ack(fed::Ack { up_to }))).await?;
                } else if applying.is_empty() && ack_due.is_none() {
                    ack_due = Some(tokio::time::Instant::now() + ACK_DELAY);
                }
            }
            () = tokio::time::sleep_until(ack_due.unwrap_or_else(tokio::time::Instant::now)), if ack_due.is_some() => {
                unacked = 0;
                ack_due = None;
                let up_to = lock(inbox).ack();
                write_frame(&mut send, &receipt(fed::receipt::Kind::Ack(fed::Ack { up_to }))).await?;
            }
        }
    }
}

/// The domain whose server opened `connection` with `open`, once its
/// certificate proves it (FEDERATION.md §3), or the code and reason it is
/// refused with.
fn opened(
    shared: &Shared,
    connection: &quinn::Connection,
    open: &fed::Open,
) -> Result<String, (fed::FedCode, String)> {
    let configured = shared.node.federation.peers.get(&open.origin);
    let origin = trust::for_accepting(
        &shared.node.domain,
        &open.origin,
        configured.as_ref(),
        shared.webpki.as_deref(),
        &tls::peer_chain(connection),
    )
    .map_err(|why| (fed::FedCode::FedUntrusted, why))?;
    if open.version != kanal_proto::FEDERATION_VERSION {
        let why = format!("speaks version {} for {origin}", open.version);
        return Err((fed::FedCode::FedVersion, why));
    }
    Ok(origin)
}

/// Refusals a session logs one line each; the rest are counted, and the
/// count is logged when the session ends: a peer sending nothing but bad
/// transactions cannot flood the log.
const LOGGED_REFUSALS: u32 = 20;

/// What a session may still log of its refusals; the count of the rest is
/// logged when the session ends.
#[derive(Debug)]
struct LogBudget {
    origin: String,
    logged: u32,
    unlogged: u64,
}

impl LogBudget {
    fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            logged: 0,
            unlogged: 0,
        }
    }

    /// Whether this refusal gets a line of its own.
    fn take(&mut self) -> bool {
        if self.logged < LOGGED_REFUSALS {
            self.logged += 1;
            true
        } else {
            self.unlogged += 1;
            false
        }
    }
}

impl Drop for LogBudget {
    fn drop(&mut self) {
        if self.unlogged > 0 {
            tracing::warn!(origin = %self.origin, unlogged = self.unlogged, "federation: more transactions were refused than logged");
        }
    }
}

/// Tells the peer why its Open is refused, and closes the connection.
async fn refuse_open(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: fed::FedCode,
    reason: String,
) -> Ended {
    let refused = fed::Refuse {
        seq: 0,
        code: code as u32,
        reason: reason.clone(),
    };
    let _ = write_frame(send, &receipt(fed::receipt::Kind::RefusedOpen(refused))).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, send.stopped()).await;
    connection.close(quinn::VarInt::from_u32(CLOSE_REFUSED), b"open refused");
    Ended::Refused(reason)
}

fn lock(inbox: &Mutex<PeerInbox<Received>>) -> std::sync::MutexGuard<'_, PeerInbox<Received>> {
    inbox.lock().unwrap_or_else(PoisonError::into_inner)
}

fn receipt(kind: fed::receipt::Kind) -> fed::Receipt {
    fed::Receipt { kind: Some(kind) }
}
