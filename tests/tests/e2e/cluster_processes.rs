//! Three `kanald` processes on one PostgreSQL database and one NATS: one is
//! killed with SIGKILL in the middle of a load; every acknowledged message
//! survives, its clients go on through another node, every event reaches
//! an agent on a third node once and in order, and `kanald cluster status`
//! tells which nodes are up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kanal_client::{Client, Credentials};
use kanal_proto::pb;
use kanal_tests::*;
use tokio::process::Child;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

/// A node's data directory, initialised on the shared database, with the
/// first node's certificate (the nodes of one domain share one).
async fn node_dir(
    root: &Path,
    index: usize,
    database: &str,
    nats: &str,
    prefix: &str,
) -> Result<PathBuf> {
    let data = root.join(format!("node{index}"));
    if index > 0 {
        std::fs::create_dir_all(&data)?;
        for file in ["cert.pem", "key.pem"] {
            std::fs::copy(root.join("node0").join(file), data.join(file))?;
        }
    }
    run_kanald(KANALD, &data, &["init", "--database", database]).await?;
    set_config_key(&data, "nats", &format!("\"{nats}\""))?;
    set_config_key(&data, "nats_subject_prefix", &format!("\"{prefix}\""))?;
    set_config_key(&data, "sends_per_second_per_party", "0")?;
    Ok(data)
}

/// A text body.
fn text(text: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(text.to_owned())),
    }
}

/// Waits until `kanald cluster status` says `up` of `all` nodes are up,
/// each of them connected to NATS, and every slot is leased.
async fn until_status(data: &Path, up: usize, all: usize) -> Result<String> {
    let wanted = format!("{up} of {all} nodes up");
    let leased = |status: &str| status.contains("Slots without a lease: 0 ");
    let connected = |status: &str| {
        status
            .lines()
            .filter(|line| line.contains("  up  "))
            .all(|line| line.contains("  yes  "))
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = kanald_output(KANALD, data, &["cluster", "status"]).await?;
        if status.starts_with(&wanted) && connected(&status) && leased(&status) {
            return Ok(status);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "cluster status never said {wanted:?}; last:\n{status}"
        );
        // The nodes report every two seconds: ask again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_load_loses_nothing() -> Result<()> {
    let root = tempfile::tempdir()?;
    let server = FreshDatabase::wanted()?
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let database = FreshDatabase::create(&server).await?;
    let nats = std::env::var(NATS_ENV).unwrap_or_else(|_| DEFAULT_NATS.to_owned());
    let prefix = format!("kanal.processes{}", std::process::id());
    let mut dirs = Vec::new();
    for index in 0..3 {
        dirs.push(node_dir(root.path(), index, &database.url, &nats, &prefix).await?);
    }
    run_kanald(KANALD, &dirs[0], &["agent", "add", "ann"]).await?;
    let mut nodes: Vec<(Child, SocketAddr, String)> = Vec::new();
    for dir in &dirs {
        nodes.push(spawn_kanald(KANALD, dir, loopback(0)).await?);
    }
    let fingerprint = nodes[0].2.clone();
    assert!(nodes.iter().all(|n| n.2 == fingerprint), "one certificate");
    until_status(&dirs[0], 3, 3).await?;

    // The agent on node 2 listens; the customer writes through node 1.
    let ann = Client::connect(
        config_for(nodes[2].1, &fingerprint),
        Credentials::Password {
            address: "ann@localhost".into(),
            password: PASSWORD.into(),
        },
    )
    .await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = Client::connect(
        config_for(nodes[1].1, &fingerprint),
        Credentials::Register {
            local: "carla".into(),
            password: PASSWORD.into(),
            display_name: String::new(),
            invite: String::new(),
        },
    )
    .await?;
    let token = carla.resume_token();
    let conversation = carla
        .create_conversation(&["support@localhost"], "boiler")
        .await?
        .id;

    // Many sends in flight when node 1 dies.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..16 {
        let (client, id, acked) = (carla.clone(), conversation.clone(), acked_tx.clone());
        senders.spawn(async move {
            for n in 0.. {
                let cmid = format!("s{sender}-{n}");
                match client.send(&id, &cmid, text(&cmid)).await {
                    Ok(sent) if acked.send((cmid, sent.seq)).is_ok() => {}
                    _ => return,
                }
            }
        });
    }
    drop(acked_tx);
    let mut acked = BTreeMap::new();
    while acked.len() < 500 {
        let (cmid, seq) = acked_rx.recv().await.context("senders stopped early")?;
        acked.insert(seq, cmid);
    }
    let (mut killed, ..) = nodes.remove(1);
    killed.start_kill()?; // SIGKILL: no shutdown path runs.
    killed.wait().await?;
    carla.close().await;
    senders.shutdown().await;
    while let Ok((cmid, seq)) = acked_rx.try_recv() {
        acked.insert(seq, cmid);
    }

    // The customer goes on through node 0 with her session.
    let carla = Client::connect(
        config_for(nodes[0].1, &fingerprint),
        Credentials::Resume { token },
    )
    .await?;
    for n in 0..50 {
        let cmid = format!("after-{n}");
        let sent = carla.send(&conversation, &cmid, text(&cmid)).await?;
        acked.insert(sent.seq, cmid);
    }

    // Every acknowledged message is stored, the conversation is gapless,
    // and the agent on node 2 received each message once, in order.
    let stored = stored_sends(&ann, &conversation).await?;
    assert_acked_stored(&acked, &stored);
    let last = *stored.keys().last().context("messages")?;
    let mut received = Vec::new();
    while received.last() != Some(&last) {
        if let Some(pb::event::Kind::Message(m)) = next_stored(&mut ann_events).await?.kind {
            received.push(m.seq);
        }
    }
    assert_eq!(received, (1..=last).collect::<Vec<_>>());

    // Its slots went to the two nodes left.
    let status = until_status(&dirs[0], 2, 3).await?;
    assert!(status.contains("down"), "{status}");
    let held: Vec<usize> = status
        .lines()
        .filter(|line| line.contains("  up  "))
        .filter_map(|line| line.split_whitespace().nth(6)?.parse().ok())
        .collect();
    assert_eq!(held.iter().sum::<usize>(), 64, "{status}");
    Ok(())
}
