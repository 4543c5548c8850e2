//! Abuse: one attack on the server while a well-behaved pair converses
//! beside it. Reports what the bystander saw (each message's latency from
//! send to the other side's event, and losses), the server's peak resident
//! memory and its CPU time during the attack, and what the attack achieved.
//!
//! Run it against a server on its default limits: the attacks are the
//! floods those limits exist for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use kanal_client::{Client, ClientError, Credentials, Events, pb};
use kanal_proto::io::write_frame;
use kanal_proto::{PROTOCOL_VERSION, limits};
use tokio::task::JoinSet;

use crate::bench::global::Global;
use crate::bench::procfs::{self, CpuMeter};
use crate::bench::report::{self, Summary};
use crate::bench::setup::{self, Account, Target};

/// Time between the bystander's messages (40 a second: within any party's
/// default send rate).
const BYSTANDER_INTERVAL: Duration = Duration::from_millis(25);

/// Longest the bystander waits for one message before counting it lost.
const BYSTANDER_PATIENCE: Duration = Duration::from_secs(10);

/// How often the server's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Large messages in the conversation the reading attacks ask for: more
/// than a replay page of events.
const LARGE_MESSAGES: usize = 520;

/// How far behind its rate an attack's pace may fall and still catch up.
const PACE_CATCH_UP: Duration = Duration::from_millis(20);

/// The bystander reads a page of history every this many messages, as a
/// client scrolling back would.
const READ_EVERY: u64 = 10;

/// Request streams a connection may have open beside its control stream.
const REQUEST_STREAMS: usize = 7;

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Attack {
    /// No attack: the bystander's baseline
    None,
    /// Typing datagrams as fast as 4 connections can send them
    Typing,
    /// One connection pipelines History pages of large messages on every
    /// stream and grants no flow-control credit
    Unread,
    /// 50 connections Sync from 0 over large messages and never read
    SyncUnread,
    /// Wrong-password logins, 64 at a time
    WrongPassword,
    /// Registrations from one source, 16 at a time
    Register,
    /// 50 connections each leave a half-sent frame on every stream
    HalfFrames,
    /// One account pipelines sends as fast as it can
    Sends,
    /// QUIC handshakes that never finish: Initials through a relay that
    /// drops every reply
    Initials,
}

/// Options of `abuse`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// The attack
    #[arg(value_enum)]
    pub(crate) attack: Attack,
    /// Attempts per second of the whole attack, for the attacks made of
    /// attempts (typing, wrong-password, register, sends, initials)
    /// [default: 20000 datagrams or sends, 500 logins or registrations, 2100
    /// handshakes]. The attacker shares
    /// the machine with the server and the bystander: unpaced, it would
    /// measure its own CPU use as much as the server's.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
}

impl Attack {
    /// Attempts per second when `--rate` is not given.
    fn default_rate(self) -> f64 {
        match self {
            Self::Typing | Self::Sends => 20_000.0,
            Self::Initials => 2_100.0,
            Self::WrongPassword | Self::Register => 500.0,
            _ => 0.0,
        }
    }
}

/// Spaces the attempts of many tasks evenly at a rate.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pace {
    fn new(per_second: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / per_second.max(1.0)),
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for the next free slot. Slots missed while the tasks slept
    /// (timers wake at millisecond granularity) are made up at once, up to
    /// [`PACE_CATCH_UP`] of them: the rate holds above 1,000 a second.
    async fn tick(&self) {
        let slot = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            let earliest = now.checked_sub(PACE_CATCH_UP).unwrap_or(now);
            let slot = (*next).max(earliest);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What the attack did, counted by its tasks, and how fast it may go.
#[derive(Debug)]
struct Effort {
    /// The pace of attempts.
    pace: Pace,
    /// Attempts made (datagrams, requests, logins, …).
    tried: AtomicU64,
    /// Attempts the server refused with an error (RATE_LIMITED, …).
    refused: AtomicU64,
}

impl Effort {
    /// Waits for the next attempt's turn.
    async fn turn(&self) {
        self.pace.tick().await;
    }

    fn tried(&self) {
        self.tried.fetch_add(1, Ordering::Relaxed);
    }

    fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    global: &Global,
    options: &Options,
) -> Result<Summary> {
    let duration = global.duration_or(10.0);
    let mut summary = Summary::new("abuse", &target.server, &target.run);
    let people = target.register("p", 3).await?;
    let (bystander, victim) = (&people[..2], &people[2]);
    let attackers = target.register("a", 4).await?;
    let large = prepare(target, options.attack, &attackers, victim).await?;

    let mut pair = Bystander::start(target, &bystander[0], &bystander[1]).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let rate = options.rate.unwrap_or(options.attack.default_rate());
    let effort = Arc::new(Effort {
        pace: Pace::new(rate),
        tried: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    let cpu = CpuMeter::start(global.server_pid);
    let started = Instant::now();
    let mut attack = JoinSet::new();
    launch(
        &mut attack,
        target,
        options.attack,
        &attackers,
        victim,
        large,
        &stop,
        &effort,
    )?;
    let memory = tokio::spawn(sample_memory(global.server_pid, stop.clone()));
    let measured = pair.converse(duration).await;
    stop.store(true, Ordering::Relaxed);
    let usage = cpu.stop();
    attack.abort_all();
    while attack.join_next().await.is_some() {}
    let peak_kib = memory.await.ok().flatten();
    let measured = measured?;

    summary.section("attack");
    summary.field(
        "attack",
        "attack",
        serde_json::json!(format!("{:?}", options.attack)),
        format!("{:?}", options.attack),
    );
    let tried = effort.tried.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    if rate > 0.0 {
        summary.rate("paced_at", "paced at", rate, "/s");
    }
    summary.rate("attempts", "attempts", tried as f64 / seconds, "/s");
    summary.count(
        "refused",
        "refused by the server",
        effort.refused.load(Ordering::Relaxed),
    );
    summary.section("bystander");
    summary.count("sent", "messages sent", measured.sent);
    summary.count("lost", "messages lost", measured.lost);
    summary.latency("latency", "send to arrival", &measured.latency);
    summary.count("reads", "history pages read", measured.reads);
    summary.count(
        "failed_reads",
        "history reads failed",
        measured.failed_reads,
    );
    summary.count("logins", "new logins", measured.logins);
    summary.count("failed_logins", "new logins failed", measured.failed_logins);
    summary.latency("login", "dial to Welcome", &measured.login_latency);
    summary.section("server");
    match peak_kib {
        Some(kib) => summary.kib("peak_rss", "peak resident memory", kib as f64),
        None => summary.field(
            "peak_rss",
            "peak resident memory",
            serde_json::Value::Null,
            "unknown (pass --server-pid)",
        ),
    }
    usage.report(&mut summary, tried.max(1), "attempt");
    if measured.lost > 0 {
        summary.fail(format!("the bystander lost {} messages", measured.lost));
    }
    if measured.failed_logins > 0 {
        summary.fail(format!(
            "{} of the bystander's new logins failed",
            measured.failed_logins
        ));
    }
    if measured.failed_reads > 0 {
        summary.fail(format!(
            "{} of the bystander's history reads failed",
            measured.failed_reads
        ));
    }
    Ok(summary)
}

/// What an attack needs before it starts; returns the conversation of large
/// messages the reading attacks ask for.
async fn prepare(
    target: &Target,
    attack: Attack,
    attackers: &[Account],
    victim: &Account,
) -> Result<Option<String>> {
    if !matches!(attack, Attack::Unread | Attack::SyncUnread) {
        return Ok(None);
    }
    let client = target.resume(0, &attackers[0]).await?;
    let id = client
        .create_conversation(&[victim.address.as_str()], "large")
        .await?
        .id;
    let text = setup::text_body("large", limits::MAX_TEXT);
    for n in 0..LARGE_MESSAGES {
        loop {
            match client.send(&id, &format!("large-{n}"), text.clone()).await {
                Ok(_) => break,
                // The server's send limit: wait as long as it says.
                Err(ClientError::Refused {
                    retry_after: Some(wait),
                    ..
                }) => tokio::time::sleep(wait).await,
                Err(e) => return Err(e).context("preparing large messages"),
            }
        }
    }
    client.close().await;
    Ok(Some(id))
}

/// Starts the attack's tasks; they run until aborted.
#[allow(clippy::too_many_arguments)]
fn launch(
    tasks: &mut JoinSet<()>,
    target: &Arc<Target>,
    attack: Attack,
    attackers: &[Account],
    victim: &Account,
    large: Option<String>,
    stop: &Arc<AtomicBool>,
    effort: &Arc<Effort>,
) -> Result<()> {
    let large = || large.clone().context("no large conversation prepared");
    match attack {
        Attack::None => {}
        Attack::Typing => {
            for (i, account) in attackers.iter().enumerate() {
                let (target, account, victim) =
                    (target.clone(), account.clone(), victim.address.clone());
                let (stop, effort) = (stop.clone(), effort.clone());
                tasks.spawn(async move {
                    let Ok(client) = target.resume(100 + i, &account).await else {
                        return;
                    };
                    let Ok(conversation) = client.create_conversation(&[&victim], "noise").await
                    else {
                        return;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        effort.turn().await;
                        effort.tried();
                        let _ = client.typing(&conversation.id, true);
                    }
                });
            }
        }
        Attack::Unread => {
            let (target, account, id, effort) = (
                target.clone(),
                attackers[0].clone(),
                large()?,
                effort.clone(),
            );
            tasks.spawn(async move {
                let _ = unread_pages(&target, &account, &id, &effort).await;
            });
        }
        Attack::SyncUnread => {
            for i in 0..50 {
                let (target, account, effort) =
                    (target.clone(), attackers[i % 2].clone(), effort.clone());
                tasks.spawn(async move {
                    let _ = sync_and_stall(&target, &account, &effort).await;
                });
            }
            let _ = large()?;
        }
        Attack::WrongPassword => {
            for i in 0..64 {
                let (target, victim, stop, effort) = (
                    target.clone(),
                    victim.address.clone(),
                    stop.clone(),
                    effort.clone(),
                );
                tasks.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(config) = target.config(200 + i) else {
                            return;
                        };
                        effort.turn().await;
                        effort.tried();
                        let credentials = Credentials::Password {
                            address: victim.clone(),
                            password: "not the password".into(),
                        };
                        if let Err(ClientError::Refused {
                            code: pb::ErrorCode::RateLimited,
                            ..
                        }) = Client::connect(config, credentials).await
                        {
                            effort.refused();
                        }
                    }
                });
            }
        }
        Attack::Register => {
            for i in 0..16 {
                let (target, stop, effort) = (target.clone(), stop.clone(), effort.clone());
                tasks.spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let Ok(config) = target.config(300 + i) else {
                            return;
                        };
                        effort.turn().await;
                        effort.tried();
                        let credentials = Credentials::Register {
                            local: format!("{}-spam{i}x{n}", target.run),
                            password: "spam spam spam".into(),
                            display_name: String::new(),
                            invite: String::new(),
                        };
                        match Client::connect(config, credentials).await {
                            Ok(client) => client.close().await,
                            Err(ClientError::Refused { .. }) => effort.refused(),
                            Err(_) => {}
                        }
                    }
                });
            }
        }
        Attack::HalfFrames => {
            for i in 0..50 {
                let (target, account, effort) = (
                    target.clone(),
                    attackers[i % attackers.len()].clone(),
                    effort.clone(),
                );
                tasks.spawn(async move {
                    let _ = half_frames(&target, &account, &effort).await;
                });
            }
        }
        Attack::Initials => {
            let (target, stop, effort) = (target.clone(), stop.clone(), effort.clone());
            tasks.spawn(async move {
                let _ = unfinished_handshakes(&target, &stop, &effort).await;
            });
        }
        Attack::Sends => {
            let (target, account, victim, stop, effort) = (
                target.clone(),
                attackers[0].clone(),
                victim.address.clone(),
                stop.clone(),
                effort.clone(),
            );
            tasks.spawn(async move {
                let _ = flood_sends(&target, &account, &victim, &stop, &effort).await;
            });
        }
    }
    Ok(())
}

/// A raw connection that resumed `account`'s session, with `transport`.
async fn raw_session(
    target: &Target,
    account: &Account,
    transport: quinn::TransportConfig,
) -> Result<(quinn::Connection, quinn::SendStream, quinn::RecvStream)> {
    let connection = target.raw_connect(transport).await?;
    let (mut send, mut recv) = connection.open_bi().await?;
    let hello = pb::ClientControl {
        kind: Some(pb::client_control::Kind::Hello(pb::Hello {
            version: PROTOCOL_VERSION,
            availability: pb::Availability::Unspecified as i32,
            client: "kanal-bench abuse".into(),
            auth: Some(pb::hello::Auth::Resume(pb::Resume {
                token: account.token.clone(),
            })),
        })),
    };
    write_frame(&mut send, &hello).await?;
    // The Welcome: read it whole, so the control stream has no credit left
    // to take back.
    let mut reader = kanal_proto::io::FrameReader::new(&mut recv, limits::MAX_FRAME);
    let welcome: Option<pb::ServerControl> = reader.next().await?;
    match welcome.and_then(|w| w.kind) {
        Some(pb::server_control::Kind::Welcome(_)) => Ok((connection, send, recv)),
        other => bail!("no Welcome: {other:?}"),
    }
}

/// Flow-control windows of a client that reads nothing.
fn stingy() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(quinn::VarInt::from_u32(4 * 1024))
        .receive_window(quinn::VarInt::from_u32(16 * 1024))
        .keep_alive_interval(Some(Duration::from_secs(5)));
    transport
}

/// Keeps every request stream of one connection full of History requests
/// whose pages are never read; reopens a stream once the server resets it.
async fn unread_pages(
    target: &Target,
    account: &Account,
    conversation: &str,
    effort: &Effort,
) -> Result<()> {
    let (connection, _control, _control_recv) = raw_session(target, account, stingy()).await?;
    let mut streams = JoinSet::new();
    loop {
        while streams.len() < REQUEST_STREAMS {
            let (mut send, mut recv) = connection.open_bi().await?;
            for n in 0..limits::MAX_PIPELINED_REQUESTS {
                effort.tried();
                let request = pb::Request {
                    id: n as u64,
                    kind: Some(pb::request::Kind::History(pb::History {
                        conversation: conversation.to_owned(),
                        before_seq: 0,
                        limit: limits::MAX_PAGE,
                    })),
                };
                if write_frame(&mut send, &request).await.is_err() {
                    break;
                }
            }
            // Held until the server gives up on it; no data is read.
            streams.spawn(async move {
                let _ = recv.received_reset().await;
                drop(send);
            });
        }
        if streams.join_next().await.is_some() {
            effort.refused();
        }
    }
}

/// Syncs from 0 over a log of large messages and never reads the events.
async fn sync_and_stall(target: &Target, account: &Account, effort: &Effort) -> Result<()> {
    let (connection, mut control, _control_recv) = raw_session(target, account, stingy()).await?;
    let sync = pb::ClientControl {
        kind: Some(pb::client_control::Kind::Sync(pb::Sync { since: 0 })),
    };
    write_frame(&mut control, &sync).await?;
    effort.tried();
    let _events = connection.accept_uni().await?;
    connection.closed().await;
    Ok(())
}

/// Leaves a frame begun on every request stream of one connection; starts
/// again on a stream the server resets.
async fn half_frames(target: &Target, account: &Account, effort: &Effort) -> Result<()> {
    let (connection, _control, _control_recv) =
        raw_session(target, account, quinn::TransportConfig::default()).await?;
    let mut streams = JoinSet::new();
    loop {
        while streams.len() < REQUEST_STREAMS {
            let (mut send, mut recv) = connection.open_bi().await?;
            // A length prefix promising 1,000 bytes, and ten of them.
            let mut partial = vec![0xe8, 0x07];
            partial.extend_from_slice(&[0; 10]);
            effort.tried();
            send.write_all(&partial).await?;
            streams.spawn(async move {
                let _ = recv.received_reset().await;
                drop(send);
            });
        }
        if streams.join_next().await.is_some() {
            effort.refused();
        }
    }
}

/// One account sends as fast as a pipeline lets it, to the victim.
async fn flood_sends(
    target: &Target,
    account: &Account,
    victim: &str,
    stop: &AtomicBool,
    effort: &Effort,
) -> Result<()> {
    let client = target.resume(400, account).await?;
    let id = client.create_conversation(&[victim], "flood").await?.id;
    let pipeline = client.pipeline();
    let mut in_flight = JoinSet::new();
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        while in_flight.len() < 64 {
            effort.turn().await;
            n += 1;
            let (pipeline, id) = (pipeline.clone(), id.clone());
            in_flight.spawn(async move {
                pipeline
                    .send(&id, &format!("flood-{n}"), setup::text_body("flood", 32))
                    .await
            });
        }
        if let Some(Ok(sent)) = in_flight.join_next().await {
            effort.tried();
            if matches!(
                sent,
                Err(ClientError::Refused {
                    code: pb::ErrorCode::RateLimited,
                    ..
                })
            ) {
                effort.refused();
            }
        }
    }
    Ok(())
}

/// Starts handshakes through a relay that forwards what the client sends
/// and drops every reply, so none of them ever finishes; each is held until
/// the run ends.
async fn unfinished_handshakes(target: &Target, stop: &AtomicBool, effort: &Effort) -> Result<()> {
    let (server, name) = target.server_addr();
    let front = tokio::net::UdpSocket::bind((server.ip(), 0)).await?;
    let upstream = tokio::net::UdpSocket::bind((server.ip(), 0)).await?;
    upstream.connect(server).await?;
    let relay_to = front.local_addr()?;
    let relay = tokio::spawn(async move {
        let mut datagram = vec![0_u8; 2048];
        let mut replies = vec![0_u8; 2048];
        loop {
            tokio::select! {
                received = front.recv_from(&mut datagram) => match received {
                    Ok((len, _)) => { let _ = upstream.send(&datagram[..len]).await; }
                    Err(_) => return,
                },
                // Replies (Handshake packets, Retries) go nowhere.
                _ = upstream.recv(&mut replies) => {}
            }
        }
    });
    let endpoint = target.raw_endpoint()?;
    let config = target.raw_config(quinn::TransportConfig::default())?;
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        effort.turn().await;
        effort.tried();
        held.push(endpoint.connect_with(config.clone(), relay_to, name)?);
    }
    relay.abort();
    drop(held);
    Ok(())
}

/// The largest resident set of the server seen until `stop`, in KiB.
async fn sample_memory(pid: Option<u32>, stop: Arc<AtomicBool>) -> Option<u64> {
    let pid = pid?;
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        peak = peak.max(procfs::rss_kib(pid)?);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    Some(peak)
}

/// Two registered users, one writing to the other at a steady pace; the
/// sender also logs in anew now and then, as a returning client would.
struct Bystander {
    sender: Client,
    sender_account: Account,
    target: Arc<Target>,
    conversation: String,
    events: Events,
    _receiver: Client,
}

/// What the bystander measured.
struct Measured {
    sent: u64,
    lost: u64,
    latency: Histogram<u64>,
    /// History pages read, and how many of them failed or took longer than
    /// the bystander's patience.
    reads: u64,
    failed_reads: u64,
    /// New connections (Resume) the sender opened, and how many failed.
    logins: u64,
    failed_logins: u64,
    /// Time from dialing to the Welcome of those that succeeded.
    login_latency: Histogram<u64>,
}

impl Bystander {
    async fn start(target: &Arc<Target>, sender: &Account, receiver: &Account) -> Result<Self> {
        let receiving = target.resume(500, receiver).await?;
        let head = receiving.welcome().event_head;
        let mut events = receiving.subscribe(head).await?;
        setup::wait_sync_complete(&mut events).await?;
        let sender_account = sender.clone();
        let sender = target.resume(501, sender).await?;
        let conversation = sender
            .create_conversation(&[receiver.address.as_str()], "bystander")
            .await?
            .id;
        Ok(Self {
            sender,
            sender_account,
            target: target.clone(),
            conversation,
            events,
            _receiver: receiving,
        })
    }

    /// Sends one message every [`BYSTANDER_INTERVAL`] for `duration`, each
    /// after the one before has arrived (or was given up on).
    async fn converse(&mut self, duration: Duration) -> Result<Measured> {
        let mut measured = Measured {
            sent: 0,
            lost: 0,
            latency: report::histogram(),
            reads: 0,
            failed_reads: 0,
            logins: 0,
            failed_logins: 0,
            login_latency: report::histogram(),
        };
        let started = Instant::now();
        let mut next = tokio::time::Instant::now();
        while started.elapsed() < duration {
            tokio::time::sleep_until(next).await;
            next += BYSTANDER_INTERVAL;
            let text = format!("bystander-{}", measured.sent);
            let sent_at = Instant::now();
            measured.sent += 1;
            let arrived = tokio::time::timeout(BYSTANDER_PATIENCE, async {
                self.sender
                    .send(&self.conversation, &text, setup::text_body(&text, 0))
                    .await
                    .ok()?;
                while let Some(event) = self.events.next().await {
                    if let Some(message) = setup::message_of(&event)
                        && message.conversation == self.conversation
                        && setup::text_of(message) == text
                    {
                        return Some(());
                    }
                }
                None
            })
            .await;
            match arrived {
                Ok(Some(())) => report::record(&mut measured.latency, sent_at.elapsed()),
                _ => measured.lost += 1,
            }
            if measured.sent.is_multiple_of(READ_EVERY) {
                measured.reads += 1;
                let read = self.sender.history(&self.conversation, 0, 50);
                if !matches!(
                    tokio::time::timeout(BYSTANDER_PATIENCE, read).await,
                    Ok(Ok(_))
                ) {
                    measured.failed_reads += 1;
                }
                measured.logins += 1;
                let dialed = Instant::now();
                let login = self.target.resume(502, &self.sender_account);
                match tokio::time::timeout(BYSTANDER_PATIENCE, login).await {
                    Ok(Ok(client)) => {
                        report::record(&mut measured.login_latency, dialed.elapsed());
                        client.close().await;
                    }
                    _ => measured.failed_logins += 1,
                }
            }
        }
        Ok(measured)
    }
}
