//! The single writer: one task owns the conversation engine and commits its
//! output in groups.
//!
//! Requests queue commands on a bounded channel. The writer takes everything
//! queued (up to [`MAX_BATCH`]), applies each command to the engine, commits
//! all resulting rows in ONE transaction (one fsync), and only then answers
//! each requester and publishes the events. Nothing is acknowledged or shown
//! to anyone before it is durable; a failed commit answers every command of
//! the batch with an error and resets the engine's cache to the database.
//!
//! Sends are deduplicated without a lookup per send: the engine remembers
//! recent sends, takes any other for new, and the store's uniqueness of
//! (conversation, sender, client_msg_id) catches a retry of an older one. That
//! batch stores nothing; the writer applies it again with every send looked
//! up, so the retry is answered as the duplicate it is.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kanal_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use std::collections::HashSet;

use crate::core::engine::{Command, Engine, Need, Reply};
use crate::model::{ConversationRecord, PartyId, StoredSend};
use crate::node::hub::Hub;
use crate::store::{Store, StoreError, StoreResult};

/// Most commands committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Commands waiting for the writer before senders wait for room.
pub const QUEUE: usize = 16 * 1024;

/// How often the writer looks for directory changes made by other processes.
const DIRECTORY_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// How long the writer looks up every send before applying it after a
/// batch hit [`StoreError::DuplicateSend`]; otherwise sends not in the
/// engine's memory are taken for new and the store's uniqueness checks them.
const VERIFY_AFTER_DUPLICATE: std::time::Duration = std::time::Duration::from_secs(10);

/// Rounds of loading a command's needs (the engine converges in three).
const NEED_ROUNDS: usize = 4;

struct Job {
    command: Command,
    reply: oneshot::Sender<Reply>,
}

/// Submits commands to the writer task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
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
    pub async fn enqueue(&self, command: Command) -> impl Future<Output = Reply> + use<> {
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

/// Starts the writer task for `domain`. It ends when every handle is dropped.
pub async fn spawn(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    domain: String,
) -> StoreResult<(WriterHandle, JoinHandle<()>)> {
    let engine = Engine::new(domain, store.max_conversation_key().await?);
    let directory = store.directory_version().await?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = Writer {
        verify_until: None,
        store,
        hub,
        engine,
        directory,
        next_directory_check: tokio::time::Instant::now(),
        rx,
    };
    Ok((WriterHandle { tx }, tokio::spawn(task.run())))
}

/// How a batch ended.
enum Outcome {
    /// Durable: each job's reply, in order, and the events to publish.
    Committed {
        replies: Vec<Reply>,
        deliveries: Vec<crate::core::engine::Delivery>,
    },
    /// Nothing stored: each job's reply, and whether it meant to write.
    Failed { replies: Vec<(Reply, bool)> },
    /// Nothing stored: a send reused a stored client_msg_id.
    DuplicateSend,
}

struct Writer {
    /// Until when sends are looked up before they are applied.
    verify_until: Option<tokio::time::Instant>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    engine: Engine,
    directory: i64,
    next_directory_check: tokio::time::Instant,
    rx: mpsc::Receiver<Job>,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while self.rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.commit_batch(&mut batch).await;
        }
    }

    async fn commit_batch(&mut self, batch: &mut Vec<Job>) {
        self.refresh_directory().await;
        let verify = self
            .verify_until
            .is_some_and(|until| tokio::time::Instant::now() < until);
        self.engine.verify_sends(verify);
        let mut outcome = self.run_batch(batch).await;
        if matches!(outcome, Outcome::DuplicateSend) {
            // A send the engine took for new reused an id stored before its
            // memory of sends: nothing was stored. Apply the batch again from
            // the database, looking every send up, and keep looking up for a
            // while, so a client replaying old sends costs one extra
            // transaction per VERIFY_AFTER_DUPLICATE, not one per send.
            tracing::debug!(
                commands = batch.len(),
                "a send reused a stored client_msg_id; batch applied again with lookups"
            );
            self.verify_until = Some(tokio::time::Instant::now() + VERIFY_AFTER_DUPLICATE);
            self.engine.verify_sends(true);
            self.reset().await;
            outcome = self.run_batch(batch).await;
        }
        match outcome {
            Outcome::Committed {
                replies,
                deliveries,
            } => {
                for (job, reply) in batch.drain(..).zip(replies) {
                    // The requester may have gone away; the data is committed regardless.
                    let _ = job.reply.send(reply);
                }
                self.hub.publish(&deliveries);
            }
            Outcome::Failed { replies } => {
                self.reset().await;
                for (job, (reply, wrote)) in batch.drain(..).zip(replies) {
                    // Refusals stored nothing and stand; everything else failed.
                    let _ = job.reply.send(if wrote { internal() } else { reply });
                }
            }
            Outcome::DuplicateSend => {
                // With every send looked up first, only a second writer on
                // the same database could get here.
                tracing::error!("a verified batch still reused a client_msg_id; batch refused");
                self.reset().await;
                for job in batch.drain(..) {
                    let _ = job.reply.send(internal());
                }
            }
        }
    }

    /// Loads, applies and commits `batch`, leaving its jobs in place.
    async fn run_batch(&mut self, batch: &[Job]) -> Outcome {
        let started = std::time::Instant::now();
        let failed = self.load_needs(batch).await;
        let loaded = started.elapsed();
        let now_ms = now_ms();
        let mut writes = Vec::new();
        let mut deliveries = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            let reply = if self
                .engine
                .needs(&job.command)
                .iter()
                .any(|n| failed.contains(n))
            {
                // The state could not be read: say so, rather than act on a guess.
                (internal(), false)
            } else {
                let (reply, applied) = self.engine.apply(now_ms, &job.command);
                let wrote = !applied.writes.is_empty();
                writes.extend(applied.writes);
                deliveries.extend(applied.deliveries);
                (reply, wrote)
            };
            replies.push(reply);
        }
        self.engine.finish_batch();
        let applied = started.elapsed();
        let rows = writes.len();
        if rows > 0 {
            match self.store.commit(writes).await {
                Ok(()) => {}
                Err(StoreError::DuplicateSend) => return Outcome::DuplicateSend,
                Err(e) => {
                    tracing::error!(error = %e, rows, "commit failed; batch refused");
                    return Outcome::Failed { replies };
                }
            }
        }
        tracing::trace!(
            commands = batch.len(),
            rows,
            ?loaded,
            ?applied,
            total = ?started.elapsed(),
            "batch committed"
        );
        Outcome::Committed {
            replies: replies.into_iter().map(|(reply, _)| reply).collect(),
            deliveries,
        }
    }

    /// Loads what the engine needs for every command of the batch: in rounds
    /// (conversations, then inbox agents and prior sends, then heads), each
    /// round's loads concurrently. Returns the needs whose load failed.
    async fn load_needs(&mut self, batch: &[Job]) -> HashSet<Need> {
        let mut tried = HashSet::new();
        let mut failed = HashSet::new();
        for _ in 0..NEED_ROUNDS {
            let needs: Vec<Need> = batch
                .iter()
                .flat_map(|job| self.engine.needs(&job.command))
                .filter(|need| tried.insert(need.clone()))
                .collect();
            if needs.is_empty() {
                break;
            }
            // Prior sends are looked up together, in one statement per chunk;
            // everything else concurrently, one query each.
            let (sends, others): (Vec<Need>, Vec<Need>) = needs
                .into_iter()
                .partition(|n| matches!(n, Need::PriorSend { .. }));
            self.load_prior_sends(sends, &mut failed).await;
            let store = self.store.as_ref();
            let loads = futures::future::join_all(others.into_iter().map(|need| async move {
                let loaded = load(store, &need).await;
                (need, loaded)
            }))
            .await;
            for (need, loaded) in loads {
                match loaded {
                    Ok(loaded) => self.supply(need, loaded),
                    Err(e) => {
                        tracing::error!(error = %e, ?need, "loading state for a command failed");
                        failed.insert(need);
                    }
                }
            }
        }
        failed
    }

    async fn load_prior_sends(&mut self, needs: Vec<Need>, failed: &mut HashSet<Need>) {
        if needs.is_empty() {
            return;
        }
        let wanted: Vec<_> = needs
            .iter()
            .filter_map(|need| match need {
                Need::PriorSend {
                    key,
                    sender,
                    client_msg_id,
                } => Some((*key, *sender, client_msg_id.clone())),
                _ => None,
            })
            .collect();
        match self.store.find_sends(&wanted).await {
            Ok(found) => {
                let mut found: std::collections::HashMap<_, _> = found.into_iter().collect();
                for (key, sender, client_msg_id) in wanted {
                    let prior = found.remove(&(key, sender, client_msg_id.clone()));
                    self.engine
                        .load_prior_send(key, sender, client_msg_id, prior);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, sends = wanted.len(), "looking up prior sends failed");
                failed.extend(needs);
            }
        }
    }

    fn supply(&mut self, need: Need, loaded: Loaded) {
        match (need, loaded) {
            (Need::Conversation(_), Loaded::Conversation(Some(record))) => {
                self.engine.load_conversation(record);
            }
            (Need::Head(party), Loaded::Head(head)) => self.engine.load_head(party, head),
            (Need::InboxAgents(inbox), Loaded::InboxAgents(agents)) => {
                self.engine.load_inbox_agents(inbox, agents);
            }
            (
                Need::PriorSend {
                    key,
                    sender,
                    client_msg_id,
                },
                Loaded::PriorSend(prior),
            ) => self
                .engine
                .load_prior_send(key, sender, client_msg_id, prior),
            (
                Need::Watermark {
                    conversation,
                    party,
                    kind,
                },
                Loaded::Watermark(up_to),
            ) => self
                .engine
                .load_watermark(&conversation, party, kind, up_to),
            // An unknown conversation stays unknown: the command is refused.
            _ => {}
        }
    }

    /// Re-reads the directory version, at most every [`DIRECTORY_CHECK`]:
    /// operators may change inbox agents from another process (`kanald agent
    /// add`), and a busy writer must not pay a query per batch for that.
    async fn refresh_directory(&mut self) {
        let now = tokio::time::Instant::now();
        if now < self.next_directory_check {
            return;
        }
        self.next_directory_check = now + DIRECTORY_CHECK;
        match self.store.directory_version().await {
            Ok(version) if version != self.directory => {
                self.directory = version;
                self.engine.invalidate_directory();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the directory version failed"),
        }
    }

    async fn reset(&mut self) {
        match self.store.max_conversation_key().await {
            Ok(max_key) => self.engine.reset(max_key),
            Err(e) => {
                // Without the key we cannot number new conversations safely;
                // keep the old counter (it is ahead of the database, never behind).
                tracing::error!(error = %e, "reloading after a failed commit failed");
                self.engine.invalidate_directory();
            }
        }
    }
}

/// What a store read returned for a [`Need`].
enum Loaded {
    Conversation(Option<ConversationRecord>),
    Head(u64),
    InboxAgents(Vec<PartyId>),
    PriorSend(Option<StoredSend>),
    Watermark(u64),
}

async fn load(store: &dyn Store, need: &Need) -> StoreResult<Loaded> {
    Ok(match need {
        Need::Conversation(id) => Loaded::Conversation(store.load_conversation(id).await?),
        Need::Head(party) => Loaded::Head(store.event_head(*party).await?),
        Need::InboxAgents(inbox) => Loaded::InboxAgents(store.inbox_agents(*inbox).await?),
        Need::PriorSend {
            key,
            sender,
            client_msg_id,
        } => Loaded::PriorSend(store.find_send(*key, *sender, client_msg_id).await?),
        Need::Watermark {
            conversation,
            party,
            kind,
        } => match store.conversation_key(conversation).await? {
            Some(key) => Loaded::Watermark(store.watermark(key, *party, *kind).await?),
            None => Loaded::Watermark(0),
        },
    })
}

fn internal() -> Reply {
    Reply::Refused(
        pb::ErrorCode::Internal,
        "the server could not store this; retry".into(),
    )
}

fn shutting_down() -> Reply {
    Reply::Refused(
        pb::ErrorCode::Internal,
        "the server is shutting down".into(),
    )
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
