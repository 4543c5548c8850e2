//! Several nodes on one database: the news between them, over NATS.
//!
//! NATS carries only news, never data: every node commits to the shared
//! database itself (its batches checked against the others' by the store,
//! `store::postgres::claims`), then says on the bus which logs it advanced
//! and to where. A node that hears it lets its sessions of those parties
//! read the new events from the database. A lost notification costs
//! latency, never an event: whenever news may have been lost (a node's
//! connection to NATS dropped, or NATS dropped messages for a slow
//! subscriber) every node that may have missed some has all its sessions
//! compare their position with the database.
//!
//! Subjects, under the configured prefix (default `kanal.<domain>`):
//! - `<prefix>.logs`: a node's commits, as (party, head) pairs;
//! - `<prefix>.typing`: ephemeral datagrams for sessions on other nodes;
//! - `<prefix>.sweep`: "news from me may have been lost: check".
//!
//! Messages start with the sending node's id, so a node skips its own.
//!
//! Each node also reports itself in the database every [`REPORT_EVERY`]
//! (`kanald cluster status` shows the reports): a node whose report is
//! older than [`UP_WITHIN`] is down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt as _;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::Node;
use super::hub::{Announcer, Hub};
use super::writer::now_ms;
use crate::model::{NodeStatus, PartyId};

/// Most parties whose news waits to be sent while NATS is unreachable;
/// past it the news is dropped and a sweep is sent instead.
const MAX_PENDING: usize = 100_000;

/// Most (party, head) pairs in one message (16 bytes each: 64 KiB).
const MAX_PAIRS: usize = 4096;

/// Datagrams waiting to be sent to other nodes before new ones are dropped
/// (typing is best effort).
const MAX_DATAGRAMS: usize = 1024;

/// How often a node reports itself in the database.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(2);

/// A node that reported itself within this long is up.
pub(crate) const UP_WITHIN: Duration = Duration::from_secs(10);

/// How this node joins the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterConfig {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222`.
    pub(crate) nats: String,
    /// The prefix of every subject the nodes use.
    pub(crate) subject_prefix: String,
}

impl ClusterConfig {
    /// The configuration for `domain` on the NATS server at `nats`, with
    /// the default subject prefix `kanal.<domain>`.
    pub(crate) fn new(nats: impl Into<String>, domain: &str) -> Self {
        Self {
            nats: nats.into(),
            subject_prefix: format!("kanal.{domain}"),
        }
    }
}

/// Why joining the cluster failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// The NATS address is not one.
    #[error("cluster.nats: {0}")]
    Address(String),
    /// Subscribing failed.
    #[error("cluster.nats: subscribing failed: {0}")]
    Subscribe(String),
}

/// This node's place among the others: what its hub announces goes out,
/// what the others announce comes in.
pub(crate) struct Cluster {
    /// A random id for this run of this node.
    pub(crate) node_id: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Cluster {
    /// Connects to NATS and relays news between `node`'s hub and the other
    /// nodes until dropped, and reports the node (serving clients on
    /// `listen`) in the database. NATS need not be up: the connection is
    /// retried for as long as the node runs, and news is exchanged once it is.
    pub(crate) async fn join(
        config: &ClusterConfig,
        node: Arc<Node>,
        listen: SocketAddr,
    ) -> Result<Self, ClusterError> {
        let hub = node.hub.clone();
        let node_id = rand::random::<u64>();
        let connected = Arc::new(AtomicBool::new(false));
        let outgoing = Arc::new(Outgoing {
            node_id,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
        });
        let events = outgoing.clone();
        let hub_for_events = hub.clone();
        let connected_for_events = connected.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("kanald {node_id:016x}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let outgoing = events.clone();
                let hub = hub_for_events.clone();
                let connected = connected_for_events.clone();
                async move { on_connection_event(event, &outgoing, &hub, &connected) }
            })
            .connect(config.nats.as_str())
            .await
            .map_err(|e| ClusterError::Address(e.to_string()))?;
        let subjects = Subjects::new(&config.subject_prefix);
        let incoming = client
            .subscribe(format!("{}.>", config.subject_prefix))
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        hub.set_announcer(outgoing.clone());
        let status = NodeStatus {
            // The bits of the random id, as the database's signed integer.
            id: i64::from_ne_bytes(node_id.to_ne_bytes()),
            host: host_name(),
            listen: listen.to_string(),
            started_at_ms: now_ms(),
            seen_at_ms: now_ms(),
            nats_connected: false,
            sessions: 0,
            batches: 0,
            conflicts: 0,
        };
        let tasks = vec![
            tokio::spawn(send(client, subjects.clone(), outgoing.clone())),
            tokio::spawn(receive(incoming, subjects, node_id, hub)),
            tokio::spawn(report(node, status, connected)),
        ];
        Ok(Self { node_id, tasks })
    }
}

#[derive(Debug, Clone)]
struct Subjects {
    logs: String,
    typing: String,
    sweep: String,
}

impl Subjects {
    fn new(prefix: &str) -> Self {
        Self {
            logs: format!("{prefix}.logs"),
            typing: format!("{prefix}.typing"),
            sweep: format!("{prefix}.sweep"),
        }
    }
}

/// News waiting to be sent: the newest head per party (news of one party
/// coalesces while NATS is slow or away), datagrams, and whether a sweep is due.
#[derive(Default)]
struct Pending {
    heads: HashMap<PartyId, u64>,
    datagrams: Vec<(Vec<PartyId>, Bytes)>,
    sweep: bool,
}

/// The hub's announcer: queues news for the sending task, never blocking
/// the writer.
struct Outgoing {
    node_id: u64,
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Outgoing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Announcer for Outgoing {
    fn logs_advanced(&self, heads: &[(PartyId, u64)]) {
        {
            let mut pending = self.lock();
            for &(party, head) in heads {
                let newest = pending.heads.entry(party).or_insert(head);
                *newest = (*newest).max(head);
            }
            if pending.heads.len() > MAX_PENDING {
                // Too much news to keep: the others check everything instead.
                pending.heads.clear();
                pending.sweep = true;
            }
        }
        self.wake.notify_one();
    }

    fn datagram(&self, parties: &[PartyId], datagram: &Bytes) {
        {
            let mut pending = self.lock();
            if pending.datagrams.len() >= MAX_DATAGRAMS {
                return;
            }
            pending.datagrams.push((parties.to_vec(), datagram.clone()));
        }
        self.wake.notify_one();
    }
}

/// What the connection's ups and downs mean for news.
fn on_connection_event(
    event: async_nats::Event,
    outgoing: &Outgoing,
    hub: &Hub,
    connected: &AtomicBool,
) {
    match event {
        async_nats::Event::Connected => {
            connected.store(true, Ordering::Relaxed);
            // While away, news from this node and to it may have been
            // lost: tell the others to check, and check here.
            tracing::info!("connected to NATS; sessions check the database for missed events");
            outgoing.lock().sweep = true;
            outgoing.wake.notify_one();
            hub.check_all();
        }
        async_nats::Event::Disconnected => {
            connected.store(false, Ordering::Relaxed);
            tracing::warn!(
                "disconnected from NATS: events reach sessions on other nodes once it is back"
            );
        }
        async_nats::Event::SlowConsumer(_) => {
            tracing::warn!("NATS dropped news for this node; sessions check the database");
            hub.check_all();
        }
        other => tracing::debug!(event = %other, "NATS"),
    }
}

/// Sends queued news whenever there is some.
async fn send(client: async_nats::Client, subjects: Subjects, outgoing: Arc<Outgoing>) {
    loop {
        outgoing.wake.notified().await;
        let (heads, datagrams, sweep) = {
            let mut pending = outgoing.lock();
            (
                std::mem::take(&mut pending.heads),
                std::mem::take(&mut pending.datagrams),
                std::mem::take(&mut pending.sweep),
            )
        };
        let heads: Vec<(PartyId, u64)> = heads.into_iter().collect();
        let mut messages = Vec::new();
        if sweep {
            messages.push((subjects.sweep.clone(), header(outgoing.node_id, 0).freeze()));
        }
        for chunk in heads.chunks(MAX_PAIRS) {
            let mut payload = header(outgoing.node_id, chunk.len() * 16);
            for &(party, head) in chunk {
                payload.put_i64(party);
                payload.put_u64(head);
            }
            messages.push((subjects.logs.clone(), payload.freeze()));
        }
        for (parties, datagram) in datagrams {
            let mut payload = header(outgoing.node_id, 4 + parties.len() * 8 + datagram.len());
            payload.put_u32(u32::try_from(parties.len()).unwrap_or(u32::MAX));
            for party in parties {
                payload.put_i64(party);
            }
            payload.put_slice(&datagram);
            messages.push((subjects.typing.clone(), payload.freeze()));
        }
        for (subject, payload) in messages {
            // Waits while the client's queue is full (NATS away): news
            // meanwhile coalesces in `pending`.
            if let Err(e) = client.publish(subject, payload).await {
                tracing::warn!(error = %e, "news to other nodes not sent; they check later");
                outgoing.lock().sweep = true;
            }
        }
    }
}

fn header(node_id: u64, body: usize) -> BytesMut {
    let mut payload = BytesMut::with_capacity(8 + body);
    payload.put_u64(node_id);
    payload
}

/// Hands news from other nodes to the hub.
async fn receive(
    mut incoming: async_nats::Subscriber,
    subjects: Subjects,
    node_id: u64,
    hub: Arc<Hub>,
) {
    while let Some(message) = incoming.next().await {
        let mut payload = message.payload;
        if payload.len() < 8 || payload.get_u64() == node_id {
            continue;
        }
        let subject = message.subject.as_str();
        if subject == subjects.logs {
            while payload.len() >= 16 {
                let party = payload.get_i64();
                let head = payload.get_u64();
                hub.advance(party, head);
            }
        } else if subject == subjects.sweep {
            hub.check_all();
        } else if subject == subjects.typing {
            if payload.len() < 4 {
                continue;
            }
            let count = payload.get_u32() as usize;
            if payload.len() < count.saturating_mul(8) {
                continue;
            }
            let parties: Vec<PartyId> = (0..count).map(|_| payload.get_i64()).collect();
            hub.relay_local_datagram(&parties, u64::MAX, payload);
        }
    }
}

/// Reports the node in the database every [`REPORT_EVERY`].
async fn report(node: Arc<Node>, mut status: NodeStatus, connected: Arc<AtomicBool>) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        status.seen_at_ms = now_ms();
        status.nats_connected = connected.load(Ordering::Relaxed);
        status.sessions = node.hub.sessions() as u64;
        status.batches = node.writer.stats.batches.load(Ordering::Relaxed);
        status.conflicts = node.writer.stats.conflicts.load(Ordering::Relaxed);
        if let Err(e) = node.store.report_node(&status).await {
            tracing::warn!(error = %e, "reporting this node in the database failed");
        }
    }
}

/// This machine's name, as the operating system gives it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
