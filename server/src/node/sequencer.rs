//! The writer's work on one batch, without its queue: load what the
//! engine needs, apply every command in order, commit the rows in one
//! transaction, and only then hand back the replies and the events to
//! publish. The writer task runs it on the real clock; the simulator runs
//! it on virtual time.
//!
//! A failed commit answers every command of the batch with an error and
//! resets the engine's cache to the database. Sends are deduplicated without
//! a lookup per send: the engine remembers recent sends, takes any other for
//! new, and the store's uniqueness of (conversation, sender, client_msg_id)
//! catches a retry of an older one. That batch stores nothing; it is applied
//! again with every send looked up, so the retry is answered as the
//! duplicate it is.
//!
//! Several nodes may order on one database, each with an engine of its
//! own: every batch carries what its engine assumed of the logs it writes
//! (claims), and the store commits it only if they still hold. A batch
//! that another node's commit overtook ([`StoreError::Conflict`]) stored
//! nothing; the engine forgets its cache and applies it again to what is
//! stored now. Events a batch only appends to a party's own log (one that
//! follows no inbox) need not be applied again: the store moves them after
//! what the other node appended, and the sequencer renumbers what it
//! publishes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::federation::OutboxSignal;
use crate::core::desk::{DeskConfig, TicketState};
use crate::core::engine::{Command, Engine, LoadedDesk, LoadedTicket, Need, Published, Reply};
use crate::model::{
    ConversationRecord, Counters, InboxHead, LogHead, OutboxRow, Party, PartyId, Refusal,
    StoredSend, Write,
};
use crate::store::{Store, StoreError, StoreResult};

/// How long every send is looked up before it is applied after a batch hit
/// [`StoreError::DuplicateSend`]; otherwise sends not in the engine's memory
/// are taken for new and the store's uniqueness checks them.
const VERIFY_AFTER_DUPLICATE: Duration = Duration::from_secs(10);

/// How long after a desk tick that could not be applied the next is tried.
const DESK_RETRY_MS: i64 = 1_000;

/// Rounds of loading a command's needs (the engine converges in three,
/// five for a message passed on to a resolved conversation's continuation).
const NEED_ROUNDS: usize = 6;

/// Times a batch is applied again after another node wrote what it relied
/// on ([`StoreError::Conflict`]) before its commands are refused (their
/// clients retry). Each try reloads everything it relies on, so one more
/// conflict needs another node's commit in between: a node that conflicts
/// this often is being outpaced, not stuck.
const CONFLICT_TRIES: u32 = 8;

/// The wait before the first try again after a conflict; it doubles each
/// time (about half a second over all tries), with jitter, so two nodes
/// ordering the same conversation for a moment (while a slot changes
/// hands) stop overtaking each other.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(2);

/// How a batch ended.
enum Outcome {
    /// Durable: each job's reply, in order, and the events to publish.
    Committed {
        replies: Vec<Reply>,
        published: Vec<Published>,
    },
    /// Nothing stored: each job's reply, and whether it meant to write.
    Failed { replies: Vec<(Reply, bool)> },
    /// Nothing stored: a send reused a stored client_msg_id.
    DuplicateSend,
    /// Nothing stored: another node wrote what the batch relied on.
    Conflict,
}

/// What a sequencer has done since it started, for operators.
#[derive(Debug, Default)]
pub(crate) struct OrderingStats {
    /// Batches committed.
    pub(crate) batches: AtomicU64,
    /// Batches applied again because another node wrote first.
    pub(crate) conflicts: AtomicU64,
    /// Batches whose events of some log were stored after another node's
    /// (without applying them again).
    pub(crate) rebased: AtomicU64,
}

/// The engine and its store: orders batches of commands. See the module docs.
pub(crate) struct Sequencer {
    store: Arc<dyn Store>,
    engine: Engine,
    stats: Arc<OrderingStats>,
    /// Told of each peer a commit queued transactions for.
    outbox: Arc<OutboxSignal>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// A sequencer for `domain` that numbers new rows after the store's.
    pub(crate) async fn new(store: Arc<dyn Store>, domain: String) -> StoreResult<Self> {
        let engine = Engine::new(domain, store.counters().await?);
        Ok(Self {
            store,
            engine,
            stats: Arc::default(),
            outbox: Arc::default(),
        })
    }

    /// Signals `outbox` of each peer a commit queues transactions for.
    pub(crate) fn signalling(mut self, outbox: Arc<OutboxSignal>) -> Self {
        self.outbox = outbox;
        self
    }

    /// What it has done so far, counted as it goes.
    pub(crate) fn stats(&self) -> Arc<OrderingStats> {
        self.stats.clone()
    }

    /// The engine, to inspect or feed by hand in tests.
    #[cfg(test)]
    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The engine's next deadline, ms since the Unix epoch.
    pub(crate) fn poll_timeout(&self) -> Option<i64> {
        self.engine.poll_timeout()
    }

    /// Handles the engine's deadlines due at `now_ms`: desk timers that are
    /// due are applied as a [`Command::DeskTick`], committed like any
    /// change; what they published is returned.
    pub(crate) async fn handle_timeout(&mut self, now_ms: i64) -> Vec<Published> {
        self.engine.handle_timeout(now_ms);
        if !self.engine.desk_due(now_ms) {
            return Vec::new();
        }
        let (replies, published) = self.order(&[Command::DeskTick], now_ms).await;
        if let Some(Reply::Refused(refusal)) = replies.first() {
            tracing::warn!(%refusal, "desk timers could not be stored; tried again in a second");
            self.engine.retry_desk_timers_at(now_ms + DESK_RETRY_MS);
        }
        published
    }

    /// Orders `commands` at `now_ms`: one reply per command, in order, and
    /// the events to publish. Everything they wrote is durable when this
    /// returns (or nothing is, and the replies say so).
    pub(crate) async fn order(
        &mut self,
        commands: &[Command],
        now_ms: i64,
    ) -> (Vec<Reply>, Vec<Published>) {
        self.engine.handle_timeout(now_ms);
        let mut outcome = self.run_batch(commands, now_ms).await;
        let mut tries = 1;
        while matches!(outcome, Outcome::Conflict) && tries < CONFLICT_TRIES {
            // Another node appended to a log this batch writes: forget what
            // the cache says and apply the batch to what is stored now.
            tracing::debug!(
                commands = commands.len(),
                tries,
                "batch conflicted; applied again"
            );
            self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
            let backoff = CONFLICT_BACKOFF * 2u32.pow(tries - 1);
            tokio::time::sleep(backoff.mul_f64(rand::random_range(0.5..1.5))).await;
            self.reset().await;
            outcome = self.run_batch(commands, now_ms).await;
            tries += 1;
        }
        if matches!(outcome, Outcome::DuplicateSend) {
            // A send the engine took for new reused an id stored before its
            // memory of sends: nothing was stored. Apply the batch again from
            // the database, looking every send up, and keep looking up for a
            // while, so a client replaying old sends costs one extra
            // transaction per VERIFY_AFTER_DUPLICATE, not one per send.
            tracing::debug!(
                commands = commands.len(),
                "a send reused a stored client_msg_id; batch applied again with lookups"
            );
            self.reset().await;
            let window = i64::try_from(VERIFY_AFTER_DUPLICATE.as_millis()).unwrap_or(i64::MAX);
            self.engine
                .verify_sends_until(now_ms.saturating_add(window));
            outcome = self.run_batch(commands, now_ms).await;
        }
        match outcome {
            Outcome::Committed { replies, published } => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                (replies, published)
            }
            Outcome::Failed { replies } => {
                self.reset().await;
                // Refusals stored nothing and stand; everything else failed.
                let replies = replies
                    .into_iter()
                    .map(|(reply, wrote)| if wrote { internal() } else { reply })
                    .collect();
                (replies, Vec::new())
            }
            Outcome::DuplicateSend | Outcome::Conflict => {
                // Other nodes keep writing what this batch relies on, or
                // stored a send between its lookup and its commit.
                tracing::warn!(
                    commands = commands.len(),
                    "batch still conflicted with other nodes' writes; refused for retry"
                );
                self.reset().await;
                (commands.iter().map(|_| internal()).collect(), Vec::new())
            }
        }
    }

    /// Loads, applies and commits `commands` at `now_ms`.
    async fn run_batch(&mut self, commands: &[Command], now_ms: i64) -> Outcome {
        let started = std::time::Instant::now();
        let failed = self.load_needs(commands).await;
        let loaded = started.elapsed();
        let mut writes = Vec::new();
        let mut published = Vec::new();
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            let reply = if self
                .engine
                .needs(command)
                .iter()
                .any(|n| failed.contains(n))
            {
                // The state could not be read: say so, rather than act on a guess.
                (internal(), false)
            } else {
                let (reply, applied) = self.engine.apply(now_ms, command);
                let wrote = !applied.writes.is_empty();
                writes.extend(applied.writes);
                published.extend(applied.published);
                (reply, wrote)
            };
            replies.push(reply);
        }
        if !writes.is_empty() {
            writes.extend(self.engine.take_claims());
        }
        self.engine.finish_batch();
        let applied = started.elapsed();
        let rows = writes.len();
        let queued: Vec<OutboxRow> = writes
            .iter()
            .filter_map(|write| match write {
                Write::Outbox(row) => Some(row.clone()),
                _ => None,
            })
            .collect();
        if rows > 0 {
            match self.store.commit(writes).await {
                Ok(committed) => {
                    if !queued.is_empty() {
                        self.outbox.committed(queued);
                    }
                    // Another node appended to these logs first: this
                    // batch's events of them were stored after its.
                    for &(party, by) in &committed.rebased {
                        self.engine.rebase(party, by);
                        for event in &mut published {
                            for (recipient, seq) in &mut event.recipients {
                                if *recipient == party {
                                    *seq += by;
                                }
                            }
                        }
                    }
                    if !committed.rebased.is_empty() {
                        self.stats.rebased.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(StoreError::DuplicateSend) => return Outcome::DuplicateSend,
                Err(StoreError::Conflict) => return Outcome::Conflict,
                Err(e) => {
                    tracing::error!(error = %e, rows, "commit failed; batch refused");
                    return Outcome::Failed { replies };
                }
            }
        }
        tracing::trace!(
            commands = commands.len(),
            rows,
            ?loaded,
            ?applied,
            total = ?started.elapsed(),
            "batch committed"
        );
        Outcome::Committed {
            replies: replies.into_iter().map(|(reply, _)| reply).collect(),
            published,
        }
    }

    /// Loads what the engine needs for every command of the batch: in rounds
    /// (conversations, then inbox agents and prior sends, then heads), each
    /// round's loads concurrently. Returns the needs whose load failed.
    async fn load_needs(&mut self, commands: &[Command]) -> HashSet<Need> {
        let mut tried = HashSet::new();
        let mut failed = HashSet::new();
        for _ in 0..NEED_ROUNDS {
            let needs: Vec<Need> = commands
                .iter()
                .flat_map(|command| self.engine.needs(command))
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
                let mut found: HashMap<_, _> = found.into_iter().collect();
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
            (Need::Party(address), Loaded::Party(party)) => self.engine.load_party(address, party),
            (Need::Conversation(_), Loaded::Conversation(Some(record))) => {
                self.engine.load_conversation(record);
            }
            (Need::Head(party), Loaded::Head(head)) => self.engine.load_head(party, head),
            (Need::InboxHead(inbox), Loaded::InboxHead(head)) => {
                self.engine.load_inbox_head(inbox, head);
            }
            (Need::Ids, Loaded::Ids(ids)) => self.engine.load_ids(ids),
            (Need::OutboxHead(peer), Loaded::OutboxHead(head)) => {
                self.engine.load_outbox_head(peer, head);
            }
            (Need::PeerCommitted(peer), Loaded::PeerCommitted(up_to)) => {
                self.engine.load_peer_committed(peer, up_to);
            }
            (
                Need::Submission {
                    key,
                    sender,
                    client_msg_id,
                },
                Loaded::Submission(submitted),
            ) => self
                .engine
                .load_submission(key, sender, client_msg_id, submitted),
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
            (Need::Desk(inbox), Loaded::Desk(desk)) => {
                self.engine.load_desk(inbox, desk.map(|d| *d));
            }
            (Need::Ticket(key), Loaded::Ticket(ticket)) => {
                self.engine.load_desk_ticket(key, ticket.map(|t| *t));
            }
            (
                Need::PriorNote {
                    key,
                    author,
                    client_note_id,
                },
                Loaded::PriorNote(prior),
            ) => self
                .engine
                .load_prior_note(key, author, client_note_id, prior),
            // An unknown conversation stays unknown: the command is refused.
            _ => {}
        }
    }

    async fn reset(&mut self) {
        match self.store.counters().await {
            Ok(counters) => self.engine.reset(counters),
            Err(e) => {
                // Without the counters we cannot number new rows safely; keep
                // the old ones (ahead of the database, never behind) and
                // drop the rest of the cache.
                tracing::error!(error = %e, "reloading after a failed commit failed");
                let counters = self.engine.counters();
                self.engine.reset(counters);
            }
        }
    }
}

/// What a store read returned for a [`Need`].
enum Loaded {
    Party(Option<Party>),
    Conversation(Option<ConversationRecord>),
    Head(LogHead),
    InboxHead(InboxHead),
    Ids(Counters),
    InboxAgents(Vec<PartyId>),
    PriorSend(Option<StoredSend>),
    Watermark(u64),
    Desk(Option<Box<LoadedDesk>>),
    Ticket(Option<Box<LoadedTicket>>),
    PriorNote(Option<(u64, i64)>),
    OutboxHead(u64),
    PeerCommitted(u64),
    Submission(bool),
}

async fn load(store: &dyn Store, need: &Need) -> StoreResult<Loaded> {
    Ok(match need {
        Need::Party(address) => Loaded::Party(store.party_by_address(address).await?),
        Need::Conversation(id) => Loaded::Conversation(store.load_conversation(id).await?),
        Need::Head(party) => Loaded::Head(store.log_head(*party).await?),
        Need::InboxHead(inbox) => Loaded::InboxHead(store.inbox_head(*inbox).await?),
        Need::InboxAgents(inbox) => Loaded::InboxAgents(store.inbox_agents(*inbox).await?),
        Need::Ids => Loaded::Ids(store.counters().await?),
        Need::OutboxHead(peer) => Loaded::OutboxHead(store.outbox_head(peer).await?),
        Need::PeerCommitted(peer) => Loaded::PeerCommitted(store.peer_committed(peer).await?),
        Need::Submission {
            key,
            sender,
            client_msg_id,
        } => Loaded::Submission(store.submitted(*key, *sender, client_msg_id).await?),
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
        Need::Desk(inbox) => Loaded::Desk(load_desk(store, *inbox).await?.map(Box::new)),
        Need::Ticket(key) => Loaded::Ticket(match store.ticket(*key).await? {
            Some(stored) => {
                let state = TicketState::from_json(&stored.state).map_err(StoreError::Corrupt)?;
                Some(Box::new(LoadedTicket { stored, state }))
            }
            None => None,
        }),
        Need::PriorNote {
            key,
            author,
            client_note_id,
        } => Loaded::PriorNote(store.find_note(*key, *author, client_note_id).await?),
    })
}

/// An inbox's desk as stored, with the parties it names; `None` if the
/// inbox does not exist.
async fn load_desk(store: &dyn Store, inbox: PartyId) -> StoreResult<Option<LoadedDesk>> {
    let Some(inbox_party) = store.party_by_id(inbox).await? else {
        return Ok(None);
    };
    let stored = store.desk(inbox).await?;
    let config = match &stored.settings {
        Some(json) => DeskConfig::from_json(json).map_err(StoreError::Corrupt)?,
        None => DeskConfig::default(),
    };
    let states = stored
        .tickets
        .iter()
        .map(|t| TicketState::from_json(&t.state).map_err(StoreError::Corrupt))
        .collect::<StoreResult<Vec<_>>>()?;
    let agents = store.inbox_agents(inbox).await?;
    let mut parties = Vec::with_capacity(agents.len() + 1);
    for id in agents
        .iter()
        .copied()
        .chain(config.settings.first_responder)
    {
        if let Some(party) = store.party_by_id(id).await? {
            parties.push(party);
        }
    }
    Ok(Some(LoadedDesk {
        stored,
        states,
        config,
        inbox: inbox_party,
        parties,
        agents,
    }))
}

fn internal() -> Reply {
    Reply::Refused(Refusal::internal("the server could not store this; retry"))
}
