//! An event of an inbox's conversation is stored once, however many agents
//! the inbox has: the agents' logs follow the inbox's log. Each agent still
//! has its own gapless log, live and replayed alike, and an agent added
//! later receives exactly the events from then on.

use anyhow::{Context, Result, ensure};
use kanal_proto::pb;
use kanal_server::{admin, datadir};
use kanal_tests::*;

/// Agents of the inbox: two that log in, the rest never do.
const AGENTS: usize = 200;
/// Messages the customer sends; the last agent is added halfway.
const MESSAGES: usize = 100;

/// Reads `n` stored events.
async fn take(events: &mut kanal_client::Events, n: usize) -> Result<Vec<pb::Event>> {
    let mut taken = Vec::with_capacity(n);
    while taken.len() < n {
        taken.push(next_stored(events).await?);
    }
    Ok(taken)
}

/// The message seq of each message event, in order.
fn message_seqs(events: &[pb::Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::event::Kind::Message(m)) => Some(m.seq),
            _ => None,
        })
        .collect()
}

/// Rows of `tables`, read from the server's database (its SQLite file, or
/// its PostgreSQL database).
async fn rows<const N: usize>(server: &TestServer, tables: [&str; N]) -> Result<[i64; N]> {
    let mut counts = [0; N];
    // The table names are this file's own.
    let count_of = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    match &server.database {
        Some(database) => {
            use sqlx::Connection as _;
            let mut db = sqlx::PgConnection::connect(&database.url)
                .await
                .context("reading the database")?;
            for (count, table) in counts.iter_mut().zip(tables) {
                *count = sqlx::query_scalar(sqlx::AssertSqlSafe(count_of(table)))
                    .fetch_one(&mut db)
                    .await?;
            }
        }
        None => {
            let db = rusqlite::Connection::open_with_flags(
                server.path().join("kanal.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .context("reading the database")?;
            for (count, table) in counts.iter_mut().zip(tables) {
                *count = db.query_row(&count_of(table), [], |r| r.get(0))?;
            }
        }
    }
    Ok(counts)
}

/// Adds `count` agents to the support inbox that never log in.
async fn add_silent_agents(server: &TestServer, count: usize) -> Result<()> {
    let node = server.server.node();
    for i in 0..count {
        let local = format!("agent{i}");
        admin::add_agent(&node, &local, datadir::DEFAULT_INBOX, Some(PASSWORD), "").await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_inbox_with_200_agents_stores_each_event_once() -> Result<()> {
    let server = TestServer::start_with(unlimited_sends()).await?;
    let ann = server.agent("ann").await?;
    add_silent_agents(&server, AGENTS - 2).await?;
    let mut ann_live = ann.subscribe(0).await?;
    until_caught_up(&mut ann_live).await?;

    let carla = server.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "washer leaks")
        .await?;
    for i in 0..MESSAGES / 2 {
        carla.send_text(&conversation.id, &format!("m{i}")).await?;
    }
    // The 200th agent joins halfway.
    let zoe = server.agent("zoe").await?;
    for i in MESSAGES / 2..MESSAGES {
        carla.send_text(&conversation.id, &format!("m{i}")).await?;
    }
    let reply = zoe
        .send_text(&conversation.id, "please rinse the filter")
        .await?;

    // ann's live log: the conversation, every message, zoe's reply, in
    // consecutive seqs.
    let live = take(&mut ann_live, MESSAGES + 2).await?;
    let seqs: Vec<u64> = live.iter().map(|e| e.seq).collect();
    ensure!(
        seqs == (1..=(MESSAGES as u64 + 2)).collect::<Vec<_>>(),
        "ann's live seqs: {seqs:?}"
    );
    ensure!(matches!(
        live[0].kind,
        Some(pb::event::Kind::ConversationAdded(_))
    ));
    ensure!(message_seqs(&live) == (1..=reply.seq).collect::<Vec<_>>());

    // Replayed on a new connection, from the start and from the middle, it
    // is the same, event for event.
    let again = server.login("ann@localhost").await?;
    let mut replay = again.subscribe(0).await?;
    ensure!(until_caught_up(&mut replay).await? == live, "ann's replay");
    let middle = server.login("ann@localhost").await?;
    let mut replay = middle.subscribe(60).await?;
    ensure!(
        until_caught_up(&mut replay).await?[..] == live[60..],
        "ann's replay from 60"
    );

    // zoe's log starts with the first message after she joined.
    let mut zoe_log = zoe.subscribe(0).await?;
    let zoe_events = until_caught_up(&mut zoe_log).await?;
    let first = MESSAGES as u64 / 2 + 1;
    ensure!(
        message_seqs(&zoe_events) == (first..=reply.seq).collect::<Vec<_>>(),
        "zoe's log: {:?}",
        message_seqs(&zoe_events)
    );
    let zoe_seqs: Vec<u64> = zoe_events.iter().map(|e| e.seq).collect();
    ensure!(zoe_seqs == (1..=zoe_seqs.len() as u64).collect::<Vec<_>>());

    // carla receives the reply.
    let mut carla_log = carla.subscribe(0).await?;
    let carla_events = until_caught_up(&mut carla_log).await?;
    ensure!(message_seqs(&carla_events).last() == Some(&reply.seq));

    // Storage: carla's own rows, one row of the inbox's log per event, and
    // one span per agent where its log starts following the inbox: about
    // three rows per event, where one per agent per event would be 200.
    let events = MESSAGES as i64 + 2;
    let [own, inbox, spans] = rows(&server, ["events", "inbox_events", "event_spans"]).await?;
    println!(
        "{events} events to 1 customer and {AGENTS} agents: {own} own rows, \
         {inbox} inbox-log rows, {spans} spans"
    );
    ensure!(own == events, "carla's own rows: {own}");
    ensure!(inbox == events, "inbox-log rows: {inbox}");
    ensure!(spans == AGENTS as i64, "one span per agent: {spans}");
    Ok(())
}

/// Sends into `conversation` as fast as the server's per-party send limit
/// lets one account (waiting out each refusal's retry hint) until `stop`
/// fires; returns how many were stored.
async fn flood(
    client: kanal_client::Client,
    conversation: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<u64> {
    let mut stored = 0;
    loop {
        let text = format!("flood {stored}");
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(stored),
            sent = client.send_text(&conversation, &text) => match sent {
                Ok(_) => stored += 1,
                Err(kanal_client::ClientError::Refused {
                    retry_after: Some(wait),
                    ..
                }) => tokio::time::sleep(wait).await,
                Err(e) => return Err(e.into()),
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_into_a_200_agent_inbox_leaves_a_bystander_alone() -> Result<()> {
    // Default limits: the flooder gets what one account may send.
    let server = TestServer::start().await?;
    let mut bystander = Bystander::start(&server, "calm", "alice").await?;
    add_silent_agents(&server, AGENTS - 1).await?;
    let flooder = server.register("flooder").await?;
    let conversation = flooder
        .create_conversation(&["support@localhost"], "flood")
        .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let flooding = tokio::spawn(flood(flooder, conversation.id, stopped));

    let report = bystander.converse(100).await?;
    let _ = stop.send(());
    let flooded = flooding.await??;
    report.assert_within(
        "flood into a 200-agent inbox",
        std::time::Duration::from_millis(500),
    )?;
    ensure!(flooded > 0, "the flooder stored nothing");

    // Every event of the two conversations: one row of its customer's, one
    // of the inbox's log; and one span per agent (alice's bystander
    // included), where its log started following the inbox.
    let [messages, conversations, own, inbox, spans] = rows(
        &server,
        [
            "messages",
            "conversations",
            "events",
            "inbox_events",
            "event_spans",
        ],
    )
    .await?;
    let events = messages + conversations;
    println!(
        "{flooded} flood messages and 100 of the bystander's into {AGENTS} agents: \
         {own} own rows, {inbox} inbox-log rows, {spans} spans for {events} events"
    );
    ensure!(
        own == events && inbox == events,
        "{own} own and {inbox} inbox rows"
    );
    ensure!(spans == AGENTS as i64, "{spans} spans");
    assert_memory_bounded("flood into a 200-agent inbox")
}
