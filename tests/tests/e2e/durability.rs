//! Every acknowledged message survives `kill -9` of the server process, on
//! SQLite and (when the suite runs on it) on PostgreSQL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use kanal_proto::pb;
use kanal_tests::*;
use tokio::process::Child;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

/// Runs a `kanald` subcommand to completion.
async fn kanald(data: &Path, args: &[&str]) -> Result<()> {
    run_kanald(KANALD, data, args).await
}

/// Starts `kanald run` on a free port of 127.0.0.1.
async fn serve(data: &Path) -> Result<(Child, SocketAddr, String)> {
    spawn_kanald(KANALD, data, loopback(0)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // On PostgreSQL when the suite runs there: the server then commits to it.
    let database = FreshDatabase::for_this_test().await?;
    let mut init = vec!["init"];
    if let Some(database) = &database {
        init.extend(["--database", &database.url]);
    }
    kanald(&data, &init).await?;
    // One customer sends as fast as it can: its send limit would refuse most.
    set_config_key(&data, "sends_per_second_per_party", "0")?;
    kanald(&data, &["agent", "add", "alice"]).await?;

    let (mut child, addr, fingerprint) = serve(&data).await?;
    let config = config_for(addr, &fingerprint);
    let customer = kanal_client::Client::connect(
        config,
        kanal_client::Credentials::Register {
            local: "carla".into(),
            password: PASSWORD.into(),
            display_name: String::new(),
            invite: String::new(),
        },
    )
    .await?;
    let conversation = customer
        .create_conversation(&["support@localhost"], "")
        .await?
        .id;

    // Many senders keep sends in flight; the server dies while they are.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..32 {
        let (client, id, acked) = (customer.clone(), conversation.clone(), acked_tx.clone());
        senders.spawn(async move {
            for n in 0.. {
                let cmid = format!("s{sender}-{n}");
                let body = pb::Body {
                    kind: Some(pb::body::Kind::Text(cmid.clone())),
                };
                match client.send(&id, &cmid, body).await {
                    Ok(sent) => {
                        if acked.send((cmid, sent.seq)).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }
    drop(acked_tx);
    let mut acked = BTreeMap::new();
    while acked.len() < 2_000 {
        let (cmid, seq) = acked_rx.recv().await.context("senders stopped early")?;
        acked.insert(seq, cmid);
    }
    child.start_kill()?; // SIGKILL: no shutdown path runs.
    child.wait().await?;
    customer.close().await;
    senders.shutdown().await;
    while let Ok((cmid, seq)) = acked_rx.try_recv() {
        acked.insert(seq, cmid);
    }

    let (_child, addr, fingerprint) = serve(&data).await?;
    let reader = kanal_client::Client::connect(
        config_for(addr, &fingerprint),
        kanal_client::Credentials::Password {
            address: "alice@localhost".into(),
            password: PASSWORD.into(),
        },
    )
    .await?;
    let stored = stored_sends(&reader, &conversation).await?;
    assert_acked_stored(&acked, &stored);
    Ok(())
}
