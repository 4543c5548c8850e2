//! Maximum durable throughput: many sending connections, each with many
//! `Send` requests in flight, for a fixed time. Only `Sent` acks count, and
//! `Sent` means the message was committed and fsync'd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use kanal_client::{Client, Pipeline, pb};
use kanal_proto::limits;
use tokio::task::JoinSet;

use crate::bench::global::Global;
use crate::bench::procfs::CpuMeter;
use crate::bench::report::{self, Progress, SharedTally, Summary};
use crate::bench::setup::{self, Account, MAX_ACCOUNTS, MAX_IN_FLIGHT, Plan, Session, Target};

/// Sending connections when `--clients` is not given.
const DEFAULT_CLIENTS: usize = 16;

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 64;

/// Shared latency histograms (slots pick one by index).
const STRIPES: usize = 16;

/// The durable throughput the design asks for, in messages per second.
const TARGET_PER_SECOND: f64 = 50_000.0;

/// Options of `throughput`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// Send requests in flight per connection: at most 7 on a stream each
    /// (the server allows 8 streams per connection, the control stream
    /// included), at most 64 with --pipelined
    #[arg(long, default_value_t = 7)]
    pub(crate) in_flight: usize,
    /// Send each connection's requests on one pipelined request stream
    /// (PROTOCOL.md §7.1) instead of a stream per request
    #[arg(long)]
    pub(crate) pipelined: bool,
    /// Bytes of text per message
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Receiving users; the conversation of sender connection i goes to
    /// receiver i mod N
    #[arg(long, default_value_t = 1)]
    pub(crate) receivers: usize,
    /// Keep the receivers connected and reading their event streams (the
    /// server then also pushes every message live)
    #[arg(long)]
    pub(crate) online: bool,
    /// Write to this existing party instead of receivers of the bench's
    /// own, e.g. an inbox (`support@HOST`) with many agents: every sender's
    /// conversation goes to it
    #[arg(long, conflicts_with_all = ["receivers", "online"])]
    pub(crate) to: Option<String>,
    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    global: &Global,
    options: &Options,
) -> Result<Summary> {
    let max_in_flight = if options.pipelined {
        limits::MAX_PIPELINED_REQUESTS
    } else {
        MAX_IN_FLIGHT
    };
    if options.in_flight == 0 || options.in_flight > max_in_flight {
        bail!("--in-flight must be between 1 and {max_in_flight}");
    }
    let clients = global.clients.unwrap_or(DEFAULT_CLIENTS).max(1);
    let duration = global.duration_or(10.0);
    let warmup = Duration::from_secs_f64(options.warmup.max(0.0));

    let senders = target.register("s", clients.min(MAX_ACCOUNTS)).await?;
    let receivers = match options.to {
        Some(_) => Vec::new(),
        None => target.register("r", options.receivers.max(1)).await?,
    };
    let progress = Progress::new(target.bar(clients as u64, "connecting senders"));
    let opened = target
        .open(
            &senders,
            Plan::resume(clients, CONNECT_CONCURRENCY),
            &progress,
        )
        .await?;
    progress.finish();
    if opened.errors.total() > 0 {
        bail!(
            "{} of {clients} sender connections failed: {:?}",
            opened.errors.total(),
            opened.errors.0
        );
    }
    let mut sessions = opened.sessions;
    sessions.sort_by_key(|session| session.index);
    let conversations = match &options.to {
        Some(to) => setup::create_conversations_to(&sessions, std::slice::from_ref(to)).await?,
        None => setup::create_conversations(&sessions, &receivers).await?,
    };
    let listeners = if options.online {
        Some(Listeners::start(target, &receivers).await?)
    } else {
        None
    };

    // Latencies go to a few shared histograms: one per slot would cost
    // ≈200 KiB each.
    let latency: Arc<[Mutex<Histogram<u64>>]> = (0..STRIPES)
        .map(|_| Mutex::new(report::histogram()))
        .collect();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let acked = Arc::new(AtomicU64::new(0));
    let errors = SharedTally::default();
    let body = setup::text_body("", options.size);
    let mut workers = JoinSet::new();
    for (connection, (client, conversation)) in conversations.iter().enumerate() {
        let pipeline = client.pipeline();
        for slot in 0..options.in_flight {
            workers.spawn(send_loop(Sender {
                latency: latency.clone(),
                stripe: (connection * options.in_flight + slot) % STRIPES,
                client: client.clone(),
                pipeline: options.pipelined.then(|| pipeline.clone()),
                conversation: conversation.clone(),
                body: body.clone(),
                ids: format!("{}-{connection}-{slot}-", target.run),
                measure_from,
                end,
                acked: acked.clone(),
                errors: errors.clone(),
            }));
        }
    }

    // Sample the counters once a second: progress, and the steady rate.
    let bar = target.bar((warmup + duration).as_secs(), "sending (s)");
    let received = || {
        listeners
            .as_ref()
            .map_or(0, |listeners| listeners.received.load(Ordering::Relaxed))
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < measure_from {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(measure_from.into()) => {}
        }
        let now = acked.load(Ordering::Relaxed);
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!("warming up, {} acked", report::group(now)));
    }
    let cpu = CpuMeter::start(global.server_pid);
    let received_at_start = received();
    let mut per_second = Vec::new();
    let mut ticker = tokio::time::interval_at(
        (measure_from + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let mut last = acked.load(Ordering::Relaxed);
    let mut last_at = Instant::now();
    while Instant::now() < end {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(end.into()) => {}
        }
        let (now, at) = (acked.load(Ordering::Relaxed), Instant::now());
        let rate = ((now - last) as f64 / (at - last_at).as_secs_f64().max(1e-3)) as u64;
        // A last partial second is not a per-second sample.
        if at - last_at >= Duration::from_millis(900) {
            per_second.push(rate);
        }
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!("{} msg/s", report::group(rate)));
        (last, last_at) = (now, at);
    }
    let cpu = cpu.stop();
    let received_at_end = received();
    bar.finish_and_clear();

    let mut measured = 0;
    let mut duplicates = 0;
    while let Some(outcome) = workers.join_next().await {
        let outcome = outcome?;
        measured += outcome.measured;
        duplicates += outcome.duplicates;
    }
    let mut all = report::histogram();
    for stripe in latency.iter() {
        report::merge(
            &mut all,
            &stripe.lock().unwrap_or_else(PoisonError::into_inner),
        );
    }
    let latency = all;
    let rate = measured as f64 / duration.as_secs_f64().max(f64::EPSILON);
    let errors = report::snapshot(&errors);

    let mut summary = Summary::new("throughput", &target.server, &target.run);
    summary.section("setup");
    summary.count("connections", "sending connections", clients as u64);
    summary.count("accounts", "sender accounts", senders.len() as u64);
    summary.count(
        "in_flight",
        "requests in flight / conn",
        options.in_flight as u64,
    );
    summary.field(
        "pipelined",
        "one pipelined stream / conn",
        options.pipelined,
        options.pipelined.to_string(),
    );
    summary.count("message_bytes", "message text bytes", options.size as u64);
    summary.count("receivers", "receiver accounts", receivers.len() as u64);
    if let Some(to) = &options.to {
        summary.field("to", "conversations go to", to.as_str(), to.as_str());
    }
    summary.field(
        "online",
        "receivers online",
        options.online,
        options.online.to_string(),
    );
    summary.count("endpoints", "UDP endpoints", target.endpoint_count() as u64);
    summary.duration("warmup", "warm-up", warmup);
    summary.duration("duration", "measured", duration);
    summary.section("results");
    summary.rate("throughput", "durable throughput (Sent)", rate, "msg/s");
    summary.count("acked", "Sent acks measured", measured);
    if let (Some(min), Some(max)) = (per_second.iter().min(), per_second.iter().max()) {
        summary.field(
            "per_second",
            "per-second min / max",
            per_second.clone(),
            format!("{} / {} msg/s", report::group(*min), report::group(*max)),
        );
    }
    summary.latency("send_latency", "Send → Sent latency", &latency);
    if listeners.is_some() {
        let live = (received_at_end - received_at_start) as f64 / per_second.len().max(1) as f64;
        summary.rate("received", "delivered live to receivers", live, "msg/s");
    }
    cpu.report(&mut summary, measured, "msg");
    summary.count("errors", "failed sends", errors.total());
    summary.errors("error_kinds", &errors);
    summary.section("targets");
    summary.target(
        "throughput",
        "≥ 50,000 durable msg/s",
        rate >= TARGET_PER_SECOND,
    );
    if duplicates > 0 {
        summary.fail(format!("{duplicates} sends came back as duplicates"));
    }
    if measured == 0 {
        summary.fail("no Send was acknowledged");
    }
    if errors.total() > 0 {
        summary.fail(format!("{} sends failed", errors.total()));
    }

    if let Some(listeners) = listeners {
        listeners.stop().await;
    }
    setup::close_all(sessions).await;
    Ok(summary)
}

/// One sending slot: a request in flight on one connection, again and again.
struct Sender {
    latency: Arc<[Mutex<Histogram<u64>>]>,
    stripe: usize,
    client: Client,
    /// The connection's one pipelined stream, or `None` for a stream per request.
    pipeline: Option<Pipeline>,
    conversation: String,
    body: pb::Body,
    ids: String,
    measure_from: Instant,
    end: Instant,
    acked: Arc<AtomicU64>,
    errors: SharedTally,
}

/// What one slot measured.
struct SlotOutcome {
    measured: u64,
    duplicates: u64,
}

async fn send_loop(sender: Sender) -> SlotOutcome {
    let mut outcome = SlotOutcome {
        measured: 0,
        duplicates: 0,
    };
    let mut n = 0u64;
    loop {
        let started = Instant::now();
        if started >= sender.end {
            return outcome;
        }
        let id = format!("{}{n}", sender.ids);
        n += 1;
        let sent = match &sender.pipeline {
            Some(pipeline) => {
                pipeline
                    .send(&sender.conversation, &id, sender.body.clone())
                    .await
            }
            None => {
                sender
                    .client
                    .send(&sender.conversation, &id, sender.body.clone())
                    .await
            }
        };
        match sent {
            Ok(sent) => {
                let done = Instant::now();
                sender.acked.fetch_add(1, Ordering::Relaxed);
                if sent.duplicate {
                    outcome.duplicates += 1;
                }
                if started >= sender.measure_from && done <= sender.end {
                    let mut latency = sender.latency[sender.stripe]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    report::record(&mut latency, done - started);
                    outcome.measured += 1;
                }
            }
            Err(error) => {
                report::count_error(&sender.errors, &error);
                if sender.client.session_error().is_some() {
                    return outcome;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Receivers connected and counting the messages pushed to them.
struct Listeners {
    sessions: Vec<Session>,
    readers: JoinSet<()>,
    received: Arc<AtomicU64>,
}

impl Listeners {
    async fn start(target: &Arc<Target>, receivers: &[Account]) -> Result<Self> {
        let progress = Progress::new(target.bar(receivers.len() as u64, "connecting receivers"));
        let opened = target
            .open(
                receivers,
                Plan::resume(receivers.len(), CONNECT_CONCURRENCY).with_sync(),
                &progress,
            )
            .await?;
        progress.finish();
        if opened.errors.total() > 0 {
            bail!("receivers failed to connect: {:?}", opened.errors.0);
        }
        let received = Arc::new(AtomicU64::new(0));
        let mut readers = JoinSet::new();
        let mut sessions = opened.sessions;
        for session in &mut sessions {
            if let Some(mut events) = session.events.take() {
                let received = received.clone();
                readers.spawn(async move {
                    while let Some(event) = events.next().await {
                        if setup::message_of(&event).is_some() {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }
        Ok(Self {
            sessions,
            readers,
            received,
        })
    }

    async fn stop(mut self) {
        self.readers.abort_all();
        setup::close_all(self.sessions).await;
        while self.readers.join_next().await.is_some() {}
    }
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}
