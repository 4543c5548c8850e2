//! The SLA clock in business hours: across a weekend and a holiday, paused
//! while pending, stopped on resolve.

use jiff::ZonedDateTime;

use super::*;

const HOUR: i64 = 3_600_000;

/// Weekdays 09:00–17:00 in Berlin; 2026-12-24 and 25 closed.
fn office() -> BusinessHours {
    "mon-fri 09:00-17:00; zone Europe/Berlin; holidays 2026-12-24,2026-12-25"
        .parse()
        .expect("hours")
}

fn at(local: &str) -> i64 {
    let zoned: ZonedDateTime = format!("{local}[Europe/Berlin]").parse().expect("instant");
    zoned.timestamp().as_millisecond()
}

fn policy() -> SlaPolicy {
    SlaPolicy {
        first_response_ms: Some(4 * HOUR),
        next_response_ms: Some(2 * HOUR),
        resolution_ms: Some(16 * HOUR),
        warn_before_ms: HOUR,
        escalation: Escalation::default(),
    }
}

/// Every event due by `now`.
fn tick(clock: &mut SlaClock, now: i64) -> Vec<SlaEvent> {
    let mut out = Vec::new();
    clock.handle_timeout(now, &policy(), &office(), &mut out);
    out
}

#[test]
fn a_friday_afternoon_message_is_due_on_monday_with_its_warning_first() {
    let hours = office();
    let mut clock = SlaClock::default();
    clock.opened(at("2026-01-09T15:00"));
    // Two business hours on Friday, one on Monday: warned at 10:00 Monday,
    // breached at 11:00; nothing over the weekend.
    assert_eq!(
        clock.next_instant(&policy(), &hours),
        Some(at("2026-01-12T10:00"))
    );
    assert_eq!(tick(&mut clock, at("2026-01-12T09:59")), []);
    assert_eq!(
        tick(&mut clock, at("2026-01-12T10:00")),
        [SlaEvent::Warning(Target::FirstResponse)]
    );
    assert_eq!(
        clock.next_instant(&policy(), &hours),
        Some(at("2026-01-12T11:00"))
    );
    assert_eq!(
        tick(&mut clock, at("2026-01-12T11:00")),
        [SlaEvent::Breach(Target::FirstResponse)]
    );
    // Answered late: met, not in time, after 5 business hours.
    let mut out = Vec::new();
    clock.desk_answered(at("2026-01-12T12:00"), &hours, &mut out);
    assert_eq!(
        out,
        [SlaEvent::Met {
            target: Target::FirstResponse,
            in_time: false,
            used_ms: 5 * HOUR,
            started_ms: at("2026-01-09T15:00"),
        }]
    );
}

#[test]
fn christmas_counts_for_nothing() {
    let mut clock = SlaClock::default();
    // Wednesday 23 December 2026, 16:00: one hour that day, then Thursday
    // 24 and Friday 25 are holidays, then the weekend.
    clock.opened(at("2026-12-23T16:00"));
    tick(&mut clock, at("2026-12-23T16:00"));
    assert_eq!(
        tick(&mut clock, at("2026-12-28T11:59")),
        [SlaEvent::Warning(Target::FirstResponse)]
    );
    assert_eq!(
        tick(&mut clock, at("2026-12-28T12:00")),
        [SlaEvent::Breach(Target::FirstResponse)]
    );
}

#[test]
fn pending_pauses_every_target_and_open_resumes_them() {
    let hours = office();
    let mut clock = SlaClock::default();
    clock.opened(at("2026-01-12T09:00"));
    let mut out = Vec::new();
    clock.desk_answered(at("2026-01-12T10:00"), &hours, &mut out);
    assert!(matches!(
        out[..],
        [SlaEvent::Met {
            target: Target::FirstResponse,
            in_time: true,
            used_ms: HOUR,
            started_ms
        }] if started_ms == at("2026-01-12T09:00")
    ));
    // Resolution has run 2 hours by 11:00; then it waits on the customer
    // for a whole day.
    clock.pause(at("2026-01-12T11:00"), &hours);
    assert_eq!(clock.next_instant(&policy(), &hours), None);
    assert_eq!(tick(&mut clock, at("2026-01-20T11:00")), []);
    clock.resume(at("2026-01-13T11:00"));
    clock.customer_wrote(at("2026-01-13T11:00"));
    // Next response: 2 hours, warned after 1. Resolution: 14 hours left,
    // warned after 13 (Wednesday 16:00).
    assert_eq!(
        clock.next_instant(&policy(), &hours),
        Some(at("2026-01-13T12:00"))
    );
    assert_eq!(
        tick(&mut clock, at("2026-01-14T16:00")),
        [
            SlaEvent::Warning(Target::NextResponse),
            SlaEvent::Breach(Target::NextResponse),
            SlaEvent::Warning(Target::Resolution),
        ]
    );
    // Met at last: its business hours exclude the pause, its start is
    // still the first one.
    let mut out = Vec::new();
    clock.resolved(at("2026-01-14T16:30"), &hours, &mut out);
    assert_eq!(
        out,
        [SlaEvent::Met {
            target: Target::Resolution,
            in_time: true,
            used_ms: 2 * HOUR + 6 * HOUR + 7 * HOUR + HOUR / 2,
            started_ms: at("2026-01-12T09:00"),
        }]
    );
}

#[test]
fn resolve_stops_every_clock_and_reopen_starts_new_ones() {
    // Chatwoot #10178: the next-response clock kept running after resolve.
    let hours = office();
    let mut clock = SlaClock::default();
    clock.opened(at("2026-01-12T09:00"));
    let mut out = Vec::new();
    clock.desk_answered(at("2026-01-12T09:30"), &hours, &mut out);
    clock.customer_wrote(at("2026-01-12T10:00"));
    out.clear();
    clock.resolved(at("2026-01-12T10:30"), &hours, &mut out);
    assert_eq!(
        out,
        [SlaEvent::Met {
            target: Target::Resolution,
            in_time: true,
            used_ms: 90 * 60_000,
            started_ms: at("2026-01-12T09:00"),
        }]
    );
    assert_eq!(clock.next_instant(&policy(), &hours), None);
    assert_eq!(clock.next_response, Leg::Idle);
    assert_eq!(tick(&mut clock, at("2026-02-12T10:00")), []);
    clock.reopened(at("2026-01-13T09:00"));
    assert_eq!(
        clock.next_instant(&policy(), &hours),
        Some(at("2026-01-13T10:00")),
        "the next response's warning"
    );
}
