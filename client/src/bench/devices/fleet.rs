//! `devices`: N device sessions of the real firmware, opened at a steady
//! rate, each opening a conversation and then polling its mailbox every
//! `--poll-every` seconds, for `--duration` seconds once all are open.
//!
//! Reported: first contact (from queueing the open to the `Opened` answer,
//! retransmissions included), opens per second, the server's resident
//! memory per live session (before the first open, after the last, with
//! `--server-pid`), and its CPU per open and per answered poll.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use hdrhistogram::Histogram;
use kanal_firmware::adapters::udp::StdClock;
use kanal_firmware::profile::limits::MAX_DATAGRAM;
use kanal_firmware::profile::wire::{self, Datagram};
use kanal_firmware::{DeviceConfig, DeviceSession, Diagnostic, Event, Instant};
use rand_core::OsRng;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{PER_ADDRESS, parse_key, secret, source};
use crate::bench::global::Global;
use crate::bench::procfs::{CpuMeter, own_rss_kib, rss_kib};
use crate::bench::report::{self, Progress, Summary};

/// Outbox capacity of a simulated device: an open, an append and a poll.
const OUTBOX: usize = 3;

/// The design's budget of server memory per device session, in KiB.
const TARGET_KIB: f64 = 2.0;

/// Time for the server's memory to settle before a reading.
const SETTLE: Duration = Duration::from_secs(2);

/// Options of `devices`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// Device sessions to open (devices FIRST..FIRST+N of the fleet)
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    /// The fleet's first device this run uses: runs against one server
    /// take distinct ranges, so each opens conversations that are new
    #[arg(long, default_value_t = 0)]
    pub(crate) first: usize,
    /// Seed of the fleet's keys, as given to `device-keys`
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// The gateway's UDP address
    #[arg(long, default_value = "127.0.0.1:7448")]
    pub(crate) gateway: SocketAddr,
    /// The gateway's public key, as `kanald device server-key` prints it
    #[arg(long, env = "KANAL_DEVICE_KEY")]
    pub(crate) server_key: String,
    /// Opens started per second
    #[arg(long, default_value_t = 500.0)]
    pub(crate) rate: f64,
    /// Seconds between a device's mailbox polls once it is open
    #[arg(long, default_value_t = 10.0)]
    pub(crate) poll_every: f64,
    /// Seconds to wait for the last open after it was started
    #[arg(long, default_value_t = 60.0)]
    pub(crate) patience: f64,
}

/// What the devices counted, together.
#[derive(Debug, Default)]
struct Counts {
    opened: AtomicU64,
    refused: AtomicU64,
    polls: AtomicU64,
    polls_answered: AtomicU64,
    mail: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    sent_bytes: AtomicU64,
    received_bytes: AtomicU64,
    dropped: AtomicU64,
}

/// One simulated device.
struct Device {
    session: DeviceSession<OsRng, OUTBOX>,
    /// When it starts, on the fleet's clock.
    opens_at: Instant,
    /// Its open's id, once queued, and when it was queued.
    open: Option<(u32, std::time::Instant)>,
    opened: bool,
    /// The poll waiting for its answer.
    poll: Option<u32>,
    next_poll: Instant,
}

/// Runs the scenario.
pub(crate) async fn run(global: &Global, options: &Options) -> Result<Summary> {
    let server_key = parse_key(&options.server_key)?;
    let hold = global.duration_or(10.0);
    let pid = global.server_pid;
    if let Some(pid) = pid {
        rss_kib(pid).with_context(|| format!("reading the memory of server process {pid}"))?;
    }
    let count = options.count.max(1);
    let rate = options.rate.max(1.0);
    let poll_every = Duration::from_secs_f64(options.poll_every.max(0.1));

    // The sessions are made (an X25519 each) before anything is measured.
    let clock = StdClock::new();
    let start = Duration::from_millis(500);
    let mut groups: Vec<Vec<Device>> = Vec::new();
    for i in 0..count {
        let config = DeviceConfig::new(secret(options.seed, options.first + i), server_key);
        let offset = start + Duration::from_secs_f64(i as f64 / rate);
        let device = Device {
            session: DeviceSession::new(config, OsRng),
            opens_at: Instant(offset.as_millis() as u64),
            open: None,
            opened: false,
            poll: None,
            next_poll: Instant(u64::MAX),
        };
        if i % PER_ADDRESS == 0 {
            groups.push(Vec::with_capacity(PER_ADDRESS));
        }
        groups.last_mut().expect("a group").push(device);
    }
    tokio::time::sleep(SETTLE).await;
    let server_before = pid.and_then(rss_kib);
    let bench_before = own_rss_kib();

    let counts = Arc::new(Counts::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let open_cpu = CpuMeter::start(pid);
    let open_started = std::time::Instant::now();
    for (n, devices) in groups.into_iter().enumerate() {
        let socket = UdpSocket::bind(source(3, n))
            .await
            .with_context(|| format!("binding {}", source(3, n)))?;
        tasks.spawn(group(
            socket,
            options.gateway,
            devices,
            clock,
            poll_every,
            counts.clone(),
            stop_rx.clone(),
        ));
    }

    // Until every device is open or refused, or patience runs out.
    let progress = Progress::new(report::bar(
        !global.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        count as u64,
        "opening",
    ));
    let last_start = start + Duration::from_secs_f64(count as f64 / rate);
    let give_up = open_started + last_start + Duration::from_secs_f64(options.patience.max(1.0));
    let mut shown = 0;
    loop {
        let done = counts.opened.load(Ordering::Relaxed) + counts.refused.load(Ordering::Relaxed);
        for _ in shown..done {
            progress.inc_ok();
        }
        shown = done;
        if done >= count as u64 || std::time::Instant::now() >= give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_elapsed = open_started.elapsed();
    let open_bytes =
        counts.sent_bytes.load(Ordering::Relaxed) + counts.received_bytes.load(Ordering::Relaxed);
    let open_cpu = open_cpu.stop();
    progress.finish();
    let opened = counts.opened.load(Ordering::Relaxed);

    tokio::time::sleep(SETTLE).await;
    let server_after = pid.and_then(rss_kib);
    let bench_after = own_rss_kib();

    // Holding: every open device polls.
    let polls_before = counts.polls_answered.load(Ordering::Relaxed);
    let bytes_before =
        counts.sent_bytes.load(Ordering::Relaxed) + counts.received_bytes.load(Ordering::Relaxed);
    let hold_cpu = CpuMeter::start(pid);
    tokio::time::sleep(hold).await;
    let hold_cpu = hold_cpu.stop();
    let polls = counts.polls_answered.load(Ordering::Relaxed) - polls_before;
    let poll_bytes = counts.sent_bytes.load(Ordering::Relaxed)
        + counts.received_bytes.load(Ordering::Relaxed)
        - bytes_before;
    let _ = stop_tx.send(true);
    let mut first_contact = report::histogram();
    while let Some(joined) = tasks.join_next().await {
        let histogram = joined.context("a device group failed")??;
        report::merge(&mut first_contact, &histogram);
    }

    let mut summary = Summary::new("devices", &options.gateway.to_string(), "-");
    summary.section("setup");
    summary.count("count", "device sessions asked for", count as u64);
    summary.count("first", "first device", options.first as u64);
    summary.rate("open_rate", "opens started", rate, "open/s");
    summary.count(
        "addresses",
        "source addresses",
        count.div_ceil(PER_ADDRESS) as u64,
    );
    summary.duration("poll_every", "poll interval", poll_every);
    summary.section("opening");
    summary.count("opened", "conversations opened", opened);
    summary.count(
        "refused",
        "opens refused",
        counts.refused.load(Ordering::Relaxed),
    );
    summary.duration("open_elapsed", "wall-clock time", open_elapsed);
    summary.rate(
        "opens_per_second",
        "opens / s",
        opened as f64 / open_elapsed.as_secs_f64().max(f64::EPSILON),
        "open/s",
    );
    summary.latency("first_contact", "open → Opened", &first_contact);
    open_cpu.report_as(&mut summary, "open_", opened, "open");
    summary.count(
        "bytes_per_open",
        "UDP payload bytes per open, both ways, retransmissions included",
        open_bytes / opened.max(1),
    );
    summary.section("memory");
    if let (Some(before), Some(after)) = (server_before, server_after) {
        let per = after.saturating_sub(before) as f64 / opened.max(1) as f64;
        summary.kib("server_rss_before", "server RSS before", before as f64);
        summary.kib("server_rss_after", "server RSS, all open", after as f64);
        summary.kib("server_per_session", "server memory per session", per);
        summary.target(
            "session_memory",
            &format!("≤ {TARGET_KIB} KiB per session"),
            per <= TARGET_KIB,
        );
    } else {
        summary.target_not_applicable(
            "session_memory",
            &format!("≤ {TARGET_KIB} KiB per session"),
            "no --server-pid",
        );
    }
    if let (Some(before), Some(after)) = (bench_before, bench_after) {
        summary.kib(
            "bench_per_device",
            "bench memory per device",
            after.saturating_sub(before) as f64 / count as f64,
        );
    }
    summary.section("polling");
    summary.duration("hold", "held for", hold);
    summary.count("polls", "polls answered", polls);
    summary.rate(
        "polls_per_second",
        "polls / s",
        polls as f64 / hold.as_secs_f64().max(f64::EPSILON),
        "poll/s",
    );
    hold_cpu.report_as(&mut summary, "poll_", polls, "poll");
    summary.count(
        "bytes_per_poll",
        "UDP payload bytes per poll, both ways",
        poll_bytes / polls.max(1),
    );
    summary.section("datagrams");
    summary.count("sent", "sent", counts.sent.load(Ordering::Relaxed));
    summary.count(
        "received",
        "received",
        counts.received.load(Ordering::Relaxed),
    );
    summary.count(
        "dropped",
        "dropped by the devices",
        counts.dropped.load(Ordering::Relaxed),
    );
    summary.count("mail", "mail received", counts.mail.load(Ordering::Relaxed));
    if opened < count as u64 {
        summary.fail(format!(
            "{} of {count} devices did not open",
            count as u64 - opened
        ));
    }
    Ok(summary)
}

/// The devices behind one source address: their sessions, one socket,
/// datagrams matched to a device by the index it chose.
async fn group(
    socket: UdpSocket,
    gateway: SocketAddr,
    mut devices: Vec<Device>,
    clock: StdClock,
    poll_every: Duration,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> Result<Histogram<u64>> {
    let mut first_contact = report::histogram();
    let mut by_index: HashMap<u32, usize> = HashMap::new();
    let mut buf = [0u8; MAX_DATAGRAM];
    let poll_ms = poll_every.as_millis() as u64;
    loop {
        let now = clock.now();
        let mut wake = Instant(u64::MAX);
        for (n, device) in devices.iter_mut().enumerate() {
            if device.open.is_none() && now >= device.opens_at {
                let diagnostics = [Diagnostic {
                    key: "err",
                    value: "E42",
                }];
                let id = device
                    .session
                    .open(now, "filter", "Filter clogged", &diagnostics)?;
                device.open = Some((id, std::time::Instant::now()));
            }
            if device.opened && device.poll.is_none() && now >= device.next_poll {
                device.poll = Some(device.session.poll_mailbox(now)?);
                counts.polls.fetch_add(1, Ordering::Relaxed);
            }
            while let Some(len) = device.session.poll_transmit(now, &mut buf)? {
                if let Ok(Datagram::Initiation(init)) = wire::parse(&buf[..len]) {
                    by_index.insert(init.sender, n);
                }
                counts.sent.fetch_add(1, Ordering::Relaxed);
                counts.sent_bytes.fetch_add(len as u64, Ordering::Relaxed);
                // A full socket buffer loses the datagram, as a radio would.
                let _ = socket.send_to(&buf[..len], gateway).await;
            }
            if device.open.is_none() {
                wake = wake.min(device.opens_at);
            }
            if device.opened && device.poll.is_none() {
                wake = wake.min(device.next_poll);
            }
            if let Some(at) = device.session.poll_timeout() {
                wake = wake.min(at);
            }
        }
        let wait = clock.until(wake).min(Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, _)) = received else { continue };
                counts.received.fetch_add(1, Ordering::Relaxed);
                counts.received_bytes.fetch_add(len as u64, Ordering::Relaxed);
                let receiver = match wire::parse(&buf[..len]) {
                    Ok(Datagram::Response(r)) => r.receiver,
                    Ok(Datagram::Transport(t)) => t.receiver,
                    Ok(Datagram::CookieReply(c)) => c.receiver,
                    _ => {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let Some(&n) = by_index.get(&receiver) else {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let device = &mut devices[n];
                let now = clock.now();
                match device.session.handle_datagram(now, &buf[..len]) {
                    Ok(Some(Event::Opened { id, .. })) => {
                        if let Some((open, queued)) = device.open
                            && open == id
                            && !device.opened
                        {
                            device.opened = true;
                            report::record(&mut first_contact, queued.elapsed());
                            counts.opened.fetch_add(1, Ordering::Relaxed);
                            // Spread the polls over the interval.
                            let spread = (n as u64 * 7919) % poll_ms.max(1);
                            device.next_poll = Instant(now.0 + spread);
                        }
                    }
                    Ok(Some(Event::Accepted { ids })) => {
                        if let Some(poll) = device.poll
                            && ids.contains(&poll)
                        {
                            device.poll = None;
                            device.next_poll = Instant(now.0 + poll_ms);
                            counts.polls_answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Some(Event::Message(_))) => {
                        counts.mail.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Event::Refused { id, .. })) => {
                        if device.open.is_some_and(|(open, _)| open == id) {
                            counts.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        if device.poll == Some(id) {
                            device.poll = None;
                            device.next_poll = Instant(now.0 + poll_ms);
                        }
                    }
                    Ok(Some(Event::Renumbered { old, new })) => {
                        if let Some((open, queued)) = device.open
                            && open == old
                        {
                            device.open = Some((new, queued));
                        }
                        if device.poll == Some(old) {
                            device.poll = Some(new);
                        }
                    }
                    Ok(None) => {}
                    Err(_) => {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // A simulated device reads its mail at once.
                device.session.mark_read();
            }
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(first_contact),
        }
    }
}
