//! Federation end to end (FEDERATION.md): customers of server A write to an
//! inbox of server B (`support@b.test`), so B hosts every conversation.
//! Each `Send` on A is answered `relayed` once A committed the message and
//! its outbox row; A delivers it to B, B orders and commits it, and its
//! agents, connected to B, get it. B replicates the ordered message back to
//! A, where the customer gets it too. A message counts as **end to end**
//! when an agent on B received it, and as **durable on both sides** when
//! its replica came back to the customer on A as well.
//!
//! Two modes, both bounded in time:
//!
//! - without `--rate`, as fast as the window allows: each customer
//!   connection keeps `--window` messages in flight end to end (sent and
//!   not yet received by an agent). Throughput is counted at the agents.
//! - with `--rate R`, open loop as in `latency`: message k is due at
//!   `t0 + k / R` on connection `k mod N` whatever happened to earlier
//!   ones, and latency is measured from the scheduled time.
//!
//! Both servers' CPU (from `/proc`, `--server-pid` for A and
//! `--agent-server-pid` for B) is reported per message over the measured
//! window. The agents must exist on B (`kanald agent add NAME --password P`
//! there); the customers are registered on A by the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use kanal_client::{Client, Events, Fingerprint, Pipeline, pb};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::bench::global::Global;
use crate::bench::latency::Schedule;
use crate::bench::procfs::CpuMeter;
use crate::bench::report::{self, Progress, SharedTally, Summary};
use crate::bench::setup::{self, Account, MAX_ACCOUNTS, Plan, Target};

/// Customer connections when `--clients` is not given.
const DEFAULT_CLIENTS: usize = 16;

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 64;

/// The design's federation target, in messages per second end to end.
const TARGET_PER_SECOND: f64 = 20_000.0;

/// Most messages a window may hold in flight per connection.
const MAX_WINDOW: usize = 1024;

/// Most messages one run may schedule (`--rate` × its seconds).
const MAX_SCHEDULED: u64 = 2_000_000;

/// Options of `federation`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// The agents' server B, `host:port` (the customers' server A is
    /// --server)
    #[arg(long, env = "KANAL_AGENT_SERVER")]
    pub(crate) agent_server: String,
    /// SHA-256 of B's certificate, as `kanald fingerprint` prints it there
    #[arg(long, env = "KANAL_AGENT_PIN")]
    pub(crate) agent_pin: Option<Fingerprint>,
    /// B's process id (same host): its CPU time is read from /proc/PID
    #[arg(long)]
    pub(crate) agent_server_pid: Option<u32>,
    /// The inbox of B the customers write to
    #[arg(long, default_value = "support@b.test")]
    pub(crate) inbox: String,
    /// An agent of the inbox on B, connected and reading its events
    /// (repeat for several; each message counts once, at the first)
    #[arg(long = "agent", required = true)]
    pub(crate) agents: Vec<String>,
    /// The agents' password
    #[arg(long, env = "KANAL_BENCH_AGENT_PASSWORD")]
    pub(crate) agent_password: String,
    /// Messages per second, all customers together, on a fixed schedule
    /// (open loop); without it, as fast as --window allows
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Messages each customer connection keeps in flight end to end (sent
    /// and not yet received on B), without --rate
    #[arg(long, default_value_t = 32)]
    pub(crate) window: usize,
    /// Send each connection's messages on one pipelined request stream
    /// (PROTOCOL.md §7.1) instead of a stream per message
    #[arg(long)]
    pub(crate) pipelined: bool,
    /// Bytes of text per message
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Longest wait, in seconds, for the last messages (on B, and back on
    /// A) after the load ends
    #[arg(long, default_value_t = 20.0)]
    pub(crate) drain: f64,
}

/// Where one message has been seen.
#[derive(Debug, Default)]
struct Pending {
    /// The sending slot waits for B's receipt (without --rate).
    on_b: Option<oneshot::Sender<()>>,
    seen_on_b: bool,
    seen_on_a: bool,
}

/// Counters and histograms every task adds to.
#[derive(Debug)]
struct Tally {
    /// The clock of every message's text: nanoseconds since `t0`.
    t0: Instant,
    /// Messages from this one on are measured (warm-up before).
    first_measured: AtomicU64,
    /// Messages sent and not yet seen on both sides, by number.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Sends issued so far (without --rate, also the next message's number).
    issued: AtomicU64,
    /// Sends issued and not yet answered.
    outstanding: AtomicU64,
    /// Measured sends answered `Sent` (relayed).
    acked: AtomicU64,
    /// Sends answered with `relayed` false or a seq: not federated.
    not_relayed: AtomicU64,
    /// Messages received by an agent on B, each once.
    on_b: AtomicU64,
    /// Measured messages received on B.
    measured_on_b: AtomicU64,
    /// Deliveries to agents, every agent's copy counted.
    deliveries: AtomicU64,
    /// Messages whose replica came back to the customer on A.
    on_a: AtomicU64,
    /// Measured messages back on A.
    measured_on_a: AtomicU64,
    /// Issue (or schedule, with --rate) → `Sent` on A.
    sent_latency: Mutex<Histogram<u64>>,
    /// Issue (or schedule) → an agent's event on B.
    to_b: Mutex<Histogram<u64>>,
    /// Issue (or schedule) → the replica's event at the customer on A.
    back_to_a: Mutex<Histogram<u64>>,
    /// Schedule → issue (--rate only: the bench's own lateness).
    issue_lag: Mutex<Histogram<u64>>,
    errors: SharedTally,
}

impl Tally {
    fn new(t0: Instant, first_measured: u64) -> Self {
        Self {
            t0,
            first_measured: AtomicU64::new(first_measured),
            pending: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            not_relayed: AtomicU64::new(0),
            on_b: AtomicU64::new(0),
            measured_on_b: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            on_a: AtomicU64::new(0),
            measured_on_a: AtomicU64::new(0),
            sent_latency: Mutex::new(report::histogram()),
            to_b: Mutex::new(report::histogram()),
            back_to_a: Mutex::new(report::histogram()),
            issue_lag: Mutex::new(report::histogram()),
            errors: SharedTally::default(),
        }
    }

    fn measured(&self, k: u64) -> bool {
        k >= self.first_measured.load(Ordering::Relaxed)
    }

    /// Message `k` is about to be sent; `on_b` hears of its receipt on B.
    fn expect(&self, k: u64, on_b: Option<oneshot::Sender<()>>) {
        lock(&self.pending).insert(
            k,
            Pending {
                on_b,
                ..Pending::default()
            },
        );
    }

    /// Message `k` was never sent: nobody will see it.
    fn forget(&self, k: u64) {
        lock(&self.pending).remove(&k);
    }

    /// An agent on B received message `k`, timed from `from`.
    fn seen_on_b(&self, k: u64, from: Instant, now: Instant) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let waker = {
            let mut pending = lock(&self.pending);
            let Some(entry) = pending.get_mut(&k) else {
                return;
            };
            if entry.seen_on_b {
                return;
            }
            entry.seen_on_b = true;
            let waker = entry.on_b.take();
            if entry.seen_on_a {
                pending.remove(&k);
            }
            waker
        };
        self.on_b.fetch_add(1, Ordering::Relaxed);
        if self.measured(k) {
            self.measured_on_b.fetch_add(1, Ordering::Relaxed);
            report::record(&mut lock(&self.to_b), now.saturating_duration_since(from));
        }
        if let Some(waker) = waker {
            let _ = waker.send(());
        }
    }

    /// Message `k`'s replica reached its sender on A, timed from `from`.
    fn seen_on_a(&self, k: u64, from: Instant, now: Instant) {
        {
            let mut pending = lock(&self.pending);
            let Some(entry) = pending.get_mut(&k) else {
                return;
            };
            if entry.seen_on_a {
                return;
            }
            entry.seen_on_a = true;
            if entry.seen_on_b {
                pending.remove(&k);
            }
        }
        self.on_a.fetch_add(1, Ordering::Relaxed);
        if self.measured(k) {
            self.measured_on_a.fetch_add(1, Ordering::Relaxed);
            report::record(
                &mut lock(&self.back_to_a),
                now.saturating_duration_since(from),
            );
        }
    }

    /// Messages still missing on B, and on A.
    fn missing(&self) -> (u64, u64) {
        let pending = lock(&self.pending);
        let on_b = pending.values().filter(|p| !p.seen_on_b).count() as u64;
        let on_a = pending.values().filter(|p| !p.seen_on_a).count() as u64;
        (on_b, on_a)
    }
}

/// One customer connection on A and its conversation hosted by B.
#[derive(Clone)]
struct Sender {
    client: Client,
    /// The connection's pipelined stream, or `None` for a stream per message.
    pipeline: Option<Pipeline>,
    conversation: String,
}

impl Sender {
    async fn send(&self, id: &str, body: pb::Body) -> Result<pb::Sent, kanal_client::ClientError> {
        match &self.pipeline {
            Some(pipeline) => pipeline.send(&self.conversation, id, body).await,
            None => self.client.send(&self.conversation, id, body).await,
        }
    }
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    global: &Global,
    options: &Options,
) -> Result<Summary> {
    if options.rate == Some(0) {
        bail!("--rate must be positive");
    }
    if options.window == 0 || options.window > MAX_WINDOW {
        bail!("--window must be between 1 and {MAX_WINDOW}");
    }
    let clients = global.clients.unwrap_or(DEFAULT_CLIENTS).max(1);
    let duration = global.duration_or(10.0);
    let warmup = Duration::from_secs_f64(options.warmup.max(0.0));
    if let Some(rate) = options.rate
        && (warmup + duration).as_secs_f64() * rate as f64 > MAX_SCHEDULED as f64
    {
        bail!("bounded: at most {MAX_SCHEDULED} messages per run (--rate × seconds)");
    }

    // B: the agents, logged in with their password, reading their events.
    let agent_target = Target::new(&Global {
        server: options.agent_server.clone(),
        pin: options.agent_pin,
        server_name: None,
        json: global.json,
        duration: global.duration,
        clients: global.clients,
        server_pid: options.agent_server_pid,
        per_endpoint: global.per_endpoint,
    })
    .await?;
    let outcome = measure(
        target,
        &agent_target,
        global,
        options,
        clients,
        (warmup, duration),
    )
    .await;
    agent_target.shutdown().await;
    outcome
}

async fn measure(
    target: &Arc<Target>,
    agent_target: &Arc<Target>,
    global: &Global,
    options: &Options,
    clients: usize,
    (warmup, duration): (Duration, Duration),
) -> Result<Summary> {
    let agent_accounts: Vec<Account> = options
        .agents
        .iter()
        .map(|address| Account {
            address: address.clone(),
            token: String::new(),
            password: options.agent_password.clone(),
        })
        .collect();
    let progress =
        Progress::new(agent_target.bar(agent_accounts.len() as u64, "connecting agents"));
    let agents = agent_target
        .open(
            &agent_accounts,
            Plan {
                password_login: true,
                ..Plan::resume(agent_accounts.len(), CONNECT_CONCURRENCY).with_sync()
            },
            &progress,
        )
        .await?;
    progress.finish();
    if agents.errors.total() > 0 {
        bail!("agent connections on B failed: {:?}", agents.errors.0);
    }

    // A: the customers, each reading its own events (the replicas).
    let accounts = target.register("c", clients.min(MAX_ACCOUNTS)).await?;
    let progress = Progress::new(target.bar(clients as u64, "connecting customers"));
    let opened = target
        .open(
            &accounts,
            Plan::resume(clients, CONNECT_CONCURRENCY).with_sync(),
            &progress,
        )
        .await?;
    progress.finish();
    if opened.errors.total() > 0 {
        bail!("customer connections on A failed: {:?}", opened.errors.0);
    }
    let mut customers = opened.sessions;
    customers.sort_by_key(|session| session.index);
    let conversations =
        setup::create_conversations_to(&customers, std::slice::from_ref(&options.inbox)).await?;
    if let Some((_, id)) = conversations
        .iter()
        .find(|(_, id)| !id.starts_with(&format!("{}/", domain_of(&options.inbox))))
    {
        bail!("conversation {id} is not hosted by the inbox's server: is B a peer of A?");
    }
    let senders: Vec<Sender> = conversations
        .into_iter()
        .map(|(client, conversation)| Sender {
            pipeline: options.pipelined.then(|| client.pipeline()),
            client,
            conversation,
        })
        .collect();

    let t0 = Instant::now() + Duration::from_millis(100);
    let (schedule, first_measured) = match options.rate {
        Some(rate) => {
            let schedule = Schedule {
                t0,
                rate,
                first_measured: (warmup.as_secs_f64() * rate as f64).round() as u64,
                total: ((warmup + duration).as_secs_f64() * rate as f64).round() as u64,
            };
            let first = schedule.first_measured;
            (Some(Arc::new(schedule)), first)
        }
        // Fixed once the warm-up ends.
        None => (None, u64::MAX),
    };
    let tally = Arc::new(Tally::new(t0, first_measured));
    let mut readers = JoinSet::new();
    let mut agent_sessions = agents.sessions;
    for session in &mut agent_sessions {
        if let Some(events) = session.events.take() {
            readers.spawn(read(events, Side::B, schedule.clone(), tally.clone()));
        }
    }
    for session in &mut customers {
        if let Some(events) = session.events.take() {
            readers.spawn(read(events, Side::A, schedule.clone(), tally.clone()));
        }
    }

    let measure_from = t0 + warmup;
    let end = measure_from + duration;
    let body_size = options.size;
    let mut load = Load::start(
        schedule.clone(),
        senders,
        options.window,
        body_size,
        &target.run,
        tally.clone(),
        end,
    );

    // Sample the counters once a second: progress, and the steady rate.
    let bar = target.bar((warmup + duration).as_secs(), "sending (s)");
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    while Instant::now() < measure_from {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(measure_from.into()) => {}
        }
        bar.set_position(t0.elapsed().as_secs());
        bar.set_message(format!(
            "warming up, {} on B",
            report::group(tally.on_b.load(Ordering::Relaxed))
        ));
    }
    if schedule.is_none() {
        // Every message issued from now on is measured.
        let next = tally.issued.load(Ordering::Acquire);
        tally.first_measured.store(next, Ordering::Release);
    }
    let cpu_a = CpuMeter::start(global.server_pid);
    let cpu_b = CpuMeter::start(options.agent_server_pid);
    let (on_b_at_start, on_a_at_start) = (
        tally.on_b.load(Ordering::Relaxed),
        tally.on_a.load(Ordering::Relaxed),
    );
    let issued_at_start = tally.issued.load(Ordering::Relaxed);
    let mut per_second = Vec::new();
    let mut ticker = tokio::time::interval_at(
        (measure_from + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let (mut last, mut last_at) = (on_b_at_start, Instant::now());
    while Instant::now() < end {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(end.into()) => {}
        }
        let (now, at) = (tally.on_b.load(Ordering::Relaxed), Instant::now());
        let rate = ((now - last) as f64 / (at - last_at).as_secs_f64().max(1e-3)) as u64;
        if at - last_at >= Duration::from_millis(900) {
            per_second.push(rate);
        }
        bar.set_position(t0.elapsed().as_secs());
        bar.set_message(format!("{} msg/s end to end", report::group(rate)));
        (last, last_at) = (now, at);
    }
    let (cpu_a, cpu_b) = (cpu_a.stop(), cpu_b.stop());
    let window = cpu_a.wall();
    let on_b_in_window = tally.on_b.load(Ordering::Relaxed) - on_b_at_start;
    let on_a_in_window = tally.on_a.load(Ordering::Relaxed) - on_a_at_start;
    let issued_in_window = tally.issued.load(Ordering::Relaxed) - issued_at_start;
    // Without --rate the slots stop at `end`; with it the schedule does.
    load.finish().await?;
    bar.set_message("draining");
    let drain_until = Instant::now() + Duration::from_secs_f64(options.drain.max(0.0));
    while Instant::now() < drain_until
        && (tally.outstanding.load(Ordering::Acquire) > 0 || tally.missing() != (0, 0))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bar.finish_and_clear();
    readers.abort_all();
    while readers.join_next().await.is_some() {}

    let seconds = window.as_secs_f64().max(f64::EPSILON);
    let end_to_end = on_b_in_window as f64 / seconds;
    let (missing_on_b, missing_on_a) = tally.missing();
    let unanswered = tally.outstanding.load(Ordering::Acquire);
    let errors = report::snapshot(&tally.errors);
    let not_relayed = tally.not_relayed.load(Ordering::Acquire);
    // CPU per message: with --rate per message scheduled in the window (as
    // `latency` counts), else per message received on B in it.
    let per_message = match &schedule {
        Some(schedule) => schedule.total - schedule.first_measured,
        None => on_b_in_window,
    };

    let mut summary = Summary::new("federation", &target.server, &target.run);
    summary.section("setup");
    summary.field(
        "agent_server",
        "agents' server (B)",
        options.agent_server.as_str(),
        options.agent_server.as_str(),
    );
    summary.field(
        "inbox",
        "customers write to",
        options.inbox.as_str(),
        options.inbox.as_str(),
    );
    summary.count("connections", "customer connections on A", clients as u64);
    summary.count("accounts", "customer accounts on A", accounts.len() as u64);
    summary.count(
        "agents",
        "agent connections on B",
        agent_sessions.len() as u64,
    );
    match options.rate {
        Some(rate) => summary.count("rate", "scheduled rate (msg/s)", rate),
        None => summary.count(
            "window",
            "in flight end to end / conn",
            options.window as u64,
        ),
    }
    summary.field(
        "pipelined",
        "one pipelined stream / conn",
        options.pipelined,
        options.pipelined.to_string(),
    );
    summary.count("message_bytes", "message text bytes", options.size as u64);
    summary.duration("warmup", "warm-up", warmup);
    summary.duration("duration", "measured", duration);
    summary.section("results");
    summary.rate(
        "throughput",
        "end to end (received on B)",
        end_to_end,
        "msg/s",
    );
    summary.rate(
        "back_on_a",
        "replicas back on A",
        on_a_in_window as f64 / seconds,
        "msg/s",
    );
    summary.rate(
        "offered",
        "sends issued on A",
        issued_in_window as f64 / seconds,
        "msg/s",
    );
    if let (Some(min), Some(max)) = (per_second.iter().min(), per_second.iter().max()) {
        summary.field(
            "per_second",
            "per-second min / max on B",
            per_second.clone(),
            format!("{} / {} msg/s", report::group(*min), report::group(*max)),
        );
    }
    let from = if schedule.is_some() {
        "schedule"
    } else {
        "send"
    };
    summary.latency(
        "end_to_end",
        &format!("{from} → agent on B"),
        &lock(&tally.to_b),
    );
    summary.latency(
        "back_to_a",
        &format!("{from} → replica on A"),
        &lock(&tally.back_to_a),
    );
    summary.latency(
        "send_to_sent",
        &format!("{from} → Sent (relayed) on A"),
        &lock(&tally.sent_latency),
    );
    if schedule.is_some() {
        summary.latency(
            "issue_lag",
            "bench timer lag (schedule → issue)",
            &lock(&tally.issue_lag),
        );
    }
    summary.count(
        "received_on_b",
        "measured messages on B",
        tally.measured_on_b.load(Ordering::Acquire),
    );
    summary.count(
        "received_on_a",
        "measured replicas on A",
        tally.measured_on_a.load(Ordering::Acquire),
    );
    summary.count(
        "deliveries",
        "deliveries to agents (all copies)",
        tally.deliveries.load(Ordering::Acquire),
    );
    summary.count("missing_on_b", "never received on B", missing_on_b);
    summary.count("missing_on_a", "never replicated back to A", missing_on_a);
    summary.count("unanswered", "sends unanswered after draining", unanswered);
    cpu_a.report_server_as(
        &mut summary,
        "a_server_cpu",
        "server A CPU (customers)",
        per_message,
        "msg",
        "unknown (pass --server-pid)",
    );
    cpu_b.report_server_as(
        &mut summary,
        "b_server_cpu",
        "server B CPU (host, agents)",
        per_message,
        "msg",
        "unknown (pass --agent-server-pid)",
    );
    cpu_a.report_bench(&mut summary, per_message, "msg");
    summary.count("errors", "failed sends", errors.total());
    summary.errors("error_kinds", &errors);
    summary.section("targets");
    if schedule.is_none() {
        summary.target(
            "throughput",
            "≥ 20,000 msg/s end to end, durable on both sides",
            end_to_end >= TARGET_PER_SECOND && missing_on_a == 0,
        );
    } else {
        summary.target_not_applicable(
            "throughput",
            "≥ 20,000 msg/s end to end, durable on both sides",
            "run without --rate",
        );
    }
    if missing_on_b > 0 {
        summary.fail(format!(
            "{missing_on_b} relayed messages never reached an agent on B"
        ));
    }
    if missing_on_a > 0 {
        summary.fail(format!(
            "{missing_on_a} relayed messages were never replicated back to A"
        ));
    }
    if not_relayed > 0 {
        summary.fail(format!(
            "{not_relayed} sends were not relayed: the conversation is not federated"
        ));
    }
    if on_b_in_window == 0 {
        summary.fail("no message reached B in the measured window");
    }
    if unanswered > 0 {
        summary.fail(format!("{unanswered} sends were never answered"));
    }
    if errors.total() > 0 {
        summary.fail(format!("{} sends failed", errors.total()));
    }

    setup::close_all(customers).await;
    setup::close_all(agent_sessions).await;
    Ok(summary)
}

/// The domain part of `local@domain`.
fn domain_of(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map_or(address, |(_, domain)| domain)
}

/// The load: a schedule's thread, or the window's slots.
enum Load {
    Scheduled(tokio::task::JoinHandle<()>),
    Windowed(JoinSet<()>),
}

impl Load {
    fn start(
        schedule: Option<Arc<Schedule>>,
        senders: Vec<Sender>,
        window: usize,
        size: usize,
        run: &str,
        tally: Arc<Tally>,
        end: Instant,
    ) -> Self {
        let ids = format!("{run}-f");
        match schedule {
            Some(schedule) => {
                let runtime = tokio::runtime::Handle::current();
                Self::Scheduled(tokio::task::spawn_blocking(move || {
                    send_on_schedule(&runtime, &senders, size, &ids, &schedule, &tally);
                }))
            }
            None => {
                let mut slots = JoinSet::new();
                for sender in &senders {
                    for _ in 0..window {
                        slots.spawn(slot(sender.clone(), ids.clone(), size, tally.clone(), end));
                    }
                }
                Self::Windowed(slots)
            }
        }
    }

    /// Waits for the load to end (the schedule's last send, or the slots
    /// stopping at the window's end and their last message's receipt).
    async fn finish(&mut self) -> Result<()> {
        match self {
            Self::Scheduled(handle) => handle.await?,
            Self::Windowed(slots) => while slots.join_next().await.transpose()?.is_some() {},
        }
        Ok(())
    }
}

/// One slot of a connection's window: a message sent, then, once B got it,
/// the next, until `end`.
async fn slot(sender: Sender, ids: String, size: usize, tally: Arc<Tally>, end: Instant) {
    // Longest wait for one message's receipt on B before the slot gives up
    // (the drain then counts it as missing).
    const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
    while Instant::now() < end {
        // Messages are numbered in the order they are issued.
        let k = tally.issued.fetch_add(1, Ordering::Relaxed);
        let (on_b, received) = oneshot::channel();
        let issued = Instant::now();
        tally.expect(k, Some(on_b));
        tally.outstanding.fetch_add(1, Ordering::AcqRel);
        let body = setup::text_body(&format!("{k}:{}:", nanos_since(tally.t0, issued)), size);
        let sent = sender.send(&format!("{ids}{k}"), body).await;
        let ok = answered(&tally, k, issued, sent);
        tally.outstanding.fetch_sub(1, Ordering::AcqRel);
        if !ok {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        if tokio::time::timeout(RECEIPT_TIMEOUT, received)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Counts the answer to message `k`'s send; true when it was relayed.
fn answered(
    tally: &Tally,
    k: u64,
    from: Instant,
    sent: Result<pb::Sent, kanal_client::ClientError>,
) -> bool {
    match sent {
        Ok(sent) => {
            if !sent.relayed || sent.seq != 0 {
                tally.not_relayed.fetch_add(1, Ordering::Relaxed);
            }
            if tally.measured(k) {
                tally.acked.fetch_add(1, Ordering::Relaxed);
                report::record(&mut lock(&tally.sent_latency), from.elapsed());
            }
            true
        }
        Err(error) => {
            report::count_error(&tally.errors, &error);
            tally.forget(k);
            false
        }
    }
}

/// Issues each message when it is due, on connection `k mod N`, without
/// waiting for earlier answers, on a thread of its own (as `latency` does).
fn send_on_schedule(
    runtime: &tokio::runtime::Handle,
    senders: &[Sender],
    size: usize,
    ids: &str,
    schedule: &Arc<Schedule>,
    tally: &Arc<Tally>,
) {
    let mut k = 0;
    while k < schedule.total {
        let due = schedule.at(k);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let now = Instant::now();
        while k < schedule.total && schedule.at(k) <= now {
            if k >= schedule.first_measured {
                report::record(&mut lock(&tally.issue_lag), now - schedule.at(k));
            }
            tally.expect(k, None);
            tally.issued.fetch_add(1, Ordering::Relaxed);
            tally.outstanding.fetch_add(1, Ordering::AcqRel);
            let sender = senders[(k % senders.len() as u64) as usize].clone();
            let body = setup::text_body(&format!("{k}:{}:", nanos_since(tally.t0, now)), size);
            let (id, tally, scheduled) = (format!("{ids}{k}"), tally.clone(), schedule.at(k));
            runtime.spawn(async move {
                let sent = sender.send(&id, body).await;
                answered(&tally, k, scheduled, sent);
                tally.outstanding.fetch_sub(1, Ordering::AcqRel);
            });
            k += 1;
        }
    }
}

/// Which server an event stream is on.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// The customers' server: the replicas of their own messages.
    A,
    /// The host: the agents' copies.
    B,
}

/// Reads one event stream and records each bench message seen on it.
async fn read(mut events: Events, side: Side, schedule: Option<Arc<Schedule>>, tally: Arc<Tally>) {
    while let Some(event) = events.next().await {
        let Some(message) = setup::message_of(&event) else {
            continue;
        };
        let now = Instant::now();
        let mut fields = setup::text_of(message).split(':');
        let (Some(Ok(k)), Some(Ok(issued_ns))) = (
            fields.next().map(str::parse::<u64>),
            fields.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        // Latency from the scheduled time with --rate, else from the issue.
        let from = match &schedule {
            Some(schedule) => schedule.at(k),
            None => tally.t0 + Duration::from_nanos(issued_ns),
        };
        match side {
            Side::A => tally.seen_on_a(k, from, now),
            Side::B => tally.seen_on_b(k, from, now),
        }
    }
}

/// Nanoseconds from `t0` to `at` (0 before it).
fn nanos_since(t0: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(t0).as_nanos()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("conversation", &self.conversation)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_done_once_seen_on_both_sides_in_either_order() {
        let t0 = Instant::now();
        let tally = Tally::new(t0, 0);
        let (on_b, mut heard) = oneshot::channel();
        tally.expect(1, Some(on_b));
        tally.expect(2, None);
        assert_eq!(tally.missing(), (2, 2));
        tally.seen_on_b(1, t0, t0);
        tally.seen_on_b(1, t0, t0); // a second agent's copy
        assert!(heard.try_recv().is_ok(), "the slot hears of B's receipt");
        tally.seen_on_a(2, t0, t0);
        assert_eq!(tally.missing(), (1, 1));
        tally.seen_on_a(1, t0, t0);
        tally.seen_on_b(2, t0, t0);
        assert_eq!(tally.missing(), (0, 0));
        assert_eq!(tally.on_b.load(Ordering::Relaxed), 2);
        assert_eq!(tally.deliveries.load(Ordering::Relaxed), 3);
        assert_eq!(tally.on_a.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn warm_up_messages_are_counted_but_not_measured() {
        let t0 = Instant::now();
        let tally = Tally::new(t0, 10);
        tally.expect(3, None);
        tally.seen_on_b(3, t0, t0 + Duration::from_millis(1));
        assert_eq!(tally.on_b.load(Ordering::Relaxed), 1);
        assert_eq!(tally.measured_on_b.load(Ordering::Relaxed), 0);
        assert!(lock(&tally.to_b).is_empty());
    }

    #[test]
    fn the_host_is_the_inbox_domain() {
        assert_eq!(domain_of("support@b.test"), "b.test");
        assert_eq!(domain_of("b.test"), "b.test");
    }
}
