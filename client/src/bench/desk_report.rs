//! What a service-desk report costs (PROTOCOL.md §15.8): customers open
//! conversations with a desk inbox, an agent answers and resolves each,
//! and then the agent asks for the report of the period, several times.
//! Timed from the request to its answer; the server's CPU per report.
//!
//! The server must have the inbox's desk set up and the agent (`kanald
//! agent add … --password …`, `kanald inbox desk …`) before the run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use futures::StreamExt as _;
use kanal_client::{Client, Credentials, pb};

use crate::bench::global::Global;
use crate::bench::procfs::CpuMeter;
use crate::bench::report::{self, Progress, Summary};
use crate::bench::setup::{MAX_IN_FLIGHT, Target, text_body};

/// Options of `desk-report`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// The desk's inbox
    #[arg(long, default_value = "support@localhost")]
    pub(crate) inbox: String,
    /// An agent of the inbox, which answers, resolves and asks
    #[arg(long)]
    pub(crate) agent: String,
    /// The agent's password
    #[arg(long, env = "KANAL_BENCH_AGENT_PASSWORD")]
    pub(crate) agent_password: String,
    /// Customer accounts to register
    #[arg(long, default_value_t = 8)]
    pub(crate) customers: usize,
    /// Tickets to open, answer and resolve before the reports
    #[arg(long, default_value_t = 2_000)]
    pub(crate) tickets: usize,
    /// Requests in flight while preparing (at most 7)
    #[arg(long, default_value_t = 7)]
    pub(crate) in_flight: usize,
    /// Reports to ask for
    #[arg(long, default_value_t = 5)]
    pub(crate) reports: usize,
}

/// Runs the scenario.
pub(crate) async fn run(
    target: &Arc<Target>,
    global: &Global,
    options: &Options,
) -> Result<Summary> {
    if options.in_flight == 0 || options.in_flight > MAX_IN_FLIGHT {
        bail!("--in-flight must be between 1 and {MAX_IN_FLIGHT}");
    }
    if options.customers == 0 || options.tickets == 0 || options.reports == 0 {
        bail!("--customers, --tickets and --reports must be at least 1");
    }
    let from_ms = now_ms() - 1;
    let accounts = target.register("c", options.customers).await?;
    let mut customers = Vec::with_capacity(accounts.len());
    for (i, account) in accounts.iter().enumerate() {
        customers.push(target.resume(i, account).await?);
    }
    let agent = Client::connect(
        target.config(options.customers)?,
        Credentials::Password {
            address: options.agent.clone(),
            password: options.agent_password.clone(),
        },
    )
    .await
    .context("logging the agent in")?;

    // Each ticket: the customer opens it, the agent answers and resolves.
    let progress = Progress::new(target.bar(options.tickets as u64, "tickets"));
    let prepared = Instant::now();
    let body = text_body("answer ", 64);
    let mut tickets = futures::stream::iter(0..options.tickets)
        .map(|i| {
            let customer = customers[i % customers.len()].clone();
            let agent = agent.clone();
            let inbox = options.inbox.clone();
            let body = body.clone();
            let id = format!("{}-answer-{i}", target.run);
            async move {
                let conversation = customer
                    .create_conversation(&[inbox.as_str()], "bench ticket")
                    .await?;
                agent.send(&conversation.id, &id, body).await?;
                agent
                    .set_status(&conversation.id, pb::TicketStatus::Resolved)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(options.in_flight);
    while let Some(done) = tickets.next().await {
        done.context("opening, answering and resolving a ticket")?;
        progress.inc_ok();
    }
    drop(tickets);
    progress.finish();
    let prepare_time = prepared.elapsed();

    let mut latency = report::histogram();
    let mut resolved = 0;
    let cpu = CpuMeter::start(global.server_pid);
    for _ in 0..options.reports {
        let asked = Instant::now();
        let answer = agent
            .report(&options.inbox, from_ms, 0)
            .await
            .context("asking for the report")?;
        report::record(&mut latency, asked.elapsed());
        let figures = answer
            .inboxes
            .first()
            .and_then(|i| i.figures.clone())
            .unwrap_or_default();
        resolved = u64::from(figures.resolved);
    }
    let cpu = cpu.stop();

    let mut summary = Summary::new("desk-report", &target.server, &target.run);
    summary.section("setup");
    summary.count(
        "tickets",
        "tickets opened, answered and resolved",
        options.tickets as u64,
    );
    summary.duration("prepare", "time to make them", prepare_time);
    summary.section("results");
    summary.count("resolved", "resolutions the report counts", resolved);
    summary.latency("report_latency", "request → report", &latency);
    cpu.report(&mut summary, options.reports as u64, "report");
    if resolved < options.tickets as u64 {
        summary.fail(format!(
            "the report counts {resolved} resolutions of {} made",
            options.tickets
        ));
    }
    Ok(summary)
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
