//! Commands handed to the node that orders their conversation.
//!
//! A node that receives a command of a conversation whose slot another
//! node holds publishes it, encoded as JSON, on that node's order subject
//! with a reply subject of its own; the holder queues it on its writer in
//! the order received and publishes the reply once the command is durable
//! (or refused). Publishing is ordered, so commands one client pipelines
//! keep their order. If no node listens (the holder died and NATS says
//! so), or NATS is away, the command is ordered here: leases route
//! commands, claims keep every commit correct whoever orders it.
//!
//! If the connection to NATS drops while a command waits for its answer,
//! whether the holder got it is unknown. A command that changes nothing
//! when applied twice (see [`repeatable`]) is then ordered here at once;
//! any other is refused with a retry, so it is never applied twice
//! unasked.
//!
//! Subjects: `<prefix>.node.<id>.order` and `<prefix>.node.<id>.reply.<n>`,
//! with `<id>` the node's id in 16 hex digits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{StatusCode, connection::State};
use futures::FutureExt as _;
use futures::StreamExt as _;
use tokio::sync::{oneshot, watch};

use super::slots::Slots;
use crate::core::engine::{Command, Reply};
use crate::model::Refusal;
use crate::node::Node;
use crate::node::writer::{Routed, Router, WriterHandle};

/// How long a node waits for the holder of a slot to answer a command.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The subject node `id` takes orders on.
pub(super) fn order_subject(prefix: &str, id: i64) -> String {
    format!("{prefix}.node.{:016x}.order", id_bits(id))
}

/// The subjects node `id` hears answers on (one per command).
pub(super) fn reply_subjects(prefix: &str, id: i64) -> String {
    format!("{prefix}.node.{:016x}.reply.*", id_bits(id))
}

fn id_bits(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

/// What a node hears back about a command it handed on.
enum Answer {
    Reply(Reply),
    NoOneListens,
}

/// Counts the times this node's connection to NATS dropped, so that
/// commands waiting for an answer stop waiting when it does.
#[derive(Default)]
pub(super) struct Disconnects(watch::Sender<u64>);

impl Disconnects {
    /// The connection dropped.
    pub(super) fn happened(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    /// Changes at the next drop.
    fn watch(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Whether applying `command` twice leaves what applying it once does: a
/// send is stored once per `client_msg_id`, a watermark only rises, and
/// the others set a value or add a member that is already there.
fn repeatable(command: &Command) -> bool {
    match command {
        Command::Send { .. }
        | Command::MarkReceipt { .. }
        | Command::AddInboxAgent { .. }
        | Command::SetAvailability { .. }
        | Command::SetCapacity { .. }
        | Command::ConfigureDesk { .. } => true,
        Command::AddParty(_)
        | Command::CreateConversation { .. }
        | Command::Desk { .. }
        | Command::DeskTick
        | Command::Federated { .. }
        | Command::Undelivered { .. }
        | Command::Replay { .. } => false,
    }
}

/// This node's [`Router`].
pub(super) struct Forwarder {
    me: i64,
    prefix: String,
    client: async_nats::Client,
    node: Arc<Node>,
    slots: Arc<Slots>,
    /// Commands handed on and not answered yet (each leaves within
    /// [`ANSWER_WITHIN`], answered or not).
    waiting: Arc<Mutex<Waiting>>,
    next: AtomicU64,
    disconnects: Arc<Disconnects>,
}

type Waiting = HashMap<u64, oneshot::Sender<Answer>>;

/// Takes command `n` off the waiting list when dropped.
struct Unlist {
    n: u64,
    waiting: Arc<Mutex<Waiting>>,
}

impl Drop for Unlist {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.n);
    }
}

impl Forwarder {
    pub(super) fn new(
        me: i64,
        prefix: &str,
        client: async_nats::Client,
        node: Arc<Node>,
        slots: Arc<Slots>,
        disconnects: Arc<Disconnects>,
    ) -> Self {
        Self {
            me,
            prefix: prefix.to_owned(),
            client,
            node,
            slots,
            waiting: Arc::default(),
            next: AtomicU64::new(1),
            disconnects,
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node that should order `command`, if another one.
    async fn holder(&self, command: &Command) -> Option<i64> {
        if self.client.connection_state() != State::Connected {
            return None;
        }
        let slot = match self.slots.slot_of(self.node.store.as_ref(), command).await {
            Ok(slot) => slot?,
            Err(e) => {
                tracing::warn!(error = %e, "finding a command's slot failed; ordered here");
                return None;
            }
        };
        self.slots.owner(slot).filter(|&owner| owner != self.me)
    }
}

#[async_trait::async_trait]
impl Router for Forwarder {
    async fn route(&self, command: Command) -> Routed {
        let Some(holder) = self.holder(&command).await else {
            tracing::debug!("ordered here");
            return Routed::Here(command);
        };
        tracing::debug!(
            holder = format_args!("{:016x}", id_bits(holder)),
            "handed on"
        );
        let payload = match serde_json::to_vec(&command) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "encoding a command for another node failed");
                return Routed::Here(command);
            }
        };
        let mut dropped = self.disconnects.watch();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(n, tx);
        let reply_to = format!("{}.node.{:016x}.reply.{n}", self.prefix, id_bits(self.me));
        let subject = order_subject(&self.prefix, holder);
        if let Err(e) = self
            .client
            .publish_with_reply(subject, reply_to, payload.into())
            .await
        {
            self.waiting().remove(&n);
            tracing::warn!(error = %e, "handing a command to its node failed; ordered here");
            return Routed::Here(command);
        }
        // Published into a connection that is already dropping: the drop
        // may have been counted before `dropped` was taken.
        if self.client.connection_state() != State::Connected {
            dropped.mark_changed();
        }
        // Answered, timed out or given up by its requester: it waits no more.
        let unlisted = Unlist {
            n,
            waiting: self.waiting.clone(),
        };
        let answer = async move {
            let answered = tokio::select! {
                answered = tokio::time::timeout(ANSWER_WITHIN, rx) => Some(answered),
                _ = dropped.changed() => None,
            };
            drop(unlisted);
            match answered {
                Some(Ok(Ok(Answer::Reply(reply)))) => Ok(reply),
                Some(Ok(Ok(Answer::NoOneListens))) => Err(command),
                // The holder took it but did not answer in time: whether it
                // is stored is unknown, so the client retries (a send with
                // the same client_msg_id is stored once).
                Some(Ok(Err(_)) | Err(_)) => Ok(Reply::Refused(Refusal::internal(
                    "the node ordering this conversation did not answer; retry",
                ))),
                // Whether it reached the holder is unknown too, but NATS is
                // away: what is safe to repeat is ordered here.
                None if repeatable(&command) => Err(command),
                None => Ok(Reply::Refused(Refusal::internal(
                    "the connection to the node ordering this conversation dropped; retry",
                ))),
            }
        };
        Routed::Away(answer.boxed())
    }
}

/// Hands answers to the commands this node handed on.
pub(super) async fn take_answers(mut answers: async_nats::Subscriber, forwarder: Arc<Forwarder>) {
    while let Some(message) = answers.next().await {
        let Some(n) = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let Some(waiter) = forwarder.waiting().remove(&n) else {
            continue;
        };
        let answer = if message.status == Some(StatusCode::NO_RESPONDERS) {
            Answer::NoOneListens
        } else {
            match serde_json::from_slice::<Reply>(&message.payload) {
                Ok(reply) => Answer::Reply(reply),
                Err(e) => {
                    tracing::error!(error = %e, "an answer from another node did not decode");
                    Answer::Reply(Reply::Refused(Refusal::internal(
                        "the node ordering this conversation answered garbage; retry",
                    )))
                }
            }
        };
        let _ = waiter.send(answer);
    }
}

/// Orders the commands other nodes hand to this one, in the order they
/// arrive, and answers each once it is durable.
pub(super) async fn take_orders(
    mut orders: async_nats::Subscriber,
    writer: WriterHandle,
    client: async_nats::Client,
) {
    while let Some(message) = orders.next().await {
        let Some(reply_to) = message.reply else {
            continue;
        };
        let reply = match serde_json::from_slice::<Command>(&message.payload) {
            Ok(command) => writer.enqueue_here(command).await.boxed(),
            Err(e) => {
                tracing::warn!(error = %e, "a command from another node did not decode");
                let refused = Reply::Refused(Refusal::internal("the command did not decode"));
                std::future::ready(refused).boxed()
            }
        };
        let client = client.clone();
        tokio::spawn(async move {
            let reply = reply.await;
            match serde_json::to_vec(&reply) {
                Ok(payload) => {
                    if let Err(e) = client.publish(reply_to, payload.into()).await {
                        tracing::warn!(error = %e, "answering another node failed");
                    }
                }
                Err(e) => tracing::error!(error = %e, "encoding an answer failed"),
            }
        });
    }
}
