//! Federation across partitions, with real `kanald` processes on 127.0.0.1
//! (FEDERATION.md §5): a server is killed with SIGKILL while its peer has
//! transactions for it, and restarted on the same ports. Nothing is sent to
//! wake delivery: what was queued arrives by itself, in order and once, and
//! both servers end with the same history. One peer down delays no other.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kanal_client::{Client, Credentials, Events};
use kanal_proto::pb;
use kanal_tests::*;

const KANALD: &str = env!("CARGO_BIN_EXE_kanald-under-test");

/// One server: its data directory, its log, and its process while it runs.
struct Site {
    domain: String,
    data: PathBuf,
    log: PathBuf,
    process: Option<Kanald>,
    /// Client and federation ports, from its first start on.
    ports: Option<(SocketAddr, SocketAddr)>,
    fingerprint: String,
}

impl Site {
    /// Initialises `root/DOMAIN` for `domain`, without a send limit (the
    /// tests send hundreds of messages as one party).
    async fn init(root: &Path, domain: &str) -> Result<Self> {
        let data = root.join(domain);
        run_kanald(KANALD, &data, &["init", "--domain", domain]).await?;
        set_config_key(&data, "sends_per_second_per_party", "0")?;
        Ok(Self {
            domain: domain.to_owned(),
            log: root.join(format!("{domain}.log")),
            data,
            process: None,
            ports: None,
            fingerprint: String::new(),
        })
    }

    /// Starts the server: on port 0 the first time, then on the ports it
    /// had.
    async fn start(&mut self) -> Result<()> {
        let (listen, federation) = self.ports.unwrap_or((loopback(0), loopback(0)));
        let started =
            spawn_kanald_federated(KANALD, &self.data, listen, federation, Some(&self.log)).await?;
        ensure!(started.domain == self.domain, "{}", started.domain);
        if let Some(ports) = self.ports {
            ensure!(
                (started.addr, started.federation) == ports,
                "{} restarted on {} and {}, not {ports:?}",
                self.domain,
                started.addr,
                started.federation
            );
        }
        self.ports = Some((started.addr, started.federation));
        self.fingerprint.clone_from(&started.fingerprint);
        self.process = Some(started);
        Ok(())
    }

    /// SIGKILL: no shutdown path runs.
    async fn kill(&mut self) -> Result<()> {
        let mut process = self.process.take().context("not running")?;
        process.child.start_kill()?;
        process.child.wait().await?;
        Ok(())
    }

    fn addr(&self) -> SocketAddr {
        self.ports.expect("started once").0
    }

    fn federation(&self) -> SocketAddr {
        self.ports.expect("started once").1
    }

    /// `kanald peer add` for `other` (through the admin socket while this
    /// server runs).
    async fn trust(&self, other: &Site) -> Result<()> {
        let address = other.federation().to_string();
        run_kanald(
            KANALD,
            &self.data,
            &[
                "peer",
                "add",
                &other.domain,
                "--address",
                &address,
                "--fingerprint",
                &other.fingerprint,
            ],
        )
        .await
    }

    /// `kanald peer show DOMAIN`.
    async fn peer_show(&self, domain: &str) -> Result<String> {
        kanald_output(KANALD, &self.data, &["peer", "show", domain]).await
    }

    /// Registers a customer over the protocol.
    async fn register(&self, local: &str) -> Result<Client> {
        Ok(Client::connect(
            config_for(self.addr(), &self.fingerprint),
            Credentials::Register {
                local: local.into(),
                password: PASSWORD.into(),
                display_name: String::new(),
                invite: String::new(),
            },
        )
        .await?)
    }

    /// Logs `local@DOMAIN` in.
    async fn login(&self, local: &str) -> Result<Client> {
        Ok(Client::connect(
            config_for(self.addr(), &self.fingerprint),
            Credentials::Password {
                address: format!("{local}@{}", self.domain),
                password: PASSWORD.into(),
            },
        )
        .await?)
    }
}

/// The servers of one test, in a directory of their own; their logs are
/// printed unless the test got to its end.
struct Net {
    root: tempfile::TempDir,
    logs: Vec<PathBuf>,
    passed: bool,
}

impl Net {
    fn new() -> Result<Self> {
        Ok(Self {
            root: tempfile::tempdir()?,
            logs: Vec::new(),
            passed: false,
        })
    }

    /// A started server for `domain`.
    async fn site(&mut self, domain: &str) -> Result<Site> {
        let mut site = Site::init(self.root.path(), domain).await?;
        self.logs.push(site.log.clone());
        site.start().await?;
        Ok(site)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.passed {
            return;
        }
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("--- {} (last {} lines)", log.display(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// Makes `a` and `b` peers of each other.
async fn pair(a: &Site, b: &Site) -> Result<()> {
    a.trust(b).await?;
    b.trust(a).await
}

/// A text body.
fn text(text: &str) -> pb::Body {
    pb::Body {
        kind: Some(pb::body::Kind::Text(text.to_owned())),
    }
}

/// A message as both servers must hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    seq: u64,
    sender: String,
    client_msg_id: String,
    text: String,
}

impl From<&pb::Message> for Seen {
    fn from(m: &pb::Message) -> Self {
        Self {
            seq: m.seq,
            sender: m.sender.clone(),
            client_msg_id: m.client_msg_id.clone(),
            text: text_of(m).to_owned(),
        }
    }
}

/// The messages `count` sends of `sender` must become, from `first_seq`
/// on, with client_msg_id `{prefix}{n}` and text `{prefix} number {n}`.
fn expected(sender: &str, prefix: &str, first_seq: u64, count: u64) -> Vec<Seen> {
    (0..count)
        .map(|n| Seen {
            seq: first_seq + n,
            sender: sender.to_owned(),
            client_msg_id: format!("{prefix}{n}"),
            text: format!("{prefix} number {n}"),
        })
        .collect()
}

/// Sends `count` messages, one after the other, each acknowledged before
/// the next; `relayed`: whether the host is another server.
async fn send_all(
    client: &Client,
    conversation: &str,
    prefix: &str,
    count: u64,
    relayed: bool,
) -> Result<Vec<pb::Sent>> {
    let mut sent = Vec::new();
    for n in 0..count {
        let cmid = format!("{prefix}{n}");
        let ack = client
            .send(conversation, &cmid, text(&format!("{prefix} number {n}")))
            .await?;
        ensure!(
            ack.relayed == relayed && !ack.duplicate,
            "{cmid} was acknowledged as {ack:?}"
        );
        sent.push(ack);
    }
    Ok(sent)
}

/// An event stream, with the seq of the last event it handed out (where a
/// new subscription goes on after its server was killed).
struct Stream {
    events: Events,
    cursor: u64,
}

impl Stream {
    /// Subscribes `client` to every event after `cursor`.
    async fn open(client: &Client, cursor: u64) -> Result<Self> {
        Ok(Self {
            events: client.subscribe(cursor).await?,
            cursor,
        })
    }

    /// The next stored event.
    async fn next(&mut self) -> Result<pb::Event> {
        let event = next_stored(&mut self.events).await?;
        self.cursor = event.seq;
        Ok(event)
    }

    /// Waits until `conversation` is added.
    async fn added(&mut self, conversation: &str) -> Result<()> {
        loop {
            if let Some(pb::event::Kind::ConversationAdded(c)) = self.next().await?.kind
                && c.id == conversation
            {
                return Ok(());
            }
        }
    }

    /// Every message event of `conversation` until the one at `last`, in
    /// the order they came.
    async fn messages_until(&mut self, conversation: &str, last: u64) -> Result<Vec<Seen>> {
        let mut seen = self.messages_of(&[(conversation, last)]).await?;
        Ok(seen.remove(conversation).unwrap_or_default())
    }

    /// Every message event of each conversation until the one at its last
    /// seq, in the order they came; those of other conversations are
    /// skipped.
    async fn messages_of(&mut self, until: &[(&str, u64)]) -> Result<BTreeMap<String, Vec<Seen>>> {
        let mut seen: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
        let done = |seen: &BTreeMap<String, Vec<Seen>>| {
            until.iter().all(|(conversation, last)| {
                seen.get(*conversation)
                    .and_then(|messages| messages.last())
                    .is_some_and(|m| m.seq >= *last)
            })
        };
        while !done(&seen) {
            let Some(pb::event::Kind::Message(m)) = self.next().await?.kind else {
                continue;
            };
            let Some((_, last)) = until.iter().find(|(c, _)| *c == m.conversation) else {
                continue;
            };
            ensure!(m.seq <= *last, "message {} beyond {last}: {m:?}", m.seq);
            seen.entry(m.conversation.clone())
                .or_default()
                .push(Seen::from(&m));
        }
        Ok(seen)
    }
}

/// The whole history of `conversation` as `client`'s server holds it.
async fn history(client: &Client, conversation: &str) -> Result<Vec<Seen>> {
    let mut pages = Vec::new();
    let mut before = 0;
    loop {
        let page = client.history(conversation, before, 500).await?;
        let first = page.messages.first().map(|m| m.seq);
        let has_more = page.has_more;
        pages.push(page.messages.iter().map(Seen::from).collect::<Vec<_>>());
        match first {
            Some(first) if has_more => before = first,
            _ => break,
        }
    }
    Ok(pages.into_iter().rev().flatten().collect())
}

/// A customer of `a` opens a conversation with `support@b.test`, whose
/// agent listens; each server is killed in turn while the other has
/// transactions for it, and restarted on the same ports: what was queued
/// arrives without anything new sent, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gets_what_was_queued_for_it_once_restarted() -> Result<()> {
    let mut net = Net::new()?;
    let mut a = net.site("a.test").await?;
    let mut b = net.site("b.test").await?;
    run_kanald(KANALD, &b.data, &["agent", "add", "ann"]).await?;
    pair(&a, &b).await?;

    let ann = b.login("ann").await?;
    let mut ann_events = Stream::open(&ann, 0).await?;
    let carla = a.register("carla").await?;
    let mut carla_events = Stream::open(&carla, 0).await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "washer leaks")
        .await?
        .id;
    assert!(conversation.starts_with("b.test/"), "{conversation}");
    ann_events.added(&conversation).await?;

    // 1. B is killed; A takes 500 messages for it.
    b.kill().await?;
    drop((ann, ann_events.events));
    send_all(&carla, &conversation, "c", 500, true).await?;
    let killed = Instant::now();
    b.start().await?;
    // Nobody sends anything: A's delivery resumes by itself.
    let ann = b.login("ann").await?;
    let mut ann_events = Stream::open(&ann, ann_events.cursor).await?;
    let customer = expected("carla@a.test", "c", 1, 500);
    assert_eq!(
        ann_events.messages_until(&conversation, 500).await?,
        customer
    );
    println!(
        "B restarted: 500 messages at its agent {:?} after the restart",
        killed.elapsed()
    );
    assert_eq!(history(&ann, &conversation).await?, customer);
    // B replicated them to A, in its order.
    assert_eq!(
        carla_events.messages_until(&conversation, 500).await?,
        customer
    );

    // 2. A is killed; B's agent answers 200 times.
    a.kill().await?;
    drop((carla, carla_events.events));
    let replies = send_all(&ann, &conversation, "r", 200, false).await?;
    assert_eq!(
        replies.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (501..=700).collect::<Vec<_>>()
    );
    let killed = Instant::now();
    a.start().await?;
    let carla = a.login("carla").await?;
    let mut carla_events = Stream::open(&carla, carla_events.cursor).await?;
    let answers = expected("ann@b.test", "r", 501, 200);
    assert_eq!(
        carla_events.messages_until(&conversation, 700).await?,
        answers
    );
    println!(
        "A restarted: 200 replies at its customer {:?} after the restart",
        killed.elapsed()
    );
    let on_b = history(&ann, &conversation).await?;
    assert_eq!(on_b, [customer, answers].concat());
    assert_eq!(history(&carla, &conversation).await?, on_b);
    net.passed = true;
    Ok(())
}

/// 1,000 messages sent as fast as possible from A to B; both are killed
/// with SIGKILL mid-transfer and restarted: every message A acknowledged
/// reaches B once, in an order that keeps each sender's, and both servers
/// end with the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_killed_mid_transfer_lose_and_double_nothing() -> Result<()> {
    const SENDERS: usize = 10;
    const EACH: usize = 100;
    let mut net = Net::new()?;
    let mut a = net.site("a.test").await?;
    let mut b = net.site("b.test").await?;
    run_kanald(KANALD, &b.data, &["agent", "add", "ann"]).await?;
    pair(&a, &b).await?;
    let ann = b.login("ann").await?;
    let mut ann_events = Stream::open(&ann, 0).await?;
    let carla = a.register("carla").await?;
    let conversation = carla
        .create_conversation(&["support@b.test"], "boiler")
        .await?
        .id;
    ann_events.added(&conversation).await?;

    // Senders on one pipelined stream: each waits for its own
    // acknowledgements, so each one's messages have an order.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = tokio::task::JoinSet::new();
    let pipeline = carla.pipeline();
    for sender in 0..SENDERS {
        let (pipeline, id, acked) = (pipeline.clone(), conversation.clone(), acked_tx.clone());
        senders.spawn(async move {
            for n in 0..EACH {
                let cmid = format!("s{sender}-{n}");
                let Ok(sent) = pipeline.send(&id, &cmid, text(&cmid)).await else {
                    return; // A was killed.
                };
                assert!(sent.relayed, "{cmid} acknowledged as {sent:?}");
                if acked.send(cmid).is_err() {
                    return;
                }
            }
        });
    }
    drop(acked_tx);
    // Kill both once A acknowledged more than half and B has some.
    let mut acked = BTreeSet::new();
    let mut received = Vec::new();
    while acked.len() < SENDERS * EACH * 3 / 5 || received.len() < 100 {
        tokio::select! {
            cmid = acked_rx.recv() => {
                acked.insert(cmid.context("the senders stopped early")?);
            }
            event = ann_events.next() => {
                if let Some(pb::event::Kind::Message(m)) = event?.kind {
                    received.push(Seen::from(&m));
                }
            }
        }
    }
    a.kill().await?;
    b.kill().await?;
    senders.shutdown().await;
    while let Ok(cmid) = acked_rx.try_recv() {
        acked.insert(cmid);
    }
    println!(
        "killed both: A had acknowledged {}, B's agent had {}",
        acked.len(),
        received.len()
    );
    drop((carla, pipeline, ann, ann_events.events));

    b.start().await?;
    a.start().await?;
    let ann = b.login("ann").await?;
    let mut ann_events = Stream::open(&ann, ann_events.cursor).await?;
    // Nothing new is sent until every acknowledged message arrived.
    let mut missing: BTreeSet<&String> = acked.iter().collect();
    for m in &received {
        missing.remove(&m.client_msg_id);
    }
    while !missing.is_empty() {
        if let Some(pb::event::Kind::Message(m)) = ann_events.next().await?.kind {
            missing.remove(&m.client_msg_id);
            received.push(Seen::from(&m));
        }
    }
    // Then a last message, behind whatever A committed without telling.
    let carla = a.login("carla").await?;
    let end = carla.send(&conversation, "end", text("end")).await?;
    assert!(end.relayed, "{end:?}");
    loop {
        if let Some(pb::event::Kind::Message(m)) = ann_events.next().await?.kind {
            received.push(Seen::from(&m));
            if m.client_msg_id == "end" {
                break;
            }
        }
    }
    let last = received.last().context("messages")?.seq;

    // B's agent got seqs 1..=last, once each, as B stores them.
    let seqs: Vec<u64> = received.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    let on_b = history(&ann, &conversation).await?;
    assert_eq!(on_b, received);
    let cmids: Vec<&str> = on_b.iter().map(|m| m.client_msg_id.as_str()).collect();
    let unique: BTreeSet<&str> = cmids.iter().copied().collect();
    assert_eq!(unique.len(), cmids.len(), "a message was stored twice");
    for cmid in &acked {
        assert!(
            unique.contains(cmid.as_str()),
            "acknowledged {cmid} was lost"
        );
    }
    // Each sender's messages in the order it sent them, and nothing else.
    let mut next = [0usize; SENDERS];
    for m in &on_b[..on_b.len() - 1] {
        assert_eq!(m.sender, "carla@a.test");
        assert_eq!(m.text, m.client_msg_id);
        let (sender, n) = m.client_msg_id[1..].split_once('-').context("cmid")?;
        let (sender, n): (usize, usize) = (sender.parse()?, n.parse()?);
        assert_eq!(
            n, next[sender],
            "{} out of its sender's order",
            m.client_msg_id
        );
        next[sender] += 1;
    }
    println!("B holds {} messages", on_b.len());

    // A's replica ends the same: every message replicated back, once.
    let mut carla_events = Stream::open(&carla, 0).await?;
    assert_eq!(
        carla_events.messages_until(&conversation, last).await?,
        on_b
    );
    assert_eq!(history(&carla, &conversation).await?, on_b);
    net.passed = true;
    Ok(())
}

/// Customers of A and of C write to `support@b.test` at once: each sees
/// only their own conversation, B's agent gets both. With C killed and
/// replies queued for it, A's messages and B's replies to A still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_one_down_delays_no_other() -> Result<()> {
    let mut net = Net::new()?;
    let a = net.site("a.test").await?;
    let b = net.site("b.test").await?;
    let mut c = net.site("c.test").await?;
    run_kanald(KANALD, &b.data, &["agent", "add", "ann"]).await?;
    pair(&a, &b).await?;
    pair(&c, &b).await?;
    let ann = b.login("ann").await?;
    let mut ann_events = Stream::open(&ann, 0).await?;
    let carla = a.register("carla").await?;
    let mut carla_events = Stream::open(&carla, 0).await?;
    let cora = c.register("cora").await?;
    let mut cora_events = Stream::open(&cora, 0).await?;

    let (to_a, to_c) = tokio::try_join!(
        carla.create_conversation(&["support@b.test"], "from a"),
        cora.create_conversation(&["support@b.test"], "from c"),
    )?;
    let (to_a, to_c) = (to_a.id, to_c.id);
    tokio::try_join!(
        send_all(&carla, &to_a, "a", 100, true),
        send_all(&cora, &to_c, "c", 100, true),
    )?;
    let from_a = expected("carla@a.test", "a", 1, 100);
    let from_c = expected("cora@c.test", "c", 1, 100);
    let mut seen = ann_events
        .messages_of(&[(&to_a, 100), (&to_c, 100)])
        .await?;
    assert_eq!(seen.remove(&to_a), Some(from_a.clone()));
    assert_eq!(seen.remove(&to_c), Some(from_c.clone()));
    assert_eq!(carla_events.messages_until(&to_a, 100).await?, from_a);
    assert_eq!(cora_events.messages_until(&to_c, 100).await?, from_c);

    // Each customer's server holds their conversation only.
    for (client, mine, theirs) in [(&carla, &to_a, &to_c), (&cora, &to_c, &to_a)] {
        let listed = client.conversations(50, 0).await?;
        let ids: Vec<&str> = listed.conversations.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [mine.as_str()]);
        let theirs = client.history(theirs, 0, 50).await;
        assert!(theirs.is_err(), "{theirs:?}");
    }
    assert_eq!(history(&carla, &to_a).await?, from_a);
    assert_eq!(history(&cora, &to_c).await?, from_c);

    // C is killed; B queues replies for it.
    c.kill().await?;
    drop((cora, cora_events.events));
    let to_cora = expected("ann@b.test", "to-c", 101, 20);
    send_all(&ann, &to_c, "to-c", 20, false).await?;
    let queued_for_c = |show: &str| -> Result<u64> {
        let line = show
            .lines()
            .find(|l| l.starts_with("queued"))
            .with_context(|| format!("no queue in {show}"))?;
        Ok(line.split_whitespace().nth(1).context("queued")?.parse()?)
    };
    ensure!(queued_for_c(&b.peer_show("c.test").await?)? >= 20);

    // Meanwhile A and B go on as if nothing happened.
    let started = Instant::now();
    send_all(&carla, &to_a, "more", 100, true).await?;
    let more = expected("carla@a.test", "more", 101, 100);
    assert_eq!(ann_events.messages_until(&to_a, 200).await?, more);
    send_all(&ann, &to_a, "to-a", 20, false).await?;
    let to_carla = expected("ann@b.test", "to-a", 201, 20);
    assert_eq!(
        carla_events.messages_until(&to_a, 220).await?,
        [more.clone(), to_carla.clone()].concat()
    );
    let took = started.elapsed();
    println!("with C down: 100 messages from A and 20 answers back in {took:?}");
    // B still holds C's replies: A's exchange ran while B's delivery
    // toward C was stuck, and it took less than the 10 s that delivery
    // waits for an acknowledgement before it tries again.
    let show = b.peer_show("c.test").await?;
    ensure!(queued_for_c(&show)? >= 20, "{show}");
    ensure!(
        took < Duration::from_secs(8),
        "A's exchange waited for C: {took:?}"
    );
    let on_b = history(&ann, &to_a).await?;
    assert_eq!(on_b, [from_a, more, to_carla].concat());
    assert_eq!(history(&carla, &to_a).await?, on_b);

    // C comes back and gets its replies.
    c.start().await?;
    let cora = c.login("cora").await?;
    let mut cora_events = Stream::open(&cora, cora_events.cursor).await?;
    assert_eq!(cora_events.messages_until(&to_c, 120).await?, to_cora);
    let on_b = history(&ann, &to_c).await?;
    assert_eq!(on_b, [from_c, to_cora].concat());
    assert_eq!(history(&cora, &to_c).await?, on_b);
    net.passed = true;
    Ok(())
}
