//! `kanal desk report`: the desk's figures over a period (PROTOCOL.md
//! §15.8): per inbox and per agent, the tickets opened, assigned and
//! resolved, response and resolution times, SLA hits and CSAT, and the
//! backlog now; as a table, or one JSON object per inbox.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::commands::{print_json, print_line};
use super::output::{scale_name, timestamp};
use crate::{Client, pb};

/// `kanal desk report`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Only this inbox (`local@domain`; default: every inbox with a desk
    /// you answer for)
    #[arg(long)]
    inbox: Option<String>,
    /// The period's start: a time (2026-12-01T00:00Z), a day
    /// (2026-12-01, from midnight UTC) or a span back from now (7d, 24h)
    #[arg(long, default_value = "7d")]
    from: String,
    /// The period's end, likewise (default: now)
    #[arg(long)]
    to: Option<String>,
    /// One JSON object per inbox
    #[arg(long)]
    json: bool,
}

/// Asks for the report and prints it.
pub(crate) async fn run(client: &Client, args: ReportArgs) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let from_ms = instant(&args.from, now, "--from")?;
    let to_ms = match &args.to {
        Some(to) => instant(to, now, "--to")?,
        None => 0,
    };
    let report = client
        .report(args.inbox.as_deref().unwrap_or_default(), from_ms, to_ms)
        .await
        .context("reading the desk's report")?;
    for inbox in &report.inboxes {
        if args.json {
            print_json(&inbox_json(&report, inbox))?;
        } else {
            print_inbox(&report, inbox)?;
        }
    }
    Ok(())
}

/// A time the user named, in Unix milliseconds: a timestamp, a day (its
/// midnight in UTC) or a span back from `now`.
fn instant(text: &str, now: jiff::Timestamp, flag: &str) -> anyhow::Result<i64> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at.as_millisecond());
    }
    if let Ok(day) = text.parse::<jiff::civil::Date>() {
        let midnight = day
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .with_context(|| format!("{flag} {text:?} is out of range"))?;
        return Ok(midnight.timestamp().as_millisecond());
    }
    let span: jiff::Span = text.parse().with_context(|| {
        format!("{flag} {text:?} is neither a time (2026-12-01T09:00Z), a day (2026-12-01) nor a span back from now (7d, 24h)")
    })?;
    let at = now
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .checked_sub(span.abs())
        .with_context(|| format!("{flag} {text:?} is too far back"))?
        .timestamp();
    if at > now {
        bail!("{flag} {text:?} lies ahead");
    }
    Ok(at.as_millisecond())
}

fn print_inbox(report: &pb::Report, inbox: &pb::InboxReport) -> anyhow::Result<()> {
    print_line(&format!(
        "{}, {} to {}{}",
        inbox.inbox,
        timestamp(report.from_ms),
        timestamp(report.to_ms),
        if inbox.complete {
            ""
        } else {
            " (too many entries: the figures cover the period's start)"
        }
    ))?;
    print_line(&format!(
        "  {:<28} {:>6} {:>8} {:>8} {:>5}  {:<17} {:<17} {:<13} {}",
        "",
        "opened",
        "assigned",
        "resolved",
        "owned",
        "first response",
        "resolution",
        "SLA in time",
        "CSAT satisfied"
    ))?;
    let figures = inbox.figures.clone().unwrap_or_default();
    let backlog = inbox.backlog.unwrap_or_default();
    let owned = inbox.agents.iter().map(|a| a.owned).sum();
    print_line(&row("inbox", &figures, Some(figures.opened), owned))?;
    for agent in &inbox.agents {
        let figures = agent.figures.clone().unwrap_or_default();
        print_line(&row(&agent.agent, &figures, None, agent.owned))?;
    }
    let waiting = match backlog.waiting {
        0 => "nobody waits".to_owned(),
        n => format!(
            "{n} waiting for an answer, the longest since {}",
            timestamp(backlog.oldest_waiting_since_ms)
        ),
    };
    print_line(&format!(
        "  backlog now: {} open ({} unowned), {} pending, {} snoozed; {waiting}",
        backlog.open, backlog.unowned, backlog.pending, backlog.snoozed
    ))?;
    for sla in &figures.sla {
        print_line(&format!(
            "  SLA {} ({}): {} in time, {} late, {} breaches",
            target_name(sla.target),
            duration(sla.target_ms),
            sla.in_time,
            sla.late,
            sla.breaches
        ))?;
    }
    for csat in &figures.csat {
        print_line(&format!(
            "  CSAT {}: {} rated, {} satisfied, {} dissatisfied, scores {:?}",
            scale_name(csat.scale),
            csat.ratings,
            csat.satisfied,
            csat.dissatisfied,
            csat.scores
        ))?;
    }
    Ok(())
}

/// One line of the table: `opened` only for the inbox.
fn row(who: &str, figures: &pb::DeskFigures, opened: Option<u32>, owned: u32) -> String {
    let times = |d: &Option<pb::Durations>| -> String {
        match d {
            Some(d) if d.count > 0 && d.median_ms > 0 => {
                format!(
                    "{} / {} ({})",
                    duration(d.median_ms),
                    duration(d.p90_ms),
                    d.count
                )
            }
            Some(d) if d.count > 0 => format!("({})", d.count),
            _ => "-".to_owned(),
        }
    };
    let (in_time, met) = figures
        .sla
        .iter()
        .fold((0, 0), |(t, m), s| (t + s.in_time, m + s.in_time + s.late));
    let (satisfied, rated) = figures
        .csat
        .iter()
        .fold((0, 0), |(s, r), c| (s + c.satisfied, r + c.ratings));
    format!(
        "  {who:<28} {:>6} {:>8} {:>8} {owned:>5}  {:<17} {:<17} {:<13} {}",
        opened.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        figures.assigned,
        figures.resolved,
        times(&figures.first_response),
        times(&figures.resolution),
        share(in_time, met),
        share(satisfied, rated),
    )
}

/// "90% of 20", or "-" of none.
fn share(part: u32, whole: u32) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    format!("{}% of {whole}", u64::from(part) * 100 / u64::from(whole))
}

/// A duration for people: 45s, 4m10s, 2h03m, 1d02h.
fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn target_name(target: i32) -> &'static str {
    match pb::SlaTarget::try_from(target) {
        Ok(pb::SlaTarget::FirstResponse) => "first response",
        Ok(pb::SlaTarget::NextResponse) => "next response",
        Ok(pb::SlaTarget::Resolution) => "resolution",
        _ => "unknown target",
    }
}

fn inbox_json(report: &pb::Report, inbox: &pb::InboxReport) -> Value {
    json!({
        "type": "report",
        "inbox": inbox.inbox,
        "from_ms": report.from_ms,
        "to_ms": report.to_ms,
        "complete": inbox.complete,
        "figures": figures_json(&inbox.figures.clone().unwrap_or_default()),
        "agents": inbox.agents.iter().map(|a| json!({
            "agent": a.agent,
            "owned": a.owned,
            "figures": figures_json(&a.figures.clone().unwrap_or_default()),
        })).collect::<Vec<_>>(),
        "backlog": inbox.backlog.map(|b| json!({
            "open": b.open,
            "pending": b.pending,
            "snoozed": b.snoozed,
            "unowned": b.unowned,
            "waiting": b.waiting,
            "oldest_waiting_since_ms": b.oldest_waiting_since_ms,
        })),
    })
}

fn figures_json(figures: &pb::DeskFigures) -> Value {
    let durations = |d: &Option<pb::Durations>| {
        let d = d.unwrap_or_default();
        json!({
            "count": d.count,
            "median_ms": d.median_ms,
            "p90_ms": d.p90_ms,
            "mean_ms": d.mean_ms,
            "business_median_ms": d.business_median_ms,
            "business_p90_ms": d.business_p90_ms,
            "business_mean_ms": d.business_mean_ms,
        })
    };
    json!({
        "opened": figures.opened,
        "assigned": figures.assigned,
        "resolved": figures.resolved,
        "first_response": durations(&figures.first_response),
        "next_response": durations(&figures.next_response),
        "resolution": durations(&figures.resolution),
        "sla": figures.sla.iter().map(|s| json!({
            "target": target_name(s.target),
            "target_ms": s.target_ms,
            "in_time": s.in_time,
            "late": s.late,
            "breaches": s.breaches,
        })).collect::<Vec<_>>(),
        "csat": figures.csat.iter().map(|c| json!({
            "scale": scale_name(c.scale),
            "ratings": c.ratings,
            "scores": c.scores,
            "satisfied": c.satisfied,
            "dissatisfied": c.dissatisfied,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_for_people() {
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(250_000), "4m10s");
        assert_eq!(duration(2 * 3_600_000 + 180_000), "2h03m");
        assert_eq!(duration(26 * 3_600_000), "1d02h");
    }

    #[test]
    fn a_period_starts_at_a_time_a_day_or_a_span_back() {
        let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().expect("now");
        let ms = |text: &str| instant(text, now, "--from");
        let day: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().expect("day");
        assert_eq!(ms("2026-12-01").expect("day"), day.as_millisecond());
        assert_eq!(ms("2026-12-01T00:00Z").expect("time"), day.as_millisecond());
        assert_eq!(
            ms("7d").expect("span"),
            now.as_millisecond() - 7 * 86_400_000
        );
        assert_eq!(ms("24h").expect("span"), now.as_millisecond() - 86_400_000);
        let wrong = ms("last week").expect_err("not a time");
        assert!(
            wrong.to_string().contains("--from \"last week\""),
            "{wrong}"
        );
    }
}
