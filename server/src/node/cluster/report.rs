//! Each node reports itself in the database every [`REPORT_EVERY`]
//! (`kanald cluster status` shows the reports): a node whose report is
//! older than [`UP_WITHIN`] is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::model::NodeStatus;
use crate::node::Node;
use crate::node::writer::now_ms;

/// How often a node reports itself in the database.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(2);

/// A node that reported itself within this long is up.
pub(crate) const UP_WITHIN: Duration = Duration::from_secs(10);

/// Reports the node in the database every [`REPORT_EVERY`].
pub(super) async fn report(node: Arc<Node>, mut status: NodeStatus, connected: Arc<AtomicBool>) {
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
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
