//! End-to-end latency at a fixed send rate. Senders follow a fixed schedule
//! (open loop: message k is due at `t0 + k / rate`, whatever happened to
//! earlier ones) and latency is measured from the *scheduled* time, so a
//! stalled server shows up as latency instead of silently slowing the senders
//! down (coordinated omission). Each message carries its schedule index and
//! the time the bench actually issued it; the receiver, in the same process
//! and on the same clock, records the time from each to the message event on
//! its event stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use kanal_client::{Client, Events, Pipeline};
use tokio::task::JoinSet;

use crate::bench::global::Global;
use crate::bench::procfs::CpuMeter;
use crate::bench::report::{self, Progress, SharedTally, Summary};
use crate::bench::setup::{self, MAX_ACCOUNTS, Plan, Target};

/// Sending connections when `--clients` is not given.
const DEFAULT_CLIENTS: usize = 16;

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 64;

/// The design's latency target: p99 at or below this at 10,000 msg/s.
const TARGET_P99: Duration = Duration::from_millis(5);

/// The rate at which the latency target applies, in messages per second.
const TARGET_RATE: u64 = 10_000;

/// Options of `latency`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// Messages per second, all senders together, on a fixed schedule
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rate: u64,
    /// Receiving users, each connected and reading its event stream; the
    /// conversation of sender connection i goes to receiver i mod N
    #[arg(long, default_value_t = 4)]
    pub(crate) receivers: usize,
    /// Bytes of text per message
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Send each connection's messages on one pipelined request stream
    /// (PROTOCOL.md §7.1) instead of a stream per message
    #[arg(long)]
    pub(crate) pipelined: bool,
    /// Longest wait, in seconds, for the last messages after the schedule ends
    #[arg(long, default_value_t = 10.0)]
    pub(crate) drain: f64,
}

/// When each message is due: message `k` at `t0 + k / rate`.
#[derive(Debug)]
pub(crate) struct Schedule {
    pub(crate) t0: Instant,
    pub(crate) rate: u64,
    /// The first message measured (earlier ones are warm-up).
    pub(crate) first_measured: u64,
    /// How many messages in all.
    pub(crate) total: u64,
}

impl Schedule {
    /// When message `k` is due.
    pub(crate) fn at(&self, k: u64) -> Instant {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate);
        self.t0 + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Counters and histograms every task adds to.
#[derive(Debug)]
struct Tally {
    /// Sends issued so far.
    issued: AtomicU64,
    /// Sends issued and not yet answered.
    outstanding: AtomicU64,
    /// Measured sends acknowledged with `Sent`.
    acked: AtomicU64,
    /// Measured messages received.
    received: AtomicU64,
    /// Schedule → Sent, measured messages.
    ack_latency: Mutex<Histogram<u64>>,
    /// Schedule → event at the receiver, measured messages.
    latency: Mutex<Histogram<u64>>,
    /// Issue → event at the receiver, measured messages (without the bench's
    /// own timer slack, but subject to coordinated omission).
    service: Mutex<Histogram<u64>>,
    /// Schedule → the moment the bench issued the send (its own timer slack).
    issue_lag: Mutex<Histogram<u64>>,
    errors: SharedTally,
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    global: &Global,
    options: &Options,
) -> Result<Summary> {
    if options.rate == 0 {
        bail!("--rate must be positive");
    }
    let clients = global.clients.unwrap_or(DEFAULT_CLIENTS).max(1);
    let duration = global.duration_or(10.0);
    let warmup = Duration::from_secs_f64(options.warmup.max(0.0));

    let senders = target.register("s", clients.min(MAX_ACCOUNTS)).await?;
    let receivers = target.register("r", options.receivers.max(1)).await?;
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
        bail!("sender connections failed: {:?}", opened.errors.0);
    }
    let mut sessions = opened.sessions;
    sessions.sort_by_key(|session| session.index);
    let conversations = setup::create_conversations(&sessions, &receivers).await?;
    let progress = Progress::new(target.bar(receivers.len() as u64, "connecting receivers"));
    let listening = target
        .open(
            &receivers,
            Plan::resume(receivers.len(), CONNECT_CONCURRENCY).with_sync(),
            &progress,
        )
        .await?;
    progress.finish();
    if listening.errors.total() > 0 {
        bail!("receiver connections failed: {:?}", listening.errors.0);
    }

    let to_secs = |d: Duration| d.as_secs_f64();
    let schedule = Arc::new(Schedule {
        // A little time to spawn the senders before the first message is due.
        t0: Instant::now() + Duration::from_millis(100),
        rate: options.rate,
        first_measured: (to_secs(warmup) * options.rate as f64).round() as u64,
        total: (to_secs(warmup + duration) * options.rate as f64).round() as u64,
    });
    let tally = Arc::new(Tally {
        issued: AtomicU64::new(0),
        outstanding: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        received: AtomicU64::new(0),
        ack_latency: Mutex::new(report::histogram()),
        latency: Mutex::new(report::histogram()),
        service: Mutex::new(report::histogram()),
        issue_lag: Mutex::new(report::histogram()),
        errors: SharedTally::default(),
    });

    let mut readers = JoinSet::new();
    let mut listening_sessions = listening.sessions;
    for session in &mut listening_sessions {
        if let Some(events) = session.events.take() {
            readers.spawn(receive(events, schedule.clone(), tally.clone()));
        }
    }
    let senders: Vec<Sender> = conversations
        .into_iter()
        .enumerate()
        .map(|(j, (client, conversation))| Sender {
            pipeline: options.pipelined.then(|| client.pipeline()),
            client,
            conversation,
            ids: format!("{}-{j}-", target.run),
        })
        .collect();
    let (runtime, size) = (tokio::runtime::Handle::current(), options.size);
    let (for_scheduler, for_tally) = (schedule.clone(), tally.clone());
    let mut scheduler = tokio::task::spawn_blocking(move || {
        send_on_schedule(runtime, senders, size, for_scheduler, for_tally);
    });

    let bar = target.bar(schedule.total, "messages sent");
    let mut cpu = None;
    let measure_from = schedule.at(schedule.first_measured);
    loop {
        let mut wake = Instant::now() + Duration::from_millis(200);
        if cpu.is_none() {
            wake = wake.min(measure_from);
        }
        tokio::select! {
            done = &mut scheduler => {
                done?;
                break;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if cpu.is_none() && Instant::now() >= measure_from {
            cpu = Some(CpuMeter::start(global.server_pid));
        }
        bar.set_position(tally.issued.load(Ordering::Relaxed));
    }
    let schedule_end = Instant::now();
    let cpu = cpu
        .unwrap_or_else(|| CpuMeter::start(global.server_pid))
        .stop();
    bar.set_message("draining");
    // Every send answered, then every acknowledged message received.
    let drain_until = Instant::now() + Duration::from_secs_f64(options.drain.max(0.0));
    while Instant::now() < drain_until
        && (tally.outstanding.load(Ordering::Acquire) > 0
            || tally.received.load(Ordering::Acquire) < tally.acked.load(Ordering::Acquire))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bar.finish_and_clear();
    readers.abort_all();
    while readers.join_next().await.is_some() {}

    let issued = tally.issued.load(Ordering::Acquire);
    let unanswered = tally.outstanding.load(Ordering::Acquire);
    let acked = tally.acked.load(Ordering::Acquire);
    let received = tally.received.load(Ordering::Acquire);
    let offered = issued as f64 / (schedule_end - schedule.t0).as_secs_f64().max(f64::EPSILON);
    let latency = lock(&tally.latency).clone();
    let ack_latency = lock(&tally.ack_latency).clone();
    let issue_lag = lock(&tally.issue_lag).clone();
    let service = lock(&tally.service).clone();
    let errors = report::snapshot(&tally.errors);

    let mut summary = Summary::new("latency", &target.server, &target.run);
    summary.section("setup");
    summary.count("rate", "scheduled rate (msg/s)", options.rate);
    summary.count("connections", "sending connections", clients as u64);
    summary.count("receivers", "receiving connections", receivers.len() as u64);
    summary.field(
        "pipelined",
        "one pipelined stream / conn",
        options.pipelined,
        options.pipelined.to_string(),
    );
    summary.count("message_bytes", "message text bytes", options.size as u64);
    summary.count("endpoints", "UDP endpoints", target.endpoint_count() as u64);
    summary.duration("warmup", "warm-up", warmup);
    summary.duration("duration", "measured", duration);
    summary.section("results");
    summary.rate("offered", "achieved send rate", offered, "msg/s");
    summary.latency("end_to_end", "end to end (schedule → event)", &latency);
    summary.latency("issue_to_event", "issue → event", &service);
    summary.latency("send_to_sent", "schedule → Sent", &ack_latency);
    summary.latency(
        "issue_lag",
        "bench timer lag (schedule → issue)",
        &issue_lag,
    );
    summary.count("acked", "measured messages acked", acked);
    summary.count("received", "measured messages received", received);
    summary.count("unanswered", "sends unanswered after draining", unanswered);
    cpu.report(
        &mut summary,
        schedule.total - schedule.first_measured,
        "msg",
    );
    summary.count("errors", "failed sends", errors.total());
    summary.errors("error_kinds", &errors);
    summary.section("targets");
    let p99 = Duration::from_micros(latency.value_at_quantile(0.99));
    if options.rate >= TARGET_RATE {
        summary.target(
            "latency_p99",
            "p99 ≤ 5 ms at 10,000 msg/s",
            !latency.is_empty() && p99 <= TARGET_P99,
        );
    } else {
        summary.target_not_applicable(
            "latency_p99",
            "p99 ≤ 5 ms at 10,000 msg/s",
            "needs --rate 10000",
        );
    }
    if received < acked {
        summary.fail(format!(
            "{} acknowledged messages never reached their receiver",
            acked - received
        ));
    }
    if acked == 0 {
        summary.fail("no message was acknowledged");
    }
    if unanswered > 0 {
        summary.fail(format!("{unanswered} sends were never answered"));
    }
    if errors.total() > 0 {
        summary.fail(format!("{} sends failed", errors.total()));
    }

    setup::close_all(sessions).await;
    setup::close_all(listening_sessions).await;
    Ok(summary)
}

/// One sending connection and its conversation.
struct Sender {
    client: Client,
    /// The connection's pipelined stream, or `None` for a stream per message.
    pipeline: Option<Pipeline>,
    conversation: String,
    /// Prefix of its `client_msg_id`s.
    ids: String,
}

/// Issues each message when it is due, on connection `k mod N`, without
/// waiting for earlier answers (each connection's stream limit still caps
/// what is in flight). A thread of its own keeps the schedule: the runtime's
/// timer has a resolution of one millisecond, which would add up to a
/// millisecond of the bench's own lateness to every message; a thread
/// sleeping to each due time wakes within tens of microseconds.
fn send_on_schedule(
    runtime: tokio::runtime::Handle,
    senders: Vec<Sender>,
    size: usize,
    schedule: Arc<Schedule>,
    tally: Arc<Tally>,
) {
    let mut k = 0;
    while k < schedule.total {
        let due = schedule.at(k);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let now = Instant::now();
        let issued_at = now.duration_since(schedule.t0).as_nanos();
        while k < schedule.total && schedule.at(k) <= now {
            let lag = now - schedule.at(k);
            if k >= schedule.first_measured {
                report::record(&mut lock(&tally.issue_lag), lag);
            }
            if lag > Duration::from_millis(20) {
                tracing::debug!(k, lag_ms = lag.as_millis(), "the bench issued a send late");
            }
            tally.issued.fetch_add(1, Ordering::Relaxed);
            tally.outstanding.fetch_add(1, Ordering::AcqRel);
            let sender = &senders[(k % senders.len() as u64) as usize];
            runtime.spawn(send_one(
                Via {
                    client: sender.client.clone(),
                    pipeline: sender.pipeline.clone(),
                },
                sender.conversation.clone(),
                format!("{}{k}", sender.ids),
                // The receiver reads both times back from the text.
                setup::text_body(&format!("{k}:{issued_at}:"), size),
                k,
                schedule.clone(),
                tally.clone(),
            ));
            k += 1;
        }
    }
}

/// How one message is sent: on the pipeline if there is one.
struct Via {
    client: Client,
    pipeline: Option<Pipeline>,
}

async fn send_one(
    via: Via,
    conversation: String,
    id: String,
    body: kanal_client::pb::Body,
    k: u64,
    schedule: Arc<Schedule>,
    tally: Arc<Tally>,
) {
    let sent = match &via.pipeline {
        Some(pipeline) => pipeline.send(&conversation, &id, body).await,
        None => via.client.send(&conversation, &id, body).await,
    };
    match sent {
        Ok(_) if k >= schedule.first_measured => {
            report::record(&mut lock(&tally.ack_latency), schedule.at(k).elapsed());
            tally.acked.fetch_add(1, Ordering::AcqRel);
        }
        Ok(_) => {}
        Err(error) => report::count_error(&tally.errors, &error),
    }
    tally.outstanding.fetch_sub(1, Ordering::AcqRel);
}

/// Reads a receiver's event stream and records each measured message's
/// latency from its scheduled send time.
async fn receive(mut events: Events, schedule: Arc<Schedule>, tally: Arc<Tally>) {
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
        if k < schedule.first_measured {
            continue;
        }
        let issued = schedule.t0 + Duration::from_nanos(issued_ns);
        // Uncontended locks per message are cheap next to decoding it.
        report::record(
            &mut lock(&tally.latency),
            now.saturating_duration_since(schedule.at(k)),
        );
        report::record(
            &mut lock(&tally.service),
            now.saturating_duration_since(issued),
        );
        tally.received.fetch_add(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
