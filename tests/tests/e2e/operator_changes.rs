//! Operator commands against a running server go through it, ordered with
//! every message: an agent added while customers write receives every
//! event of its inbox from the moment `kanald agent add` returns, live and
//! by Sync, with no restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, ensure};
use kanal_proto::pb;
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

/// Messages the customer sends after the command returned.
const AFTER: usize = 50;

/// The conversation's message seqs among `events`, in log order.
fn message_seqs(events: &[pb::Event], conversation: &str) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::event::Kind::Message(m)) if m.conversation == conversation => Some(m.seq),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_added_while_messages_flow_receives_every_later_event() -> Result<()> {
    let server = TestServer::start().await?;
    let carla = Arc::new(server.register("carla").await?);
    let first = carla
        .create_conversation(&["support@localhost"], "washer")
        .await?;

    // The customer writes without pause, one message after the other, and
    // notes which messages she sent after the command returned.
    let returned = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (carla, returned, id) = (carla.clone(), returned.clone(), first.id.clone());
        async move {
            let (mut before, mut after) = (0, Vec::new());
            for n in 0.. {
                let sent_after = returned.load(Ordering::SeqCst);
                let sent = carla.send_text(&id, &format!("message {n}")).await?;
                if !sent_after {
                    before += 1;
                } else {
                    after.push(sent.seq);
                    if after.len() == AFTER {
                        break;
                    }
                }
            }
            anyhow::Ok((before, after))
        }
    });

    // The real command line, as an operator runs it, against the running server.
    run_kanald(
        KANALD,
        server.path(),
        &["agent", "add", "bob", "--inbox", "support"],
    )
    .await?;
    returned.store(true, Ordering::SeqCst);
    let (before, after) = writer.await??;
    ensure!(before > 0, "no message flowed while the command ran");
    let second = carla
        .create_conversation(&["support@localhost"], "dryer")
        .await?;

    // By Sync: every message sent after the command, and everything after
    // bob's first event, with no gap in his log.
    let bob = server.login("bob@localhost").await?;
    let mut live = bob.subscribe(0).await?;
    let replayed = until_caught_up(&mut live).await?;
    let seqs: Vec<u64> = replayed.iter().map(|e| e.seq).collect();
    ensure!(
        seqs == (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "bob's log has gaps: {seqs:?}"
    );
    let messages = message_seqs(&replayed, &first.id);
    let from = *messages.first().context("bob received no message")?;
    let last = *after.last().context("no message after the command")?;
    ensure!(
        messages == (from..=last).collect::<Vec<_>>(),
        "bob missed messages between his first ({from}) and the last ({last}): {messages:?}"
    );
    ensure!(
        from <= after[0],
        "a message sent after the command is missing"
    );
    let added_second = replayed.iter().any(
        |e| matches!(&e.kind, Some(pb::event::Kind::ConversationAdded(c)) if c.id == second.id),
    );
    ensure!(
        added_second,
        "the conversation opened afterwards did not reach bob"
    );

    // Live: the next messages arrive on the open stream, in order.
    for n in 0..10 {
        let sent = carla.send_text(&second.id, &format!("live {n}")).await?;
        let message = next_message(&mut live).await?;
        ensure!((message.conversation.as_str(), message.seq) == (second.id.as_str(), sent.seq));
    }

    // The command line refuses what it must, naming the problem.
    let stderr = refused_kanald(
        KANALD,
        server.path(),
        &["agent", "add", "dora", "--inbox", "nowhere"],
    )
    .await?;
    ensure!(
        stderr.contains("nowhere@localhost is not an inbox"),
        "unclear refusal: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn without_a_running_server_the_command_changes_the_data_directory() -> Result<()> {
    let server = TestServer::start().await?;
    let (dir, database) = (server.dir.clone(), server.database.clone());
    let addr = server.addr();
    server.server.shutdown().await;
    ensure!(
        !dir.path().join("admin.sock").exists(),
        "a stopped server leaves no admin socket behind"
    );
    run_kanald(
        KANALD,
        dir.path(),
        &["agent", "add", "erin", "--inbox", "support"],
    )
    .await?;
    let server = TestServer::start_in(dir, database, addr).await?;
    let erin = server.login("erin@localhost").await?;
    let carla = server.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "heater")
        .await?;
    let listed = erin.conversations(10, 0).await?;
    ensure!(listed.conversations.iter().any(|c| c.id == conversation.id));
    Ok(())
}
