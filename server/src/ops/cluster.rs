//! `kanald cluster status`: the nodes on one PostgreSQL database, as each
//! last reported itself.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::config::Config;
use super::database::Database;
use crate::model::{NodeStatus, SLOTS, SlotLease};
use crate::node::cluster::{REPORT_EVERY, UP_WITHIN};
use crate::node::writer::now_ms;

/// The report of every node on the database that `data_dir`'s
/// configuration names, or `database` if given.
pub(crate) async fn status(data_dir: &Path, database: Option<&str>) -> Result<String> {
    let setting = match database {
        Some(url) => url.to_owned(),
        None => Config::load(data_dir)?.database,
    };
    let database = Database::parse(&setting, data_dir)
        .with_context(|| format!("`{setting}` is not a database"))?;
    if !matches!(database, Database::Postgres(_)) {
        bail!("{database}: one node on SQLite; several nodes share a PostgreSQL database");
    }
    let store = database
        .open()
        .await
        .with_context(|| format!("database {database}"))?;
    let now = now_ms();
    let shared = store.shared();
    let read = async {
        Ok::<_, crate::store::StoreError>((shared.nodes().await?, shared.slots(now).await?))
    };
    let read = read.await;
    store.close().await;
    let (nodes, slots) = read?;
    Ok(render(&nodes, &slots, now))
}

/// The table `kanald cluster status` prints, as of `now_ms`.
pub(crate) fn render(nodes: &[NodeStatus], slots: &[SlotLease], now_ms: i64) -> String {
    let up_within = i64::try_from(UP_WITHIN.as_millis()).unwrap_or(i64::MAX);
    let up = |node: &NodeStatus| now_ms - node.seen_at_ms <= up_within;
    let mut out = String::new();
    let live = nodes.iter().filter(|n| up(n)).count();
    let _ = writeln!(out, "{live} of {} nodes up", nodes.len());
    if nodes.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16}  {:<4}  {:<16}  {:<21}  {:>9}  {:<4}  {:>5}  {:>8}  {:>9}  {:>9}",
        "NODE",
        "UP",
        "HOST",
        "CLIENTS ON",
        "SEEN",
        "NATS",
        "SLOTS",
        "SESSIONS",
        "BATCHES",
        "CONFLICTS"
    );
    for node in nodes {
        let seen = (now_ms - node.seen_at_ms).max(0) / 1000;
        let held = slots.iter().filter(|s| s.owner == Some(node.id)).count();
        let _ = writeln!(
            out,
            "{:016x}  {:<4}  {:<16}  {:<21}  {:>7}s  {:<4}  {:>5}  {:>8}  {:>9}  {:>9}",
            u64::from_ne_bytes(node.id.to_ne_bytes()),
            if up(node) { "up" } else { "down" },
            node.host,
            node.listen,
            seen,
            if node.nats_connected { "yes" } else { "no" },
            held,
            node.sessions,
            node.batches,
            node.conflicts,
        );
    }
    let free = slots.iter().filter(|s| s.owner.is_none()).count();
    let _ = writeln!(
        out,
        "\nConversations fall into {SLOTS} slots by their inbox (or their starter); \
         the node leasing a slot orders its conversations, and other nodes hand it \
         their clients' commands. Slots without a lease: {free} (any node orders \
         those). CONFLICTS: batches applied again because another node wrote first. \
         A node is up while it reports itself every {} s; SEEN is how long ago it \
         last did.",
        REPORT_EVERY.as_secs()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_up_and_down() {
        let node = |id: i64, seen_at_ms: i64| NodeStatus {
            id,
            host: "kanal-1".into(),
            listen: "0.0.0.0:7447".into(),
            started_at_ms: 0,
            seen_at_ms,
            nats_connected: true,
            sessions: 3,
            batches: 120,
            conflicts: 2,
        };
        let slots: Vec<SlotLease> = (0..SLOTS)
            .map(|slot| SlotLease {
                slot,
                owner: (slot < 60).then_some(1),
            })
            .collect();
        let text = render(&[node(1, 100_000), node(-1, 50_000)], &slots, 101_000);
        assert!(text.starts_with("1 of 2 nodes up\n"), "{text}");
        assert!(text.contains("0000000000000001  up    kanal-1"), "{text}");
        assert!(text.contains("ffffffffffffffff  down  kanal-1"), "{text}");
        assert!(text.contains("51s"), "{text}");
        assert!(text.contains("     60         3"), "{text}");
        assert!(text.contains("Slots without a lease: 4"), "{text}");
        assert_eq!(render(&[], &[], 0), "0 of 0 nodes up\n");
    }
}
