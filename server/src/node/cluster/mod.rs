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
//! - `<prefix>.news.logs`: a node's commits, as (party, head) pairs;
//! - `<prefix>.news.typing`: ephemeral datagrams for sessions on other nodes;
//! - `<prefix>.news.sweep`: "news from me may have been lost: check";
//! - `<prefix>.node.<id>.…`: commands handed to node `<id>` (`forward`).
//!
//! News starts with the sending node's id, so a node skips its own.
//!
//! Each node reports itself in the database (`report`), and leases the
//! slots of conversations it orders (`slots`); commands of conversations
//! another node orders are handed to it (`forward`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::task::JoinHandle;

use super::Node;
use super::writer::now_ms;
use crate::model::NodeStatus;
use forward::Forwarder;
use news::Outgoing;
pub(crate) use report::{REPORT_EVERY, UP_WITHIN};
use slots::Slots;

mod forward;
mod news;
mod report;
mod slots;

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
    slots: Arc<Slots>,
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
        let outgoing = Arc::new(Outgoing::new(node_id));
        let events = outgoing.clone();
        let hub_for_events = hub.clone();
        let connected_for_events = connected.clone();
        let disconnects = Arc::new(forward::Disconnects::default());
        let disconnects_for_events = disconnects.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("kanald {node_id:016x}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let outgoing = events.clone();
                let hub = hub_for_events.clone();
                let connected = connected_for_events.clone();
                let disconnects = disconnects_for_events.clone();
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        disconnects.happened();
                    }
                    news::on_connection_event(event, &outgoing, &hub, &connected);
                }
            })
            .connect(config.nats.as_str())
            .await
            .map_err(|e| ClusterError::Address(e.to_string()))?;
        let prefix = &config.subject_prefix;
        let subjects = Subjects::new(prefix);
        // The bits of the random id, as the database's signed integer.
        let me = i64::from_ne_bytes(node_id.to_ne_bytes());
        let subscribe = async |subject: String| {
            client
                .subscribe(subject)
                .await
                .map_err(|e| ClusterError::Subscribe(e.to_string()))
        };
        let incoming = subscribe(format!("{prefix}.news.>")).await?;
        let orders = subscribe(forward::order_subject(prefix, me)).await?;
        let answers = subscribe(forward::reply_subjects(prefix, me)).await?;
        hub.set_announcer(outgoing.clone());
        let slots = Arc::new(Slots::new(&node.domain));
        let forwarder = Arc::new(Forwarder::new(
            me,
            prefix,
            client.clone(),
            node.clone(),
            slots.clone(),
            disconnects,
        ));
        node.writer.set_router(forwarder.clone());
        let slots_view = slots.clone();
        let status = NodeStatus {
            id: me,
            host: report::host_name(),
            listen: listen.to_string(),
            started_at_ms: now_ms(),
            seen_at_ms: now_ms(),
            nats_connected: false,
            sessions: 0,
            batches: 0,
            conflicts: 0,
        };
        let tasks = vec![
            tokio::spawn(news::send(
                client.clone(),
                subjects.clone(),
                outgoing.clone(),
            )),
            tokio::spawn(news::receive(incoming, subjects, node_id, hub)),
            tokio::spawn(forward::take_orders(orders, node.writer.clone(), client)),
            tokio::spawn(forward::take_answers(answers, forwarder)),
            tokio::spawn(slots::lease(node.clone(), slots.clone(), me)),
            tokio::spawn(report::report(node, status, connected)),
        ];
        Ok(Self {
            node_id,
            slots: slots_view,
            tasks,
        })
    }

    /// Who this node believes holds each slot (as of its last lease round).
    pub(crate) fn slot_owners(&self) -> Vec<Option<i64>> {
        self.slots.owners()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Subjects {
    logs: String,
    typing: String,
    sweep: String,
}

impl Subjects {
    fn new(prefix: &str) -> Self {
        Self {
            logs: format!("{prefix}.news.logs"),
            typing: format!("{prefix}.news.typing"),
            sweep: format!("{prefix}.news.sweep"),
        }
    }
}
