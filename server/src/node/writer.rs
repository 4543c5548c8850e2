//! The single writer: one task owns the conversation engine (through the
//! [`Sequencer`]) and commits its output in groups.
//!
//! Requests queue commands on a bounded channel. The writer takes everything
//! queued (up to [`MAX_BATCH`]), has the sequencer apply and commit them in
//! ONE transaction (one fsync), and only then answers each requester and
//! publishes the events. Nothing is acknowledged or shown to anyone before
//! it is durable.
//!
//! Every change goes through here: messages and receipts from clients, and
//! parties and inbox agents from operators and registration. So the moment
//! an operator's `kanald agent add` returns, every later event of that inbox
//! reaches the new agent: the change and the events are ordered by one
//! queue.
//!
//! The writer owns the clock: it wakes on a command or at the engine's next
//! deadline ([`Sequencer::poll_timeout`]), whichever comes first.
//!
//! With a commit window (`commit_window_ms`), a batch that would start
//! within the window of the previous one waits for its end, taking in what
//! is queued meanwhile: under load, fewer and larger commits (fsyncs); at a
//! low rate, when the last commit is older than the window, no wait.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt as _;
use futures::future::BoxFuture;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::federation::OutboxSignal;
use super::hub::Hub;
use super::sequencer::{OrderingStats, Sequencer};
use crate::core::engine::{Command, Reply};
use crate::model::Refusal;
use crate::store::{Store, StoreResult};

/// Most commands ordered and committed in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// Commands waiting for the writer before senders wait for room.
pub(crate) const QUEUE: usize = 16 * 1024;

struct Job {
    command: Command,
    reply: oneshot::Sender<Reply>,
}

/// Submits commands to the writer task, or to the node that orders them.
/// Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    /// What the writer has done so far.
    pub(crate) stats: Arc<OrderingStats>,
    /// With several nodes: where each command is ordered.
    router: Arc<OnceLock<Arc<dyn Router>>>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("routed", &self.router.get().is_some())
            .finish_non_exhaustive()
    }
}

/// Where commands are ordered when several nodes share the database.
#[async_trait::async_trait]
pub(crate) trait Router: Send + Sync {
    /// Hands `command` to the node that orders its conversation, if that
    /// is another node, or gives it back to be ordered here.
    async fn route(&self, command: Command) -> Routed;
}

/// Where a command went.
pub(crate) enum Routed {
    /// To be ordered here.
    Here(Command),
    /// Handed to another node: the wait for its answer, or for the command
    /// back if no node took it (then it is ordered here).
    Away(BoxFuture<'static, Result<Reply, Command>>),
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("command", &self.command)
            .finish()
    }
}

impl WriterHandle {
    /// Runs `command` and waits until its effects are durable (or refused).
    pub async fn submit(&self, command: Command) -> Reply {
        self.enqueue(command).await.await
    }

    /// Queues `command` (waiting for room in the queue) and returns the
    /// wait for its reply. Commands are applied in the order they were
    /// queued, so a caller that queues one after the other keeps its order.
    /// With several nodes, a command of a conversation another node orders
    /// is handed to that node (in order too).
    pub async fn enqueue(&self, command: Command) -> BoxFuture<'static, Reply> {
        let command = match self.router.get() {
            None => command,
            Some(router) => match router.route(command).await {
                Routed::Here(command) => command,
                Routed::Away(answer) => {
                    let here = self.clone();
                    return async move {
                        match answer.await {
                            Ok(reply) => reply,
                            Err(command) => here.enqueue_here(command).await.await,
                        }
                    }
                    .boxed();
                }
            },
        };
        self.enqueue_here(command).await.boxed()
    }

    /// Routes commands through `router` from now on.
    pub(crate) fn set_router(&self, router: Arc<dyn Router>) {
        if self.router.set(router).is_err() {
            tracing::warn!("the writer has a router already; the new one is ignored");
        }
    }

    /// [`WriterHandle::enqueue`] to this node's writer, whoever orders the
    /// conversation (for commands other nodes handed here).
    pub(crate) async fn enqueue_here(
        &self,
        command: Command,
    ) -> impl Future<Output = Reply> + Send + use<> {
        let (reply, rx) = oneshot::channel();
        let queued = self.tx.send(Job { command, reply }).await.is_ok();
        async move {
            if !queued {
                return shutting_down();
            }
            rx.await.unwrap_or_else(|_| shutting_down())
        }
    }
}

/// Starts the writer task for `domain`, which signals `outbox` when a
/// commit queues transactions for a peer. It ends when every handle is dropped.
pub(crate) async fn spawn(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    domain: String,
    outbox: Arc<OutboxSignal>,
    window: Duration,
) -> StoreResult<(WriterHandle, JoinHandle<()>)> {
    let sequencer = Sequencer::new(store, domain).await?.signalling(outbox);
    let stats = sequencer.stats();
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = Writer {
        sequencer,
        hub,
        rx,
        window,
        last_batch: None,
    };
    let handle = WriterHandle {
        tx,
        stats,
        router: Arc::default(),
    };
    Ok((handle, tokio::spawn(task.run())))
}

struct Writer {
    sequencer: Sequencer,
    hub: Arc<Hub>,
    rx: mpsc::Receiver<Job>,
    /// The commit window: least time from one batch's start to the next's.
    window: Duration,
    /// When the last batch started.
    last_batch: Option<tokio::time::Instant>,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let deadline = self.sequencer.poll_timeout().map(|at| {
                let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                received = self.rx.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    self.gather(&mut batch).await;
                    let (commands, waiting): (Vec<Command>, Vec<_>) =
                        batch.drain(..).map(|job| (job.command, job.reply)).unzip();
                    let (replies, published) = self.sequencer.order(&commands, now_ms()).await;
                    for (reply, waiter) in replies.into_iter().zip(waiting) {
                        // The requester may have gone away; the data is committed regardless.
                        let _ = waiter.send(reply);
                    }
                    self.hub.publish(published);
                }
                () = sleep_until(deadline) => {
                    let published = self.sequencer.handle_timeout(now_ms()).await;
                    self.hub.publish(published);
                }
            }
        }
    }
}

impl Writer {
    /// Within the commit window of the last batch, waits for its end, taking
    /// in what is queued meanwhile (up to [`MAX_BATCH`]).
    async fn gather(&mut self, batch: &mut Vec<Job>) {
        if let Some(last) = self.last_batch
            && !self.window.is_zero()
        {
            let until = last + self.window;
            while batch.len() < MAX_BATCH {
                let room = MAX_BATCH - batch.len();
                match tokio::time::timeout_at(until, self.rx.recv_many(batch, room)).await {
                    Ok(received) if received > 0 => {}
                    // Closed, or the window is over.
                    _ => break,
                }
            }
        }
        self.last_batch = Some(tokio::time::Instant::now());
    }
}

fn shutting_down() -> Reply {
    Reply::Refused(Refusal::internal("the server is shutting down"))
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
