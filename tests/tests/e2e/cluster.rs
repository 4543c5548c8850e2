//! Several nodes on one PostgreSQL database and one NATS: customers and
//! agents connected to different nodes converse, every event arrives once
//! and in order, and a client may move to another node and sync there.

use kanal_client::Events;
use kanal_proto::pb;
use kanal_tests::*;

/// Reads events until the message `last` of `conversation` arrived;
/// returns the messages' seqs, checking that the event stream's own seqs
/// run without a gap or repeat from `after`.
async fn messages_until(
    events: &mut Events,
    conversation: &str,
    mut after: u64,
    last: u64,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let event = next_stored(events).await?;
        anyhow::ensure!(
            event.seq == after + 1,
            "event seq {} after {after}: the log must arrive gapless, once",
            event.seq
        );
        after = event.seq;
        if let Some(pb::event::Kind::Message(message)) = event.kind
            && message.conversation == conversation
        {
            seqs.push(message.seq);
        }
    }
    Ok((seqs, after))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_and_agents_on_different_nodes_converse() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let ann = cluster.node(0).agent("ann").await?;
    let ben = cluster.node(2).agent("ben").await?;
    let mut ann_events = ann.subscribe(0).await?;
    let mut ben_events = ben.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    until_caught_up(&mut ben_events).await?;

    let carla = cluster.node(1).register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "washer leaks")
        .await?;
    for n in 1..=20 {
        let sent = carla.send_text(&conversation.id, &format!("m{n}")).await?;
        assert_eq!(sent.seq, n);
    }

    // Both agents, on the other two nodes, receive the conversation and
    // every message once, in order.
    let mut heads = Vec::new();
    for events in [&mut ann_events, &mut ben_events] {
        let added = next_stored(events).await?;
        assert!(
            matches!(&added.kind, Some(pb::event::Kind::ConversationAdded(c)) if c.id == conversation.id),
            "{added:?}"
        );
        let (seqs, head) = messages_until(events, &conversation.id, added.seq, 20).await?;
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        heads.push(head);
    }

    // Both answer at once from their nodes; the customer receives every
    // answer once, in the conversation's order.
    let (ann_sent, ben_sent) = tokio::join!(
        async {
            for n in 1..=5 {
                ann.send_text(&conversation.id, &format!("ann {n}")).await?;
            }
            anyhow::Ok(())
        },
        async {
            for n in 1..=5 {
                ben.send_text(&conversation.id, &format!("ben {n}")).await?;
            }
            anyhow::Ok(())
        }
    );
    ann_sent?;
    ben_sent?;
    let (seqs, carla_head) = messages_until(&mut carla_events, &conversation.id, 0, 30).await?;
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    let history = carla.history(&conversation.id, 0, 100).await?;
    let senders: Vec<&str> = history.messages.iter().map(|m| m.sender.as_str()).collect();
    assert_eq!(senders.len(), 30);
    assert_eq!(senders.iter().filter(|s| **s == "ann@localhost").count(), 5);
    assert_eq!(senders.iter().filter(|s| **s == "ben@localhost").count(), 5);
    for (events, head) in [(&mut ann_events, heads[0]), (&mut ben_events, heads[1])] {
        let (seqs, _) = messages_until(events, &conversation.id, head, 30).await?;
        assert_eq!(seqs, (21..=30).collect::<Vec<_>>());
    }

    // The customer moves to another node: her session resumes there and
    // syncs from where she was, with nothing missing and nothing twice.
    let token = carla.resume_token();
    drop(carla_events);
    drop(carla);
    let carla = cluster.node(2).resume(&token).await?;
    let mut carla_events = carla.subscribe(carla_head).await?;
    assert!(until_caught_up(&mut carla_events).await?.is_empty());
    ann.send_text(&conversation.id, "anything else?").await?;
    let (seqs, _) = messages_until(&mut carla_events, &conversation.id, carla_head, 31).await?;
    assert_eq!(seqs, vec![31]);
    Ok(())
}

/// NATS carries only news: while it is down, nodes go on committing, and
/// once it is back every session learns what it missed from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_and_restarted_loses_nothing() -> anyhow::Result<()> {
    let nats = PrivateNats::start().await?;
    let port = nats.addr.port();
    let cluster = TestCluster::start_on(2, &nats.url()).await?;
    let ann = cluster.node(0).agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = cluster.node(1).register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "heater")
        .await?;
    carla.send_text(&conversation.id, "before").await?;
    let (seqs, head) = messages_until(&mut ann_events, &conversation.id, 0, 1).await?;
    assert_eq!(seqs, vec![1]);

    // NATS goes away; the customer's messages are still acknowledged
    // (durable in the database), only their news is lost.
    nats.stop().await?;
    for n in 2..=6 {
        let sent = carla
            .send_text(&conversation.id, &format!("during {n}"))
            .await?;
        assert_eq!(sent.seq, n);
    }

    // NATS is back on the same address: the agent on the other node
    // receives every message it missed, once, in order.
    let _nats = PrivateNats::start_on(Some(port)).await?;
    let (seqs, head) = messages_until(&mut ann_events, &conversation.id, head, 6).await?;
    assert_eq!(seqs, (2..=6).collect::<Vec<_>>());
    carla.send_text(&conversation.id, "after").await?;
    let (seqs, _) = messages_until(&mut ann_events, &conversation.id, head, 7).await?;
    assert_eq!(seqs, vec![7]);
    Ok(())
}

/// A command handed to the node that orders its conversation, just as the
/// connection to NATS stalls and drops, may or may not have arrived: a
/// send (stored once per client_msg_id) is then ordered where it was
/// received, at once, and is stored once; nothing waits for an answer
/// that cannot come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_handed_on_as_nats_drops_is_stored_once() -> anyhow::Result<()> {
    let nats = PrivateNats::start().await?;
    let links = [
        NatsLink::to(nats.addr).await?,
        NatsLink::to(nats.addr).await?,
    ];
    let mut cluster = TestCluster::start_on(1, &links[0].url()).await?;
    cluster.add_node_via(&links[1].url()).await?;
    cluster.until_slots_spread().await?;
    let ann = cluster.node(0).agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = cluster.node(1).register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "boiler")
        .await?;

    // Both nodes still believe they are connected, and nothing they send
    // arrives: one orders its client's send, the other hands its client's
    // on (the PUB waits in its frozen link), and both links hold bytes.
    for link in &links {
        link.freeze();
    }
    let ann_sends = ann.send_text(&conversation.id, "from ann");
    let carla_sends = carla.send_text(&conversation.id, "from carla");
    let held = async {
        for link in &links {
            link.until_holding().await?;
        }
        for link in &links {
            link.cut();
        }
        anyhow::Ok(())
    };
    let (ann_sent, carla_sent, held) = tokio::join!(ann_sends, carla_sends, held);
    held?;
    let mut seqs = vec![ann_sent?.seq, carla_sent?.seq];
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2]);
    let history = ann.history(&conversation.id, 0, 10).await?;
    let texts: Vec<&str> = history.messages.iter().map(text_of).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.contains(&"from ann") && texts.contains(&"from carla"));

    // Mended: each side receives the other's message once.
    for link in &links {
        link.mend();
    }
    let (ann_seen, _) = messages_until(&mut ann_events, &conversation.id, 0, 2).await?;
    assert_eq!(ann_seen, vec![1, 2]);
    let (carla_seen, _) = messages_until(&mut carla_events, &conversation.id, 0, 2).await?;
    assert_eq!(carla_seen, vec![1, 2]);
    Ok(())
}

/// The slots spread over the nodes, and a conversation written through
/// every node at once is ordered by the one node that holds its slot: the
/// others hand it their clients' commands, so no batch ever conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_conversation_is_ordered_by_one_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let held = cluster.until_slots_spread().await?;
    assert_eq!(held.iter().sum::<usize>(), 64, "{held:?}");
    let ann = cluster.node(0).agent("ann").await?;
    let ben = cluster.node(2).agent("ben").await?;
    let carla = cluster.node(1).register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "dryer")
        .await?;
    let (_, conflicts_before) = cluster.ordering();
    let write = async |client: &kanal_client::Client, who: &str| {
        for n in 0..20 {
            client
                .send_text(&conversation.id, &format!("{who} {n}"))
                .await?;
        }
        anyhow::Ok(())
    };
    let (a, b, c) = tokio::join!(
        write(&ann, "ann"),
        write(&ben, "ben"),
        write(&carla, "carla")
    );
    a?;
    b?;
    c?;
    let (_, conflicts_after) = cluster.ordering();
    assert_eq!(conflicts_after, conflicts_before, "no batch conflicted");
    let history = carla.history(&conversation.id, 0, 100).await?;
    let seqs: Vec<u64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    Ok(())
}

/// A node cut off from NATS but not from PostgreSQL goes on ordering what
/// its clients send, and so does the other node for the same
/// conversation: their commits never collide (seqs stay gapless and
/// unique), and once the node is back every session learns what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_nats_orders_nothing_twice() -> anyhow::Result<()> {
    let nats = PrivateNats::start().await?;
    let mut cluster = TestCluster::start_on(1, &nats.url()).await?;
    let link = NatsLink::to(nats.addr).await?;
    cluster.add_node_via(&link.url()).await?;
    cluster.until_slots_spread().await?;
    let ann = cluster.node(0).agent("ann").await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    let carla = cluster.node(1).register("carla").await?;
    let mut carla_events = carla.subscribe(0).await?;
    until_caught_up(&mut carla_events).await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "router")
        .await?;

    // Cut node 1 from NATS; wait until it says so itself.
    link.cut();
    let store = cluster.node(0).server.store();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let nodes = store.nodes().await?;
        if nodes.len() == 2 && nodes.iter().filter(|n| n.nats_connected).count() == 1 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "node 1 never reported itself cut off"
        );
        // Nodes report themselves every two seconds.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Both nodes order the same conversation at once.
    let write = async |client: &kanal_client::Client, who: &str| {
        for n in 0..30 {
            client
                .send_text(&conversation.id, &format!("{who} {n}"))
                .await?;
        }
        anyhow::Ok(())
    };
    let (a, c) = tokio::join!(write(&ann, "ann"), write(&carla, "carla"));
    a?;
    c?;
    let history = ann.history(&conversation.id, 0, 100).await?;
    let seqs: Vec<u64> = history.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>(), "gapless and unique");
    for who in ["ann", "carla"] {
        let mine: Vec<String> = history
            .messages
            .iter()
            .map(text_of)
            .filter(|text| text.starts_with(who))
            .map(str::to_owned)
            .collect();
        let sent: Vec<String> = (0..30).map(|n| format!("{who} {n}")).collect();
        assert_eq!(mine, sent, "each of {who}'s messages once, in her order");
    }

    // Mended: both sessions receive every message once, in order.
    link.mend();
    for events in [&mut ann_events, &mut carla_events] {
        let (seqs, _) = messages_until(events, &conversation.id, 0, 60).await?;
        assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    }
    Ok(())
}

/// Typing crosses nodes too (best effort, never stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_a_party_on_another_node() -> anyhow::Result<()> {
    let cluster = TestCluster::start(2).await?;
    let ann = cluster.node(0).agent("ann").await?;
    let carla = cluster.node(1).register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@localhost"], "oven")
        .await?;
    let mut ann_events = ann.subscribe(0).await?;
    until_caught_up(&mut ann_events).await?;
    // Datagrams are unreliable by design; resend until one arrives.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let typing = loop {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no typing arrived");
        carla.typing(&conversation.id, true)?;
        match tokio::time::timeout(std::time::Duration::from_millis(200), ann_events.next()).await {
            Ok(Some(kanal_client::ClientEvent::Typing(typing))) => break typing,
            Ok(Some(_)) | Err(_) => continue,
            Ok(None) => anyhow::bail!("event stream ended"),
        }
    };
    assert_eq!(typing.from, "carla@localhost");
    assert_eq!(typing.conversation, conversation.id);
    Ok(())
}

/// A node without `nats` uses its database alone: a second one on the same
/// database, or a clustered one, is refused at start and says why; once the
/// lone node stops, another may start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_keeps_its_database_to_itself() -> anyhow::Result<()> {
    let server = FreshDatabase::wanted()?.unwrap_or_else(|| DEFAULT_POSTGRES.to_owned());
    let database = std::sync::Arc::new(FreshDatabase::create(&server).await?);
    let init = |nats: &str| {
        let database = database.clone();
        let nats = nats.to_owned();
        async move {
            let dir = std::sync::Arc::new(tempfile::tempdir()?);
            let config = kanal_server::config::Config {
                database: database.url.clone(),
                nats,
                ..Default::default()
            };
            kanal_server::datadir::init(dir.path(), &config).await?;
            anyhow::Ok(dir)
        }
    };
    let lone = TestServer::start_in(init("").await?, Some(database.clone()), loopback(0)).await?;
    let second = TestServer::start_in(init("").await?, Some(database.clone()), loopback(0)).await;
    let refused = second.expect_err("a second lone node");
    assert!(refused.to_string().contains("database"), "{refused:#}");
    assert!(format!("{refused:#}").contains("`nats`"), "{refused:#}");
    let clustered = init(DEFAULT_NATS).await?;
    let refused = TestServer::start_in(clustered.clone(), Some(database.clone()), loopback(0))
        .await
        .expect_err("a clustered node beside a lone one");
    assert!(format!("{refused:#}").contains("alone"), "{refused:#}");
    lone.server.shutdown().await;
    let joined = TestServer::start_in(clustered, Some(database.clone()), loopback(0)).await?;
    joined.server.shutdown().await;
    Ok(())
}
