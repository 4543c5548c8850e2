//! Reconnect and resynchronise: a receiver misses N events while offline,
//! then comes back. Timed from dialing (Resume) through Sync until
//! SyncComplete, and checked: exactly the N missed events, consecutive, each
//! the next message of the conversation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use futures::StreamExt as _;
use kanal_client::{ClientEvent, pb};

use crate::bench::global::Global;
use crate::bench::report::{self, Progress, Summary};
use crate::bench::setup::{self, MAX_IN_FLIGHT, Target};

/// The design's bound on a full resynchronisation of 10,000 events.
const TARGET: Duration = Duration::from_secs(1);

/// Longest wait for one event during a round.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `sync`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// Events the receiver misses while offline
    #[arg(long, default_value_t = 10_000)]
    pub(crate) events: u64,
    /// How many times to reconnect and resynchronise (from the same point)
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Send requests in flight while preparing (at most 7)
    #[arg(long, default_value_t = 7)]
    pub(crate) in_flight: usize,
}

/// One timed resynchronisation.
#[derive(Debug)]
struct Round {
    /// Dial → Welcome.
    connect: Duration,
    /// Dial → first event.
    first_event: Duration,
    /// Dial → SyncComplete.
    total: Duration,
    /// Events received before SyncComplete.
    events: u64,
    /// What was wrong with them, if anything.
    problem: Option<String>,
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    _global: &Global,
    options: &Options,
) -> Result<Summary> {
    if options.in_flight == 0 || options.in_flight > MAX_IN_FLIGHT {
        bail!("--in-flight must be between 1 and {MAX_IN_FLIGHT}");
    }
    let sender_account = target.register("s", 1).await?.remove(0);
    let receiver_account = target.register("r", 1).await?.remove(0);
    let sender = target.resume(0, &sender_account).await?;
    let conversation = sender
        .create_conversation(&[receiver_account.address.as_str()], "bench sync")
        .await
        .context("creating the conversation")?;

    // Where the receiver stands before it goes offline.
    let receiver = target.resume(1, &receiver_account).await?;
    let mut events = receiver.subscribe(0).await?;
    let since = setup::wait_sync_complete(&mut events).await?;
    drop(events);
    receiver.close().await;

    // The receiver is offline: the sender writes N messages.
    let progress = Progress::new(target.bar(options.events, "sending (offline)"));
    let prepared = Instant::now();
    let body = setup::text_body("", 64);
    let mut sends = futures::stream::iter(0..options.events)
        .map(|i| {
            let sender = sender.clone();
            let id = format!("{}-sync-{i}", target.run);
            let body = body.clone();
            let conversation = conversation.id.clone();
            async move { sender.send(&conversation, &id, body).await }
        })
        .buffer_unordered(options.in_flight);
    while let Some(sent) = sends.next().await {
        sent.context("sending while the receiver is offline")?;
        progress.inc_ok();
    }
    progress.finish();
    let prepare_time = prepared.elapsed();
    sender.close().await;

    let mut rounds = Vec::with_capacity(options.rounds);
    for round in 0..options.rounds.max(1) {
        let bar = target.bar(options.events, &format!("resync round {}", round + 1));
        let result = resync(
            target,
            round + 2,
            &receiver_account,
            since,
            options.events,
            &conversation.id,
            &bar,
        )
        .await?;
        bar.finish_and_clear();
        rounds.push(result);
    }

    let mut summary = Summary::new("sync", &target.server, &target.run);
    summary.section("setup");
    summary.count("events", "events missed while offline", options.events);
    summary.count("since", "receiver's seq before going offline", since);
    summary.duration("prepare", "time to send them", prepare_time);
    summary.rate(
        "prepare_rate",
        "prepare rate",
        options.events as f64 / prepare_time.as_secs_f64().max(f64::EPSILON),
        "msg/s",
    );
    summary.section("results");
    for (i, round) in rounds.iter().enumerate() {
        let n = i + 1;
        summary.duration(
            &format!("round{n}_connect"),
            &format!("round {n}: dial → Welcome"),
            round.connect,
        );
        summary.duration(
            &format!("round{n}_first_event"),
            &format!("round {n}: dial → first event"),
            round.first_event,
        );
        summary.duration(
            &format!("round{n}_total"),
            &format!("round {n}: dial → SyncComplete"),
            round.total,
        );
        summary.rate(
            &format!("round{n}_rate"),
            &format!("round {n}: replay rate"),
            round.events as f64 / round.total.as_secs_f64().max(f64::EPSILON),
            "events/s",
        );
        if let Some(problem) = &round.problem {
            summary.fail(format!("round {n}: {problem}"));
        }
    }
    let mut totals: Vec<Duration> = rounds.iter().map(|r| r.total).collect();
    totals.sort();
    let worst = totals.last().copied().unwrap_or_default();
    summary.duration("best_total", "best dial → SyncComplete", totals[0]);
    summary.duration("worst_total", "worst dial → SyncComplete", worst);
    summary.section("targets");
    if options.events >= 10_000 {
        summary.target(
            "resync",
            "10,000 missed events resynced in < 1 s (every round)",
            worst < TARGET,
        );
    } else {
        summary.target_not_applicable(
            "resync",
            "10,000 missed events resynced in < 1 s (every round)",
            "needs --events 10000",
        );
    }
    Ok(summary)
}

/// Reconnects as the receiver, syncs from `since`, and checks what arrives.
async fn resync(
    target: &Target,
    index: usize,
    account: &setup::Account,
    since: u64,
    expected: u64,
    conversation: &str,
    bar: &indicatif::ProgressBar,
) -> Result<Round> {
    let started = Instant::now();
    let client = target.resume(index, account).await?;
    let connect = started.elapsed();
    let mut events = client.subscribe(since).await?;
    let mut first_event = None;
    let mut count = 0u64;
    let mut problem = None;
    let head = loop {
        let event = tokio::time::timeout(EVENT_TIMEOUT, events.next())
            .await
            .context("waiting for the replay")?
            .context("the event stream ended")?;
        match &event {
            ClientEvent::SyncComplete { head } => break *head,
            ClientEvent::Event(pb::Event { seq, .. }) => {
                first_event.get_or_insert_with(|| started.elapsed());
                count += 1;
                if count.is_multiple_of(1024) {
                    bar.set_position(count);
                }
                if problem.is_none() {
                    problem = check(&event, since + count, count, conversation).err();
                    if let Some(p) = &mut problem {
                        p.push_str(&format!(" (event seq {seq})"));
                    }
                }
            }
            _ => {}
        }
    };
    let total = started.elapsed();
    client.close().await;
    if problem.is_none() && count != expected {
        problem = Some(format!("{count} events arrived, expected {expected}"));
    }
    if problem.is_none() && head != since + expected {
        problem = Some(format!(
            "SyncComplete head {head}, expected {}",
            since + expected
        ));
    }
    tracing::debug!(round = index, total = %report::millis(total.as_micros() as u64), "resynced");
    Ok(Round {
        connect,
        first_event: first_event.unwrap_or(total),
        total,
        events: count,
        problem,
    })
}

/// The `n`th replayed event must be account seq `seq`, carrying message `n`
/// of `conversation`.
fn check(event: &ClientEvent, seq: u64, n: u64, conversation: &str) -> Result<(), String> {
    let ClientEvent::Event(inner) = event else {
        return Err("not an event".into());
    };
    if inner.seq != seq {
        return Err(format!("expected event seq {seq}, got {}", inner.seq));
    }
    let message = setup::message_of(event).ok_or("an event that is not a message")?;
    if message.conversation != conversation {
        return Err(format!(
            "a message of another conversation ({})",
            message.conversation
        ));
    }
    if message.seq != n {
        return Err(format!("expected message {n}, got message {}", message.seq));
    }
    Ok(())
}
